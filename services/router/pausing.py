"""Pausing a partition at a record that may not go yet, and resuming it in time.

The consumer is sought back to the held record's offset, then the partition
is paused: on resume the held record is read again, so nothing is skipped,
and nothing behind it is read meanwhile. The poll loop keeps polling; it asks
:meth:`Pauser.timeout` how long it may block and calls :meth:`Pauser.release`
every turn. A timed hold lasts at least ``min_hold_s`` so that a busy
partition is re-read at most once per ``min_hold_s``.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

from services.router import metrics as m
from services.router.drain import HealthCache
from services.router.holds import Hold, Holds
from services.router.routing import Wait
from shared.kafka.message import TP

log = logging.getLogger(__name__)


class Pauser:
    def __init__(self, consumer: Consumer, health: HealthCache, min_hold_s: float) -> None:
        self.consumer = consumer
        self.health = health
        self.min_hold_s = min_hold_s
        self.holds = Holds()
        self.fresh: list[TopicPartition] = []  # newly assigned: make sure they are not paused

    def hold(self, tp: TP, offset: int, wait: Wait, timed_reason: str, now: float) -> None:
        """Seek ``tp`` back to ``offset`` and pause it until ``wait`` is over."""
        if wait.provider is not None:
            hold = Hold(offset, "provider", provider=wait.provider)
        else:
            assert wait.until_ms is not None
            until = max(wait.until_ms / 1000, now + self.min_hold_s)
            hold = Hold(offset, timed_reason, until=until)
        self.consumer.seek(TopicPartition(tp[0], tp[1], offset))
        self.consumer.pause([TopicPartition(tp[0], tp[1])])
        self.holds.add(tp, hold)
        m.HOLDS.labels(hold.reason).inc()

    def timeout(self, longest: float) -> float:
        """How long the next poll may block: until the next timed hold ends, at most ``longest``."""
        deadline = self.holds.next_deadline()
        return longest if deadline is None else min(longest, max(0.0, deadline - time.time()))

    def release(self, now: float) -> None:
        """Resume the partitions whose hold is over (time passed, provider available)."""
        tps = self.holds.due(now)
        for provider in self.holds.providers():
            if self.health.available(provider, now):
                waiting = self.holds.waiting_for(provider)
                self.holds.drop(waiting)
                tps += waiting
                log.info("provider %s available: draining its parked records", provider)
        fresh = [p for p in self.fresh if (p.topic, p.partition) not in self.holds]
        self.fresh = []
        parts = [TopicPartition(t, p) for t, p in tps] + fresh
        if parts:
            try:
                self.consumer.resume(parts)
            except KafkaException as exc:  # e.g. revoked meanwhile
                log.warning("resume of %d partitions: %s", len(parts), exc)
