import json

import pytest

from services.fakellm import answers


def test_same_input_same_output_byte_for_byte() -> None:
    text = "The invoice was wrong and the app crashed, terrible!"
    assert answers.answer(text) == answers.answer(text)
    assert json.loads(answers.answer(text)) == answers.sentiment(text)


@pytest.mark.parametrize(
    ("text", "label", "topics"),
    [
        ("I love it, great service, thanks", "positive", []),
        ("Terrible. My package never arrived", "negative", ["shipping"]),
        ("Please update my invoice address", "neutral", ["billing"]),
        ("Forgot my password, cannot login", "neutral", ["login"]),
        ("Where is my refund? The app shows an error", "neutral", ["refund", "bug"]),
        ("", "neutral", []),
    ],
)
def test_keyword_mapping(text: str, label: str, topics: list[str]) -> None:
    got = answers.sentiment(text)
    assert got["sentiment"] == label
    assert got["topics"] == topics
    assert 0.0 <= got["confidence"] <= 1.0


def test_confidence_grows_with_evidence_and_stays_below_one() -> None:
    weak = answers.sentiment("good")["confidence"]
    strong = answers.sentiment("good great excellent")["confidence"]
    huge = answers.sentiment("good " * 100)["confidence"]
    assert weak < strong < huge <= 0.99


def test_case_and_fault_markers_do_not_change_the_answer() -> None:
    assert answers.answer("GREAT Shipping") == answers.answer("great shipping")
    assert answers.answer("great [[fault:http_500]] shipping") == answers.answer("great shipping")


def test_invalid_answer_is_not_json() -> None:
    bad = answers.invalid_answer("great")
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad)


@pytest.mark.parametrize(("text", "tokens"), [("", 1), ("abc", 1), ("abcd" * 10, 10)])
def test_estimate_tokens(text: str, tokens: int) -> None:
    assert answers.estimate_tokens(text) == tokens


def test_last_user_text_handles_strings_parts_and_roles() -> None:
    messages = [
        {"role": "system", "content": "be terse"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "image"}]},
    ]
    assert answers.last_user_text(messages) == "second"
    assert answers.last_user_text([{"role": "assistant", "content": "x"}]) == ""
    assert answers.all_text(messages, system="sys").split("\n") == [
        "sys",
        "be terse",
        "first",
        "ok",
        "second",
    ]
