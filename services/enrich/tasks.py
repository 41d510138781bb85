"""A task turned into a provider request, and the model's answer into a result (pure).

* :func:`render` fills the task's prompt template from the record's JSON
  fields (``{text}``, nested ``{customer.name}``, list items ``{lines.0}``);
  strings go in as they are, other values as JSON. A missing field or a value
  that is not a JSON object is a ``bad_request`` failure, never an exception.
* :func:`parse_output` reads the model's content as JSON (a Markdown code
  fence around it is removed) and checks it against the task's output schema;
  anything else is an ``invalid_output`` failure.
* :func:`request_hash` is the result cache's key: the same request to the
  same kind of provider is never paid for twice.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.enrich import schema
from services.enrich.providers.base import Message, ProviderRequest
from shared import jsondoc
from shared.config_file import TaskConfig
from shared.errors import BadDocument
from shared.kinds import FailureKind
from shared.outcomes import Failure

_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\r?\n(.*?)\r?\n?[ \t]*```", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Answer:
    """A model answer that parsed and conforms to the task's schema."""

    value: Any


class MissingField(LookupError):
    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


class _RecordFormatter(string.Formatter):
    """``str.format`` over a JSON object: dotted lookups, JSON for non-strings."""

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        value: Any = kwargs
        for part in field_name.split("."):
            if isinstance(value, Mapping) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                raise MissingField(field_name)
        return value, field_name

    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, str) or format_spec:
            return format(value, format_spec)
        return json.dumps(value, ensure_ascii=False)


_FORMATTER = _RecordFormatter()


def _bad(error_class: str, message: str) -> Failure:
    return Failure(FailureKind.BAD_REQUEST, error_class, message)


def record_object(value: object) -> dict[str, Any] | Failure:
    """The record's value as a JSON object (bytes and str are decoded first)."""
    if isinstance(value, bytes | bytearray | str):
        try:
            value = jsondoc.loads(value)
        except BadDocument as exc:
            return _bad("not_json", f"record value is {exc}")
    if not isinstance(value, dict):
        return _bad("not_object", f"record value is a JSON {type(value).__name__}, not an object")
    return value


def render(
    task: TaskConfig, value: object, provider: str | None = None
) -> ProviderRequest | Failure:
    """The request for ``task`` over one record value, or a ``bad_request`` failure.

    ``provider`` picks the model configured for it (``TaskConfig.models``).
    """
    record = record_object(value)
    if isinstance(record, Failure):
        return record
    try:
        prompt = _FORMATTER.vformat(task.prompt, (), record)
    except MissingField as exc:
        return _bad("missing_field", f"record has no field {exc.field!r} (the prompt needs it)")
    except (ValueError, TypeError) as exc:
        return _bad("template", f"prompt template cannot format this record: {exc}")
    return ProviderRequest(
        model=task.model if provider is None else task.model_for(provider),
        messages=(Message("user", prompt),),
        system=task.system,
        max_tokens=task.max_tokens,
        temperature=task.temperature,
    )


def strip_fences(content: str) -> str:
    """The inside of a Markdown code fence if the content has one, else the content."""
    match = _FENCE.search(content)
    return (match.group(1) if match else content).strip()


def _invalid(error_class: str, message: str) -> Failure:
    return Failure(FailureKind.INVALID_OUTPUT, error_class, message)


def parse_output(task: TaskConfig, content: str) -> Answer | Failure:
    """The model's content as a JSON value that conforms to the task's schema."""
    text = strip_fences(content)
    if not text:
        return _invalid("empty", "the model answered with no content")
    try:
        value = jsondoc.loads(text)
    except BadDocument as exc:
        snippet = text if len(text) <= 80 else text[:77] + "..."
        return _invalid("not_json", f"answer is {exc}: {snippet!r}")
    problem = schema.first_error(value, task.schema_dict)
    if problem is not None:
        return _invalid("schema", f"answer does not match the output schema: {problem}")
    return Answer(value)


def request_hash(provider_kind: str, request: ProviderRequest) -> str:
    """sha256 (hex) of the canonical JSON of everything that shapes the answer."""
    canonical = {
        "kind": provider_kind,
        "model": request.model,
        "system": request.system,
        "messages": [[m.role, m.content] for m in request.messages],
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
    }
    blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()
