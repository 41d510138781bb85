"""Deterministic answers: sentiment and topics from keywords of the last user message.

The answer is a JSON string::

    {"sentiment": "positive|neutral|negative", "confidence": 0.0..1.0,
     "topics": ["billing", "bug", ...]}

Same text → same answer, byte for byte. Words are matched whole and
case-insensitively; ``[[fault:...]]`` markers are ignored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def _keys(text: str) -> frozenset[str]:
    return frozenset(text.split())


TOPICS: Mapping[str, frozenset[str]] = {
    "billing": _keys(
        "bill billed billing bills invoice invoices charge charged charges payment payments "
        "subscription price pricing overcharged"
    ),
    "shipping": _keys(
        "ship shipped shipping shipment delivery delivered deliver package parcel tracking "
        "courier arrived"
    ),
    "login": _keys("login logins logon signin password passwords 2fa locked lockout username otp"),
    "refund": _keys("refund refunds refunded reimburse reimbursed chargeback"),
    "bug": _keys(
        "bug bugs buggy crash crashes crashed error errors broken glitch freeze freezes frozen"
    ),
}

POSITIVE = _keys(
    "good great excellent love loved awesome amazing happy thanks thank perfect fast "
    "wonderful fantastic pleased helpful resolved best nice"
)
NEGATIVE = _keys(
    "bad terrible awful hate hated angry broken worst slow disappointed useless frustrated "
    "annoyed horrible never poor unacceptable crash scam"
)

_WORD = re.compile(r"[a-z0-9]+")
_MARKER = re.compile(r"\[\[fault:[^\]]*\]\]")


def words(text: str) -> list[str]:
    """Lower-case words of ``text`` with fault markers removed."""
    return _WORD.findall(_MARKER.sub(" ", text).lower())


def sentiment(text: str) -> dict[str, Any]:
    """The answer as a dict (see module docstring)."""
    ws = words(text)
    pos = sum(1 for w in ws if w in POSITIVE)
    neg = sum(1 for w in ws if w in NEGATIVE)
    score = pos - neg
    label = "positive" if score > 0 else "negative" if score < 0 else "neutral"
    if label == "neutral":
        confidence = 0.5 if pos == 0 else 0.55
    else:
        confidence = min(0.99, 0.6 + 0.1 * abs(score) + 0.05 * min(pos, neg))
    wordset = set(ws)
    topics = [name for name, keys in TOPICS.items() if wordset & keys]
    return {"sentiment": label, "confidence": round(confidence, 2), "topics": topics}


def answer(text: str) -> str:
    """The answer as the JSON string a model would put in its message content."""
    return json.dumps(sentiment(text))


def invalid_answer(text: str) -> str:
    """A plausible reply that ``json.loads`` rejects: prose around a cut-off object."""
    good = answer(text)
    return "Sure! Here is the analysis you asked for: " + good[: len(good) // 2]


def estimate_tokens(text: str) -> int:
    """Rough token count: a quarter of the characters, at least 1."""
    return max(1, len(text) // 4)


def content_text(content: object) -> str:
    """Text of a message's ``content``: a string or a list of text parts/blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, Mapping) and part.get("type") in ("text", "input_text")
        )
    return ""


def last_user_text(messages: Iterable[object]) -> str:
    """Text of the last message whose role is ``user`` ('' if none)."""
    text = ""
    for msg in messages:
        if isinstance(msg, Mapping) and msg.get("role") == "user":
            text = content_text(msg.get("content"))
    return text


def all_text(messages: Iterable[object], system: object = None) -> str:
    """Every message's text (and the system prompt) joined: what the prompt costs."""
    parts = [content_text(system)] if system else []
    parts += [content_text(m.get("content")) for m in messages if isinstance(m, Mapping)]
    return "\n".join(parts)
