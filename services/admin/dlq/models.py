"""Answers of the DLQ endpoints, and the replay request (pydantic; they make the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from services.admin.dlq.filters import Filters


class Preview(BaseModel):
    """Bytes shown safely: UTF-8 text when they are, else base64; at most the preview size."""

    encoding: Literal["utf-8", "base64", "int"]  # int: a kafka_dlt-* partition/offset/timestamp
    value: str | int
    bytes: int = Field(description="the whole value's size")
    truncated: bool


class Header(Preview):
    name: str


class Source(BaseModel):
    topic: str
    partition: int
    offset: int


class DlqRecord(BaseModel):
    partition: int
    offset: int
    time: datetime = Field(description="the source record's time (sluice.src.ts)")
    key: Preview | None
    value: Preview | None
    kind: str = Field(description="sluice.error.kind (unknown when absent)")
    error_class: str | None
    error_message: str | None
    provider: str | None
    attempt: int | None
    replay_count: int
    source: Source | None = Field(description="sluice.src.*, else kafka_dlt-original-*")
    history: list[dict[str, Any]] = Field(description="sluice.error.history: the attempts")
    headers: list[Header] = Field(description="every header, decoded")
    unreadable_headers: str | None = Field(None, description="why the headers could not be read")


class DlqPage(BaseModel):
    dlq: str
    topic: str
    records: list[DlqRecord] = Field(description="in offset order per partition")
    next_cursor: str | None = Field(description="give it back as ?cursor= for the next page; "
                                                "null: every partition was read to its end")  # fmt: skip
    scanned: int = Field(description="records read to find these")


class BrowseQuery(Filters):
    cursor: str | None = Field(None, max_length=16_384, description="next_cursor of a page")
    limit: int = Field(50, ge=1, le=500, description="records per page")


class DlqCounts(BaseModel):
    name: str
    topic: str
    read_only: bool
    size: int = Field(
        description="offsets in the topic (an upper bound: transaction markers count)"
    )
    scanned: int
    complete: bool = Field(
        description="false: the read budget ran out; counts are of what was read"
    )
    by_kind: dict[str, int]
    by_age: dict[str, int] = Field(description="by the source record's age")


class DlqSummary(BaseModel):
    dlqs: list[DlqCounts]


class ReplayIn(Filters):
    dlq: str = Field(description="timeout, error or poison")
    dry_run: bool = Field(
        False, description="true: say what the replay would do; nothing is written"
    )
    max_records: int | None = Field(None, ge=1, le=1_000_000,
                                    description="replay at most this many (first by partition, offset)")  # fmt: skip
    task: str | None = Field(None, min_length=1, description="the task the records are replayed "
                                                             "through (default: the config's)")  # fmt: skip


class Money(BaseModel):
    amount: float
    input: float
    output: float
    note: str


class Drain(BaseModel):
    seconds: float
    limited_by: str = Field(description="the bucket that sets the pace: rpm, tpm, rpm:<model>, ...")


class DryRun(BaseModel):
    dry_run: Literal[True] = True
    dlq: str
    topic: str
    task: str
    provider: str
    model: str
    provider_available: bool
    scanned: int
    complete: bool = Field(
        description="false: the read budget ran out; counts are of what was read"
    )
    matched: int
    by_kind: dict[str, int]
    by_class: dict[str, int] = Field(description="keyed by <kind>/<class>")
    replay_cap: int
    refused_by_cap: int = Field(description="matched records replayed replay_cap times already")
    selected: int = Field(description="what the replay would send: matched, not refused, "
                                      "at most max_records")  # fmt: skip
    unrenderable: int = Field(description="fail again before any call (the prompt cannot render)")
    cache_hits: int = Field(description="answered from the result cache now (same key as enrich)")
    repeats: int = Field(description="the same request as an earlier selected record: answered "
                                     "from the cache once that one is paid, unless both run at once")  # fmt: skip
    paid_calls: int
    input_tokens: int = Field(description="estimate: prompt characters / 4, per paid call")
    output_tokens: int = Field(description="at most: max_tokens per paid call")
    money: Money | None = Field(description="null: the provider has no prices in the config")
    drain: Drain | None = Field(description="null: the provider has no rate limits in the config")
