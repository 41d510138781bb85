"""One lag reading of the pipeline's groups from the broker (I/O, bounded).

Per group and partition: the committed offset (a consumer of the group that
never joins it; a pending transactional commit is not waited for), the
end offset (``list_offsets`` latest, at the group's isolation level: the last
stable offset for ``read_committed`` groups, so records of an open
transaction are not lag yet), whether a live member holds the partition
(``describe_consumer_groups``; the topics its members hold join the group's
own), and for a lagging partition the timestamp of
its oldest unconsumed record (:mod:`services.admin.lag.probe`).

Every broker call is bounded by ``SLUICE_ADMIN_LAG_TIMEOUT_S``; a failure or
timeout is a :class:`~shared.errors.BrokerError` naming the call, never a hang.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TypeVar

from confluent_kafka import (
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin._group import ConsumerGroupDescription
from confluent_kafka.admin._listoffsets import OffsetSpec

from services.admin.lag.groups import GroupSpec
from services.admin.lag.probe import DRAINED, Ask, Found, Head, Probe
from services.admin.lag.settings import LagSettings
from shared.errors import BrokerError
from shared.kafka.config import consumer_config
from shared.kafka.provision import admin_client, partition_counts
from shared.kafka.startup import kafka_reason

T = TypeVar("T")
TP = tuple[str, int]
COORDINATOR_MOVING = frozenset({
    KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS})  # fmt: skip
LATEST: OffsetSpec = OffsetSpec.latest()  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class PartitionReading:
    topic: str
    partition: int
    committed: int | None  # None: the group never committed here
    end: int
    owned: bool  # a member of the group holds it now
    drained: bool  # only transaction markers / aborted records between committed and end
    oldest_ts: float | None  # timestamp (s) of the oldest unconsumed record, if read


@dataclass(frozen=True, slots=True)
class GroupReading:
    spec: GroupSpec
    state: str  # the broker's group state: stable, empty, dead, ...
    partitions: tuple[PartitionReading, ...]
    missing_topics: tuple[str, ...]  # topics of the group that do not exist


@dataclass(frozen=True, slots=True)
class Reading:
    at: float  # clock time of the reading (seconds)
    groups: tuple[GroupReading, ...]


class LagReader:
    """Reads :class:`Reading` values; ``close()`` when done."""

    def __init__(
        self,
        settings: LagSettings,
        groups: Sequence[GroupSpec],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.groups = tuple(groups)
        self.timeout_s = settings.admin_lag_timeout_s
        self.clock = clock
        self.settings = settings
        self.admin = admin_client(settings)
        self._offset_readers: dict[str, Consumer] = {}
        self.probes = {rc: Probe(settings, rc, settings.admin_lag_probe_s) for rc in (True, False)}

    def read(self) -> Reading:
        at = self.clock()
        try:
            counts = partition_counts(self.admin, self.timeout_s)
        except KafkaException as exc:
            raise BrokerError(f"lag: reading topic metadata failed: {_why(exc)}") from exc
        members = {n: _membership(d) for n, d in self._describe().items()}
        layouts = {g.name: _layout(g, members[g.name][1], counts) for g in self.groups}
        committed = {g.name: self._committed(g.name, layouts[g.name][0]) for g in self.groups}
        ends = self._ends(layouts)
        heads = self._heads(layouts, committed, ends)
        out = []
        for g in self.groups:
            tps, missing = layouts[g.name]
            state, owned = members[g.name]
            parts = []
            for tp in tps:
                c = committed[g.name].get(tp)
                head = heads.get((g.read_committed, *tp, c)) if c is not None else None
                parts.append(PartitionReading(
                    tp[0], tp[1], c, ends[g.read_committed][tp], tp in owned,
                    drained=head is DRAINED,
                    oldest_ts=head.ts if isinstance(head, Head) else None))  # fmt: skip
            out.append(GroupReading(g, state, tuple(parts), missing))
        return Reading(at, tuple(out))

    def _committed(self, group: str, tps: list[TP]) -> dict[TP, int]:
        """The group's committed offsets of ``tps`` (none: not there).

        Read by a consumer of the group that never joins it (no ``subscribe``,
        no commits): the AdminClient's ``list_consumer_group_offsets`` crashes
        the process in librdkafka when the coordinator answers NOT_COORDINATOR
        (librdkafka issue 5040). ``read_uncommitted``: the last committed offsets,
        without waiting for a transaction that holds new ones (``require_stable``).
        """
        if not tps:
            return {}
        reader = self._offset_readers.get(group)
        if reader is None:
            reader = self._offset_readers[group] = Consumer(
                consumer_config(self.settings, group, **{
                    "isolation.level": "read_uncommitted", "statistics.interval.ms": 0})
            )  # fmt: skip
        try:
            got = reader.committed([TopicPartition(t, p) for t, p in tps], timeout=self.timeout_s)
        except KafkaException as exc:
            raise BrokerError(f"lag: reading offsets of group {group} failed: {_why(exc)}") from exc
        for tp in got:
            if tp.error is not None:
                raise BrokerError(
                    f"lag: reading offsets of group {group} failed for {tp.topic}[{tp.partition}]: "
                    f"{tp.error.str()}"
                )
        return {(tp.topic, tp.partition): tp.offset for tp in got if tp.offset >= 0}

    def _ends(self, layouts: Mapping[str, tuple[list[TP], tuple[str, ...]]]) -> dict[bool, dict[TP, int]]:  # fmt: skip
        """End offsets per isolation level (True: read_committed)."""
        wanted: dict[bool, set[TP]] = {True: set(), False: set()}
        for g in self.groups:
            wanted[g.read_committed].update(layouts[g.name][0])
        ends: dict[bool, dict[TP, int]] = {True: {}, False: {}}
        for rc, tps in wanted.items():
            if not tps:
                continue
            level = IsolationLevel.READ_COMMITTED if rc else IsolationLevel.READ_UNCOMMITTED
            futures = self.admin.list_offsets(
                {TopicPartition(t, p): LATEST for t, p in tps},
                isolation_level=level, request_timeout=self.timeout_s)  # fmt: skip
            for tp, fut in futures.items():
                ends[rc][(tp.topic, tp.partition)] = self._wait(
                    fut, f"end offset of {tp.topic}[{tp.partition}]"
                ).offset
        return ends

    def _heads(
        self,
        layouts: Mapping[str, tuple[list[TP], tuple[str, ...]]],
        committed: Mapping[str, Mapping[TP, int]],
        ends: Mapping[bool, Mapping[TP, int]],
    ) -> dict[tuple[bool, str, int, int], Found]:
        """The first unconsumed record of every lagging partition, per isolation level."""
        asks: dict[bool, list[Ask]] = {True: [], False: []}
        for g in self.groups:
            for tp in layouts[g.name][0]:
                c = committed[g.name].get(tp)
                end = ends[g.read_committed][tp]
                if c is not None and c < end:
                    asks[g.read_committed].append(Ask(tp[0], tp[1], c, end))
        return {
            (rc, *key): found
            for rc, probe in self.probes.items()
            for key, found in probe.first(asks[rc]).items()
        }

    def _wait(self, fut: Future[T], what: str) -> T:
        try:
            return fut.result(timeout=self.timeout_s + 1)
        except KafkaException as exc:
            raise BrokerError(f"lag: reading {what} failed: {_why(exc)}") from exc
        except FutureTimeout as exc:
            raise BrokerError(f"lag: reading {what} took over {self.timeout_s:.0f}s") from exc

    def _describe(self) -> dict[str, ConsumerGroupDescription | None]:
        """Each group's description (None: the broker does not know it).

        A coordinator that is moving or loading (NOT_COORDINATOR after a broker
        restart or a new group) is asked again until the timeout.
        """
        names = sorted({g.name for g in self.groups})
        deadline = time.monotonic() + self.timeout_s
        out: dict[str, ConsumerGroupDescription | None] = {}
        while names:
            futures = self.admin.describe_consumer_groups(names, request_timeout=self.timeout_s)
            names = []
            for name, fut in futures.items():
                try:
                    out[name] = self._wait(fut, f"group {name}")
                except BrokerError as exc:
                    code = _code(exc)
                    if code == KafkaError.GROUP_ID_NOT_FOUND:
                        out[name] = None
                    elif code in COORDINATOR_MOVING and time.monotonic() < deadline:
                        names.append(name)
                    else:
                        raise
            if names:
                time.sleep(0.1)
        return out

    def close(self) -> None:
        for probe in self.probes.values():
            probe.close()
        for reader in self._offset_readers.values():
            reader.close()
        self._offset_readers.clear()


def _layout(
    g: GroupSpec, assigned: Iterable[TP], counts: Mapping[str, int]
) -> tuple[list[TP], tuple[str, ...]]:
    """The group's partitions (its topics and any its members hold), and its missing topics."""
    topics = dict.fromkeys(g.topics) | dict.fromkeys(t for t, _ in sorted(assigned))
    tps = [(t, p) for t in topics if t in counts for p in range(counts[t])]
    return tps, tuple(t for t in g.topics if t not in counts)


def _membership(desc: ConsumerGroupDescription | None) -> tuple[str, set[TP]]:
    if desc is None:
        return "dead", set()
    owned = {
        (tp.topic, tp.partition)
        for m in desc.members
        for tp in (m.assignment.topic_partitions if m.assignment else None) or []
    }
    return str(getattr(desc.state, "name", desc.state)).lower(), owned


def _code(exc: BrokerError) -> int | None:
    cause = exc.__cause__
    err = cause.args[0] if isinstance(cause, KafkaException) and cause.args else None
    return err.code() if isinstance(err, KafkaError) else None


def _why(exc: KafkaException) -> str:
    """librdkafka's text and the error's name (the text alone may be empty)."""
    err = exc.args[0] if exc.args else None
    name = err.name() if isinstance(err, KafkaError) else type(exc).__name__
    return f"{kafka_reason(exc)} ({name})"
