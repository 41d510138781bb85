"""Batch reads that do not wait for a batch to fill.

``Consumer.consume(n, timeout)`` blocks until ``n`` messages are there or the
timeout passes, so at low rates every record would wait out the timeout.
:func:`consume_available` returns whatever is already fetched at once, and
otherwise waits only for the first message, then takes what else is there.
"""

from __future__ import annotations

from confluent_kafka import Consumer, Message


def consume_available(consumer: Consumer, max_messages: int, timeout_s: float) -> list[Message]:
    msgs = consumer.consume(max_messages, 0)
    if msgs or timeout_s <= 0:
        return msgs
    first = consumer.consume(1, timeout_s)
    if not first or max_messages == 1:
        return first
    return first + consumer.consume(max_messages - 1, 0)
