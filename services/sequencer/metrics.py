"""Prometheus metrics of the sequencer (lag: ``sluice_consumer_lag``)."""

import time
from collections import Counter as Counts
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from services.sequencer.reorder import Reorder

EMITTED = Counter(
    "sluice_sequencer_emitted_total",
    "Records committed to P.output, by kind (ok in order, late replay, gap marker)",
    ["kind"],
)
DUPLICATES = Counter(
    "sluice_sequencer_duplicates_dropped_total",
    "Announcements or outcomes dropped because their identity was seen already",
    ["what"],
)
SKIPPED = Counter(
    "sluice_sequencer_dead_skipped_total", "Dead records moved past (skip or release)"
)
RELEASES = Counter("sluice_sequencer_releases_total", "Release control records applied")
FORWARDED = Counter(
    "sluice_sequencer_unkeyed_forwarded_total",
    "Unkeyed outcomes forwarded to their home partition of P.results for deduplication",
)
MALFORMED = Counter("sluice_sequencer_malformed_total", "Input records without usable identity")
PENDING_SCOPES = Gauge("sluice_sequencer_pending_scopes", "Ordering scopes with something pending")
BLOCKED_KEYS = Gauge("sluice_sequencer_blocked_keys", "Keys held by a dead head (block mode)")
OLDEST_BLOCK = Gauge(
    "sluice_sequencer_oldest_block_seconds", "Age of the oldest blocked key (0 when none)"
)
TXN_COMMIT = Histogram(
    "sluice_sequencer_txn_commit_seconds",
    "Time to flush state, send offsets and commit one transaction",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
TXN_ABORTS = Counter("sluice_sequencer_txn_aborts_total", "Transactions aborted and rewound")
RESTORE = Histogram(
    "sluice_sequencer_restore_seconds",
    "Time to restore assigned partitions from the changelog",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)


def publish(counts: Counts[str]) -> None:
    """Add what the reassembly counted since the last transaction."""
    EMITTED.labels("ok").inc(counts["emitted"])
    EMITTED.labels("late").inc(counts["late"])
    EMITTED.labels("gap").inc(counts["gaps"])
    DUPLICATES.labels("announcement").inc(counts["duplicate_announcements"])
    DUPLICATES.labels("outcome").inc(counts["duplicate_outcomes"])
    SKIPPED.inc(counts["skipped"])
    RELEASES.inc(counts["releases"])


def publish_state(states: Iterable[Reorder]) -> None:
    """Gauges of the states held: pending scopes, blocked keys, oldest block."""
    states = list(states)
    blocked = [s.blocked_since for r in states for _, s in r.blocked()]
    PENDING_SCOPES.set(sum(r.pending_scopes for r in states))
    BLOCKED_KEYS.set(len(blocked))
    oldest = min((b for b in blocked if b is not None), default=None)
    OLDEST_BLOCK.set(0 if oldest is None else max(0.0, time.time() - oldest / 1000))
