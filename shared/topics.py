"""Topic names and layouts of a pipeline (pure; no Kafka here).

Every topic name derives from the pipeline name ``P``. The retry ladder's
rungs are configurable (``"5s,1m"`` by default; ``"5s,1m,10m"`` adds one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from shared.errors import ConfigError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_RUNG = re.compile(r"^(\d+)(ms|s|m|h)$")

DAY_MS = 86_400_000
COMPACT_SEGMENT_MS = 600_000
"""A compacted topic's active segment rolls after 10 minutes: Kafka never compacts
the active segment, and with the broker's defaults (1 GiB, 7 days) a changelog that
is restored from its start would grow with the traffic until then."""
COMPACT_SEGMENT_BYTES = 64 * 1024 * 1024
TOMBSTONE_RETENTION_MS = 900_000
"""How long a compacted topic keeps a tombstone once its segment is cleaned (the
broker's default is a day: a day of emitted slots read at every restore). It must
exceed the longest read from the start that may meet it: the sequencer's restore
(``SLUICE_RESTORE_TIMEOUT_S``, 120 s) and the admin's reads."""


@dataclass(frozen=True)
class Rung:
    label: str
    delay_s: float


def parse_rungs(text: str) -> tuple[Rung, ...]:
    """``"5s,1m"`` → rungs in order; delays must strictly increase."""
    rungs: list[Rung] = []
    for part in (p.strip() for p in text.split(",")):
        m = _RUNG.match(part)
        if not m:
            raise ConfigError(f"retry rung {part!r} is not like 5s, 1m or 10m")
        rung = Rung(part, int(m.group(1)) * _UNITS[m.group(2)])
        if rung.delay_s <= 0 or (rungs and rung.delay_s <= rungs[-1].delay_s):
            raise ConfigError(f"retry rungs must be positive and increasing: {text!r}")
        rungs.append(rung)
    if not rungs:
        raise ConfigError("at least one retry rung is needed")
    return tuple(rungs)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Topics:
    """All topic names of pipeline ``pipeline``."""

    pipeline: str
    rungs: tuple[Rung, ...] = (Rung("5s", 5.0), Rung("1m", 60.0))

    @property
    def work(self) -> str:
        return f"{self.pipeline}.work"

    @property
    def results(self) -> str:
        return f"{self.pipeline}.results"

    @property
    def failures(self) -> str:
        return f"{self.pipeline}.failures"

    @property
    def parked(self) -> str:
        return f"{self.pipeline}.parked"

    @property
    def output(self) -> str:
        return f"{self.pipeline}.output"

    @property
    def state(self) -> str:
        """The sequencer's compacted changelog, co-partitioned with work."""
        return f"{self.pipeline}.sequencer.state"

    @property
    def audit(self) -> str:
        return f"{self.pipeline}.audit"

    @property
    def replays(self) -> str:
        """The admin's replay tasks: their progress, compacted, keyed by replay id."""
        return f"{self.pipeline}.replays"

    def retry(self, rung: Rung) -> str:
        return f"{self.pipeline}.retry.{rung.label}"

    def dlq(self, suffix: str) -> str:
        return f"{self.pipeline}.dlq.{suffix}"

    @property
    def dlqs(self) -> tuple[str, ...]:
        return tuple(self.dlq(s) for s in ("poison", "timeout", "error"))

    def specs(
        self,
        partitions: int,
        retention_days: int = 7,
        dlq_retention_days: int = 30,
        max_message_bytes: int = 1_048_576 + 1024,
    ) -> list[TopicSpec]:
        """Every topic of the pipeline with its layout.

        work, results and the state changelog are co-partitioned (same count);
        the sequencer depends on it. ``max_message_bytes`` is each topic's
        ``max.message.bytes``; dead-letter topics take at least 8 MiB (a poison
        record keeps up to 4 MiB of its raw value), the state changelog three
        times as much.
        """
        keep = {
            "retention.ms": str(retention_days * DAY_MS),
            "max.message.bytes": str(max_message_bytes),
        }
        keep_dlq = {
            "retention.ms": str(dlq_retention_days * DAY_MS),
            "max.message.bytes": str(max(8 * 1024 * 1024, max_message_bytes)),
        }
        compacted = {
            "cleanup.policy": "compact",
            "min.compaction.lag.ms": "60000",
            "segment.ms": str(COMPACT_SEGMENT_MS),
            "delete.retention.ms": str(TOMBSTONE_RETENTION_MS),
        }
        changelog = {
            **compacted,
            # A pending outcome is kept base64-encoded with its key twice: up to
            # 8/3 of the record it holds.
            "max.message.bytes": str(3 * max_message_bytes),
            "segment.bytes": str(max(COMPACT_SEGMENT_BYTES, 4 * max_message_bytes)),
        }
        specs = [
            TopicSpec(self.work, partitions, keep),
            TopicSpec(self.results, partitions, keep),
            TopicSpec(self.failures, partitions, keep),
            TopicSpec(self.parked, partitions, keep),
            TopicSpec(self.output, partitions, keep),
            TopicSpec(self.state, partitions, changelog),
            TopicSpec(self.audit, 1, keep_dlq),
            TopicSpec(self.replays, 1, compacted),
        ]
        specs += [TopicSpec(self.retry(r), partitions, keep) for r in self.rungs]
        specs += [TopicSpec(name, partitions, keep_dlq) for name in self.dlqs]
        return specs

    @property
    def co_partitioned(self) -> tuple[str, ...]:
        return (self.work, self.results, self.state)
