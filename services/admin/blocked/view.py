"""The sequencer's blocked keys as the API shows them, and which one a release names (pure)."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import UTC, datetime

from services.admin.blocked.models import Blocked
from services.sequencer.blocked import BlockedKey
from shared.headers import SourceId


def key_text(key: bytes) -> str | None:
    """The key as UTF-8 text; None when it is not valid UTF-8."""
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return None


def blocked_model(b: BlockedKey) -> Blocked:
    return Blocked(
        key=key_text(b.key),
        key_b64=base64.b64encode(b.key).decode("ascii"),
        partition=b.partition,
        src_topic=b.src_topic,
        src_partition=b.src_partition,
        src_offset=b.offset,
        since=datetime.fromtimestamp(b.since_ms / 1000, UTC),
        age_s=round(b.age_s, 3),
        error_kind=b.error_kind,
        error_class=b.error_class,
        error_message=b.error_message,
        waiting=max(0, b.waiting - 1),  # BlockedKey.waiting counts the head
    )


def find(blocked: Iterable[BlockedKey], key: bytes, head: SourceId) -> BlockedKey | None:
    """The blocked key ``key`` whose dead head is ``head``; None when it is not blocked there."""
    return next((b for b in blocked if b.key == key and b.ident == head), None)


def target(head: SourceId) -> str:
    """The audit record's target for a release of ``head``: ``topic/partition/offset``."""
    return f"{head.topic}/{head.partition}/{head.offset}"
