import json
from dataclasses import replace
from typing import Any

import pytest

from services.enrich import schema
from services.enrich.providers.base import Message, ProviderRequest
from services.enrich.tasks import Answer, parse_output, render, request_hash, strip_fences
from shared.config_file import TaskConfig, default_config
from shared.kinds import FailureKind
from shared.outcomes import Failure

SENTIMENT = default_config({}).task("sentiment")


def task(prompt: str, **extra: Any) -> TaskConfig:
    return TaskConfig.model_validate({"prompt": prompt, "model": "m", "providers": ["p"], **extra})


# -- render ------------------------------------------------------------------------


def test_render_sentiment() -> None:
    req = render(SENTIMENT, {"text": "My bill is wrong", "other": 1})
    assert isinstance(req, ProviderRequest)
    assert req.messages == (Message("user", "Support ticket:\nMy bill is wrong"),)
    assert req.system == SENTIMENT.system and req.model == "gpt-fake"
    assert (req.max_tokens, req.temperature) == (128, 0.0)


def test_render_nested_fields_json_values_and_specs() -> None:
    t = task("{customer.name} ({customer.tags}) #{lines.1} score={score:.1f} vip={vip}")
    value = {
        "customer": {"name": "Ann", "tags": ["a", "b"]},
        "lines": ["x", "y"],
        "score": 0.25,
        "vip": True,
    }
    req = render(t, json.dumps(value).encode())
    assert isinstance(req, ProviderRequest)
    assert req.messages[0].content == 'Ann (["a", "b"]) #y score=0.2 vip=true'


def test_render_picks_the_providers_model() -> None:
    t = task("{a}", providers=["p", "q"], models={"q": "other"})
    assert render(t, {"a": 1}, provider="q").model == "other"  # type: ignore[union-attr]
    assert render(t, {"a": 1}, provider="p").model == "m"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("value", "error_class", "needle"),
    [
        ({"txt": "hi"}, "missing_field", "'text'"),
        ({"text": None, "customer": {}}, None, None),
        ([1, 2], "not_object", "list"),
        (b"not json", "not_json", "not JSON"),
        ("[1]", "not_object", "list"),
        (None, "not_object", "NoneType"),
    ],
)
def test_render_bad_records_are_bad_requests(
    value: object, error_class: str | None, needle: str | None
) -> None:
    result = render(SENTIMENT, value)
    if error_class is None:
        assert isinstance(result, ProviderRequest) and result.messages[0].content.endswith("null")
        return
    assert isinstance(result, Failure)
    assert result.kind is FailureKind.BAD_REQUEST and result.error_class == error_class
    assert needle in result.message  # type: ignore[operator]


def test_render_missing_nested_field_and_bad_spec() -> None:
    missing = render(task("{customer.name}"), {"customer": {"id": 1}})
    assert isinstance(missing, Failure) and missing.error_class == "missing_field"
    assert "'customer.name'" in missing.message
    bad_spec = render(task("{n:.2f}"), {"n": "abc"})
    assert isinstance(bad_spec, Failure) and bad_spec.kind is FailureKind.BAD_REQUEST
    assert bad_spec.error_class == "template"


# -- parse --------------------------------------------------------------------------

GOOD = {"sentiment": "negative", "confidence": 0.9, "topics": ["billing"]}


@pytest.mark.parametrize(
    "content",
    [
        json.dumps(GOOD),
        f"  {json.dumps(GOOD)}\n",
        f"```json\n{json.dumps(GOOD)}\n```",
        f"```\n{json.dumps(GOOD, indent=2)}\n```\n",
        f"Here you go:\n```json\n{json.dumps(GOOD)}\n```\nAnything else?",
    ],
)
def test_parse_good_output(content: str) -> None:
    assert parse_output(SENTIMENT, content) == Answer(GOOD)


def test_strip_fences_leaves_plain_text() -> None:
    assert strip_fences(" {} ") == "{}"
    assert strip_fences("```json\n[1]\n```") == "[1]"


