"""Whatever goes wrong with one record is that record's failure, never the worker's."""

from __future__ import annotations

from typing import Any

from services.enrich.enricher import Enricher
from shared import headers as h
from shared.config_file import TaskConfig
from shared.kinds import FailureKind
from shared.outcomes import Record, ok_result, oversize
from shared.topics import Topics

T = Topics("p")
SRC = h.SourceId("src", 1, 9)


def work(value: bytes = b'{"text": "hi"}') -> Record:
    return Record(b"k", value, h.source_headers(SRC, 5))


def enricher() -> Enricher:
    task = TaskConfig.model_validate({"prompt": "{text}", "model": "m", "providers": ["p"]})
    return Enricher(T, "t", task, {"p": object()}, 0)  # type: ignore[dict-item]


async def test_an_unforeseen_error_becomes_a_failure_record_with_the_reason() -> None:
    e = enricher()

    async def boom(*_: Any) -> Any:
        raise KeyError("surprise")

    e._attempt = boom  # type: ignore[method-assign]
    [out] = await e.handle(work(), ("p.work", 1), 3)
    assert out.topic == T.failures
    hs = out.record.headers
    assert h.get_str(hs, h.ERROR_KIND) == "bad_request"
    assert h.get_str(hs, h.ERROR_CLASS) == "internal_error"
    assert "KeyError" in (h.get_str(hs, h.ERROR_MESSAGE) or "")
    assert h.source_id(hs) == SRC and out.record.value == work().value


def test_a_result_too_large_for_the_topics_is_an_oversize_failure() -> None:
    small = ok_result(work(), "t", {"x": 1}, "p", "m", 1, 1, 1)
    assert oversize(small, 1_048_576) is None
    big = ok_result(work(), "t", {"x": "y" * 1_100_000}, "p", "m", 1, 1, 1)
    f = oversize(big, 1_048_576)
    assert f is not None and f.kind is FailureKind.OVERSIZE and not f.kind.retryable
    assert f.kind.dlq_suffix == "error" and "SLUICE_MAX_MESSAGE_BYTES" in f.message


def test_results_are_not_inflated_by_ascii_escaping() -> None:
    text = "問い合わせ" * 100_000  # 1.5 MB of UTF-8
    value = ('{"text": "' + text + '"}').encode()
    res = ok_result(work(value), "t", {"sentiment": "neutral"}, "p", "m", 1, 1, 1)
    assert res.value is not None and len(res.value) < len(value) + 200
    assert value in res.value  # the input is embedded verbatim
