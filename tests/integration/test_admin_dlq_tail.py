"""The replay runner's tail of a topic on a real Kafka: each record once, across polls."""

from __future__ import annotations

import pytest

from devtools.stack.resolve import Stack
from services.admin.dlq.reader import Budget, tailing_consumer
from services.admin.dlq.tail import Tail
from shared.envelope import Consumed
from shared.kafka.provision import create_topics
from shared.settings import CommonSettings, load
from tests.support.kafka import produce, wait_for

pytestmark = pytest.mark.integration


def test_a_tail_hands_out_each_record_once_across_polls_and_from_the_end(
    stack: Stack, kafka_env: dict[str, str], pipeline: str
) -> None:
    settings = load(CommonSettings)
    create_topics(settings)
    topic = f"{pipeline}.results"
    produce(stack.bootstrap, topic, [(b"k%d" % i, b"old %d" % i, []) for i in range(4)])
    seen: list[bytes] = []
    late: list[bytes] = []

    def visit(c: Consumed) -> None:
        seen.append(c.value or b"")

    def visit_late(c: Consumed) -> None:
        late.append(c.value or b"")

    start = {p: 0 for p in range(6)}
    tail = Tail(tailing_consumer(settings), topic, start)
    from_end = Tail(tailing_consumer(settings), topic, None)
    try:
        budget = Budget(0.5, 50_000)
        from_end.poll(budget, visit_late)  # assigned at the end: the four old ones are behind it
        wait_for(lambda: tail.poll(budget, visit) >= 0 and len(seen) >= 4, 30, what="the old four")
        produce(stack.bootstrap, topic, [(b"k%d" % i, b"new %d" % i, []) for i in range(3)])

        def both() -> bool:
            tail.poll(budget, visit)
            from_end.poll(budget, visit_late)
            return len(seen) >= 7 and len(late) >= 3

        wait_for(both, 30, what="the new three in both tails")
        tail.poll(budget, visit)  # nothing more: nothing is handed out twice
        assert sorted(seen) == sorted([b"old %d" % i for i in range(4)] + [b"new %d" % i for i in range(3)])  # fmt: skip
        assert sorted(late) == [b"new %d" % i for i in range(3)]
        assert tail.positions is not None and sum(tail.positions.values()) == 7
    finally:
        tail.consumer.close()
        from_end.consumer.close()