@pytest.mark.parametrize(
    ("content", "error_class", "needle"),
    [
        ("", "empty", "no content"),
        ("```json\n```", "empty", "no content"),
        ('Sure! Here is: {"sentiment": "pos', "not_json", "not JSON"),
        ("[" * 100_000, "not_json", "JSON"),
        (
            '{"sentiment": "angry", "confidence": 0.5, "topics": []}',
            "schema",
            '$.sentiment: "angry" is not one of',
        ),
        (
            '{"sentiment": "positive", "confidence": 1.5, "topics": []}',
            "schema",
            "$.confidence: 1.5 is above the maximum 1",
        ),
        (
            '{"sentiment": "positive", "confidence": -1, "topics": []}',
            "schema",
            "below the minimum 0",
        ),
        (
            '{"sentiment": "positive", "confidence": "high", "topics": []}',
            "schema",
            "expected number, got string",
        ),
        (
            '{"sentiment": "positive", "confidence": 0.5, "topics": [1]}',
            "schema",
            "$.topics[0]: expected string",
        ),
        (
            '{"sentiment": "positive", "topics": []}',
            "schema",
            "missing required field 'confidence'",
        ),
        ('["positive"]', "schema", "$: expected object, got array"),
    ],
)
def test_parse_bad_output_is_invalid_output(content: str, error_class: str, needle: str) -> None:
    result = parse_output(SENTIMENT, content)
    assert isinstance(result, Failure)
    assert result.kind is FailureKind.INVALID_OUTPUT and result.error_class == error_class
    assert needle in result.message


def test_parse_without_schema_takes_any_json() -> None:
    assert parse_output(task("{a}"), "[1, 2]") == Answer([1, 2])


# -- schema subset ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "sch", "ok"),
    [
        (3, {"type": "integer"}, True),
        (3.0, {"type": "integer"}, True),
        (3.5, {"type": "integer"}, False),
        (True, {"type": "integer"}, False),
        (True, {"type": "number"}, False),
        (True, {"type": "boolean"}, True),
        (None, {"type": "null"}, True),
        (1, {"enum": [1.0, "a"]}, True),
        (True, {"enum": [1]}, False),
        (
            {"a": 1, "b": 2},
            {"type": "object", "properties": {"a": {}}, "additionalProperties": False},
            False,
        ),
        (
            {"a": 1},
            {"type": "object", "properties": {"a": {}}, "additionalProperties": False},
            True,
        ),
        ([1, 2], {"type": "array"}, True),
        (5, {"maximum": 5, "minimum": 5}, True),
    ],
)
def test_schema_subset(value: object, sch: dict[str, Any], ok: bool) -> None:
    assert (schema.errors(value, sch) == []) is ok


def test_schema_reports_every_problem_in_one_line() -> None:
    sch = {"type": "object", "required": ["a", "b", "c", "d"]}
    line = schema.first_error({}, sch)
    assert line is not None and line.count(";") == 2 and line.endswith("(and 1 more)")
    assert schema.first_error({}, None) is None


# -- request hash --------------------------------------------------------------------


def rendered(value: object) -> ProviderRequest:
    req = render(SENTIMENT, value)
    assert isinstance(req, ProviderRequest)
    return req


def test_request_hash_is_stable_and_sensitive() -> None:
    req = rendered({"text": "hello"})
    h = request_hash("openai", req)
    assert len(h) == 64 and h == request_hash("openai", rendered({"text": "hello", "x": 1}))
    assert h != request_hash("anthropic", req)
    assert h != request_hash("openai", rendered({"text": "hello!"}))
    changes: list[dict[str, Any]] = [
        {"model": "x"},
        {"max_tokens": 1},
        {"temperature": 0.5},
        {"system": None},
        {"messages": (Message("user", "other"),)},
    ]
    for change in changes:
        assert request_hash("openai", replace(req, **change)) != h
