"""Requests and answers of ``/v1/blocked`` (pydantic; they make the OpenAPI schema).

Keys are bytes and need not be UTF-8. Every key is shown twice: ``key``, the
UTF-8 text (null when the bytes are not valid UTF-8), and ``key_b64``, the
bytes in base64 (RFC 4648, standard alphabet, padded), which is lossless for
every key. A release names the key the same way: ``key`` or ``key_b64``.
"""

from __future__ import annotations

import binascii
from datetime import datetime
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

MAX_KEY_CHARS = 1_048_576
"""The longest key a release takes (as text or base64): as long as the pipeline's records."""

TopicName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,249}$")]

_KEY = ("the key as UTF-8 text; null when its bytes are not valid UTF-8 "
        "(key_b64 always holds them)")  # fmt: skip
_KEY_B64 = ("the key's bytes in base64 (RFC 4648, standard alphabet, padded): lossless for "
            "every key, UTF-8 or not")  # fmt: skip


class Blocked(BaseModel):
    """One key held behind a dead record: its later records wait until it is released
    (or replayed successfully)."""

    model_config = ConfigDict(frozen=True)

    key: str | None = Field(description=_KEY)
    key_b64: str = Field(description=_KEY_B64)
    partition: int = Field(description="the input partition holding it (P.work, P.results "
                                        "and P.sequencer.state share partition numbers)")  # fmt: skip
    src_topic: str = Field(description="source topic of the dead record (the head)")
    src_partition: int = Field(description="its source partition")
    src_offset: int = Field(description="its source offset")
    since: datetime = Field(description="when the key became blocked")
    age_s: float = Field(description="how long it has been blocked, in seconds")
    error_kind: str | None = Field(description="the dead record's error kind (timeout, ...)")
    error_class: str | None
    error_message: str | None
    waiting: int = Field(description="records of this key held behind the dead record "
                                     "(the dead record not counted)")  # fmt: skip


class BlockedKeys(BaseModel):
    blocked: list[Blocked] = Field(description="every blocked key, the longest blocked first")


class ReleaseIn(BaseModel):
    """Which blocked key to release, and its dead head (as ``GET /v1/blocked`` lists them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str | None = Field(None, max_length=MAX_KEY_CHARS, description=_KEY + "; or key_b64")
    key_b64: str | None = Field(None, max_length=MAX_KEY_CHARS, validate_default=True,
                                description=_KEY_B64 + "; or key")  # fmt: skip
    src_topic: TopicName
    src_partition: int = Field(ge=0, le=2**31 - 1)
    src_offset: int = Field(ge=0, le=2**63 - 1)

    @field_validator("key_b64")
    @classmethod
    def _one_key(cls, v: str | None, info: ValidationInfo) -> str | None:
        given = info.data.get("key") is not None
        if v is None and not given:
            raise ValueError("name the key: key (UTF-8 text) or key_b64 (base64)")
        if v is not None and given:
            raise ValueError("give key or key_b64, not both")
        if v is not None:
            try:
                binascii.a2b_base64(v, strict_mode=True)
            except binascii.Error as exc:
                raise ValueError(f"not base64 (RFC 4648, padded): {exc}") from None
        return v

    @property
    def key_bytes(self) -> bytes:
        if self.key_b64 is not None:
            return binascii.a2b_base64(self.key_b64, strict_mode=True)
        return (self.key or "").encode()


class Release(BaseModel):
    released: Blocked = Field(description="the blocked key as it was when released")
    request_id: str = Field(description="the id of the audit record written with the release")
