"""Records that stages exchange after ingest (pure codecs).

``P.results`` (one per work record that finished, keyed by the source key):

* ``sluice.outcome=ok``: value is JSON ``{"task", "enrichment", "input"}``
  (UTF-8, not ASCII-escaped) where ``input`` is the original value verbatim
  when it is JSON by :mod:`shared.jsondoc`, ``{"base64": ...}`` otherwise;
  headers carry the source coordinates, provider, model, latency and tokens.
  A result that would not fit the pipeline's topics is a failure of kind
  ``oversize`` instead (:func:`oversize`).
* ``sluice.outcome=dead``: written by the router with every DLQ write; value
  is the original value unchanged; headers carry the error fields.

``P.failures`` (one per failed attempt): the work record unchanged (key,
value, own headers, source coordinates, ``sluice.attempt``) plus
``sluice.error.kind|class|message``, ``sluice.provider`` and the bounded
``sluice.error.history`` (JSON list, newest last, at most
:data:`HISTORY_MAX` entries).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from shared import headers as h
from shared import jsondoc
from shared.kafka.sizes import fits, record_bytes
from shared.kinds import FailureKind

HISTORY_MAX = 5
MESSAGE_MAX = 1024


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong with one attempt."""

    kind: FailureKind
    error_class: str
    message: str
    retry_after_s: float | None = None  # provider-derived cooldown, if any

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", self.message[:MESSAGE_MAX])


@dataclass(frozen=True, slots=True)
class Record:
    key: bytes | None
    value: bytes | None
    headers: h.HeaderList


def history(headers: object) -> list[dict[str, Any]]:
    raw = h.get(h.check_headers(headers), h.ERROR_HISTORY)
    if not raw:
        return []
    try:
        items = json.loads(raw)
    except ValueError:
        return []
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def with_history(headers: object, attempt: int, failure: Failure, provider: str | None) -> bytes:
    items = history(headers)
    items.append({"attempt": attempt, "kind": failure.kind.value, "class": failure.error_class,
                  "message": failure.message[:200], "provider": provider, "ts": int(time.time() * 1000)})  # fmt: skip
    return json.dumps(items[-HISTORY_MAX:]).encode()


def failure_record(work: Record, attempt: int, failure: Failure, provider: str | None) -> Record:
    """A failed attempt, for ``P.failures``."""
    ours: h.HeaderList = [
        (h.ERROR_KIND, failure.kind.value.encode()),
        (h.ERROR_CLASS, failure.error_class.encode()),
        (h.ERROR_MESSAGE, failure.message.encode()),
        (h.ERROR_HISTORY, with_history(work.headers, attempt, failure, provider)),
    ]
    if provider:
        ours.append((h.PROVIDER, provider.encode()))
    if failure.retry_after_s is not None:
        ours.append((h.RETRY_AFTER, f"{failure.retry_after_s:.3f}".encode()))
    return Record(work.key, work.value, h.merge(work.headers, ours))


def ok_result(
    work: Record,
    task: str,
    enrichment: Any,
    provider: str,
    model: str,
    latency_ms: int,
    tokens_in: int,
    tokens_out: int,
    *,
    input_is_json: bool = False,
) -> Record:
    """A successful outcome, for ``P.results``.

    ``input_is_json``: the caller has decoded ``work.value`` with
    :func:`shared.jsondoc.loads` already, so it is embedded without another decode.
    """
    embedded = jsondoc.embeddable(work.value, is_json=input_is_json)
    value = jsondoc.dumps({"task": task, "enrichment": enrichment, "input": embedded})
    keep = [(n, v) for n, v in work.headers if not n.startswith("sluice.error.")]
    ours: h.HeaderList = [
        (h.OUTCOME, b"ok"),
        (h.PROVIDER, provider.encode()),
        (h.MODEL, model.encode()),
        (h.LATENCY_MS, str(latency_ms).encode()),
        (h.TOKENS_IN, str(tokens_in).encode()),
        (h.TOKENS_OUT, str(tokens_out).encode()),
    ]
    return Record(work.key, value, h.merge(keep, ours))


def unexpected(exc: BaseException) -> Failure:
    """An error nobody foresaw while handling a record: that record's failure.

    Not retryable (``bad_request``, class ``internal_error``): the record goes
    to ``P.dlq.error`` with the exception in its message, to be replayed once
    the cause is fixed; the stage goes on with the next record.
    """
    return Failure(FailureKind.BAD_REQUEST, "internal_error", f"{type(exc).__name__}: {exc}")


OUTPUT_ALLOWANCE = 1024
"""What the sequencer adds to a result on its way to ``P.output`` (a field, a header)."""


def oversize(result: Record, max_message_bytes: int) -> Failure | None:
    """A failure of kind ``oversize`` if ``result`` (or its output record) would not fit."""
    size = record_bytes(result.key, result.value, result.headers) + OUTPUT_ALLOWANCE
    if fits(size, max_message_bytes):
        return None
    return Failure(
        FailureKind.OVERSIZE,
        "result_too_large",
        f"the result would be {size} bytes with its output fields; the pipeline's topics "
        f"take {max_message_bytes} (SLUICE_MAX_MESSAGE_BYTES)",
    )


def dead_outcome(failed: Record) -> Record:
    """The ``dead`` outcome paired with a DLQ write, for ``P.results``."""
    return Record(failed.key, failed.value, h.merge(failed.headers, [(h.OUTCOME, b"dead")]))
