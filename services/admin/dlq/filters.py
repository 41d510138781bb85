"""Which DLQ records a browse or a replay takes: the filters (pure).

One model serves the query string of ``GET /v1/dlq/{name}/records`` and the
body of ``POST /v1/replays``, so a bad filter is a 422 naming its field in
both. :meth:`Filters.matches` is the predicate, over :class:`RecordFacts`.
Every filter given must hold; ranges are inclusive; times without a zone
are UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from services.admin.dlq.facts import RecordFacts
from shared.kinds import FailureKind


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: list[FailureKind] = Field(default_factory=list, description="any of these error kinds")
    error_class: str | None = Field(None, min_length=1, max_length=500,
                                    description="sluice.error.class, exactly")  # fmt: skip
    provider: str | None = Field(None, min_length=1, max_length=500,
                                 description="sluice.provider, exactly")  # fmt: skip
    key: str | None = Field(None, max_length=65_536, description="the record key (UTF-8), exactly")
    src_topic: str | None = Field(None, min_length=1, max_length=500)
    src_partition: int | None = Field(None, ge=0)
    src_offset_min: int | None = Field(None, ge=0)
    src_offset_max: int | None = Field(None, ge=0)
    since: datetime | None = Field(None, description="source record time, at or after")
    until: datetime | None = Field(None, description="source record time, at or before")
    replay_count_min: int | None = Field(None, ge=0)
    replay_count_max: int | None = Field(None, ge=0)

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        return v.replace(tzinfo=UTC) if v is not None and v.tzinfo is None else v

    @field_validator("src_offset_max", "until", "replay_count_max")
    @classmethod
    def _not_below_min(cls, v: Any, info: ValidationInfo) -> Any:
        low = info.data.get(_LOWER[info.field_name or ""])
        if v is not None and low is not None and v < low:
            raise ValueError(f"is below {_LOWER[info.field_name or '']}")
        return v

    def matches(self, f: RecordFacts) -> bool:
        src = f.src
        return (
            (not self.kind or f.kind in self.kind)
            and _same(self.error_class, f.error_class)
            and _same(self.provider, f.provider)
            and (self.key is None or f.key == self.key.encode())
            and _same(self.src_topic, src.topic if src else None)
            and _same(self.src_partition, src.partition if src else None)
            and _within(src.offset if src else None, self.src_offset_min, self.src_offset_max)
            and _within(f.ts_ms, _ms(self.since), _ms(self.until))
            and _within(f.replay_count, self.replay_count_min, self.replay_count_max)
        )


_LOWER = {"src_offset_max": "src_offset_min", "until": "since",
          "replay_count_max": "replay_count_min"}  # fmt: skip


def _same(wanted: object, actual: object) -> bool:
    return wanted is None or wanted == actual


def _within(value: int | None, low: int | None, high: int | None) -> bool:
    if low is None and high is None:
        return True
    return value is not None and (low is None or value >= low) and (high is None or value <= high)


def _ms(t: datetime | None) -> int | None:
    return None if t is None else int(t.timestamp() * 1000)
