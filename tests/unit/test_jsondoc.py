from __future__ import annotations

import json

import orjson
import pytest

from shared import jsondoc
from shared.errors import BadDocument


def nested(n: int) -> bytes:
    return b"[" * n + b"]" * n


def test_depth_limit_is_exact_and_survives_any_depth() -> None:
    assert jsondoc.loads(nested(jsondoc.MAX_DEPTH)) is not None
    for n in (jsondoc.MAX_DEPTH + 1, 1000, 5000, 100_000):
        with pytest.raises(BadDocument):
            jsondoc.loads(nested(n))


def test_many_brackets_but_shallow_is_accepted() -> None:
    doc = {"items": [{"a": [1]} for _ in range(500)]}
    assert jsondoc.loads(json.dumps(doc)) == doc
    assert jsondoc.depth(doc) == 4


def test_brackets_inside_strings_do_not_count() -> None:
    doc = {"text": "[" * 500 + "{" * 500}
    assert jsondoc.loads(json.dumps(doc)) == doc


@pytest.mark.parametrize("raw", [b"", b"{", b"NaN", b'{"a": NaN}', b"\xff\xfe", b'{"a":1}x'])
def test_what_is_not_json_is_a_bad_document(raw: bytes) -> None:
    with pytest.raises(BadDocument):
        jsondoc.loads(raw)


def test_objects_only() -> None:
    assert jsondoc.loads_object(b'{"a": 1}') == {"a": 1}
    with pytest.raises(BadDocument, match="list"):
        jsondoc.loads_object(b"[1]")


def test_whatever_the_decoder_accepts_can_be_encoded_again_inside_a_result() -> None:
    deepest = b'{"a":' + nested(jsondoc.MAX_DEPTH - 1) + b"}"
    doc = jsondoc.loads(deepest)
    wrapped = {"task": "t", "enrichment": None, "input": {"nested": doc}}
    assert orjson.loads(jsondoc.dumps(wrapped)) == wrapped


def test_dumps_does_not_escape_non_ascii() -> None:
    text = "顧客の問い合わせ" * 1000
    raw = jsondoc.dumps({"text": text})
    assert len(raw) < len(json.dumps({"text": text}))  # stdlib escapes to \\uXXXX
    assert len(raw) == len(text.encode()) + len('{"text":""}')


def test_embeddable_keeps_json_verbatim_and_base64s_the_rest() -> None:
    assert (
        jsondoc.dumps({"input": jsondoc.embeddable(b'{"a": [1, 2]}')}) == b'{"input":{"a": [1, 2]}}'
    )
    assert jsondoc.dumps({"input": jsondoc.embeddable(b"\xff")}) == b'{"input":{"base64":"/w=="}}'
    assert jsondoc.dumps({"input": jsondoc.embeddable(None)}) == b'{"input":null}'
    deep = nested(2000)
    assert orjson.loads(jsondoc.dumps({"input": jsondoc.embeddable(deep)}))["input"]["base64"]
