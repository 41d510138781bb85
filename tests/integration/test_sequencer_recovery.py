"""The sequencer through a SIGKILL: every identity exactly once, in per-key order.

The sequencer runs as a subprocess (``sluice sequencer``) with a fixed worker id
(its restart fences the killed one's open transaction at once) and static group
membership (the restart takes over the partitions at once).
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from devtools.fleet.processes import Processes
from devtools.stack.resolve import Stack
from services.sequencer.settings import SequencerSettings
from shared import headers as h
from shared.kafka.provision import create_topics
from shared.settings import load
from tests.integration.test_sequencer import Raw, announce, check_order, ident, key_of, ok
from tests.support.kafka import end_offsets, produce, read_all, wait_for

pytestmark = pytest.mark.integration

HELD = (100, 700, 1400)
"""Offsets of key ``held``: consumed and committed before the kill, the first one's
outcome withheld until after the restart. Only the restored state knows them."""


def key(i: int) -> bytes | None:
    return b"held" if i in HELD else key_of(i, keys=20)


def sequencer_env(kafka_env: dict[str, str]) -> dict[str, str]:
    # static membership: the restarted sequencer fences its predecessor and takes its partitions
    return {
        **kafka_env,
        "SLUICE_WORKER_ID": "seq-1",
        "SLUICE_KAFKA_PROP_GROUP_INSTANCE_ID": "seq-1",
    }


def committed_past(stack: Stack, pipeline: str, ends: dict[str, dict[int, int]]) -> bool:
    """The sequencer group committed offsets at or past ``ends`` of P.work and P.results."""
    c = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": f"{pipeline}.sequencer",
                  "isolation.level": "read_committed"})  # fmt: skip
    try:
        for topic, want in ends.items():
            got = c.committed([TopicPartition(topic, p) for p in want], timeout=10)
            if any(tp.offset < want[tp.partition] for tp in got):
                return False
        return True
    except Exception:
        return False
    finally:
        c.close()


def trickle(stack: Stack, pipeline: str, records: list[tuple[str, Raw]], chunk: int = 40) -> None:
    """Produce (topic suffix, record) pairs a chunk at a time, about 20 chunks a second."""
    p = Producer({"bootstrap.servers": stack.bootstrap, "enable.idempotence": True,
                  "partitioner": "murmur2_random", "linger.ms": 2})  # fmt: skip
    for i in range(0, len(records), chunk):
        for topic, (k, v, hs) in records[i : i + chunk]:
            p.produce(f"{pipeline}.{topic}", v, k, headers=hs)
        assert p.flush(30) == 0
        time.sleep(0.05)


def test_sigkill_mid_run_then_restart_emits_everything_once_in_order(
    stack: Stack, pipeline: str, kafka_env: dict[str, str], tmp_path: Path
) -> None:
    create_topics(load(SequencerSettings))
    n, half = 3000, 1500
    rnd = random.Random(5)
    first = [ok(i, key(i)) for i in range(half) if i != HELD[0]]
    rnd.shuffle(first)
    produce(stack.bootstrap, f"{pipeline}.work", [announce(i, key(i)) for i in range(half)])
    produce(stack.bootstrap, f"{pipeline}.results", first)
    ends = {t: end_offsets(stack.bootstrap, t) for t in (f"{pipeline}.work", f"{pipeline}.results")}
    procs = Processes(tmp_path)
    procs.spawn("sequencer", ["sequencer"], sequencer_env(kafka_env))
    wait_for(lambda: committed_past(stack, pipeline, ends), 90, interval_s=0.5,
             what="the first half consumed and committed")  # fmt: skip
    # Second half: announcements in order, outcomes shuffled in windows, 10 % duplicated.
    second: list[tuple[str, Raw]] = []
    for lo in range(half, n, 100):
        window = [ok(i, key(i)) for i in range(lo, lo + 100)]
        window += rnd.sample(window, 10)
        rnd.shuffle(window)
        second += [("work", announce(i, key(i))) for i in range(lo, lo + 100)]
        second += [("results", r) for r in window]
    feeder = threading.Thread(target=trickle, args=(stack, pipeline, second))
    feeder.start()

    def emitted() -> int:
        return sum(end_offsets(stack.bootstrap, f"{pipeline}.output").values())

    wait_for(lambda: emitted() > 1800, 60, interval_s=0.05,
             what="the sequencer to emit part of the second half")  # fmt: skip
    procs.kill("sequencer")
    assert emitted() < n, "the kill must land mid-run"
    procs.spawn("sequencer", ["sequencer"], sequencer_env(kafka_env))
    try:
        feeder.join()
        produce(stack.bootstrap, f"{pipeline}.results", [ok(HELD[0], b"held")])
        out = read_all(stack.bootstrap, f"{pipeline}.output", expect=n, timeout_s=120, idle_s=3)
    finally:
        codes = procs.stop(grace_s=60)
    assert codes["sequencer"] == 0, procs.log_path("sequencer").read_text()[-3000:]
    ids = sorted(ident(m) for m in out)
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    assert not dupes, f"emitted twice: {dupes[:20]}"
    assert ids == list(range(n)), f"missing: {sorted(set(range(n)) - set(ids))[:20]}"
    per_key = check_order(out)
    assert per_key[b"held"] == list(HELD), "the restored state released the held key in order"
    assert all(h.get(m.headers(), h.LATE) is None for m in out)
