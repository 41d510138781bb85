"""The chaos schedule (pure)."""

import itertools
from collections import Counter

from services.local.chaos import plan

SERVICES = ["ingest", "enrich-1", "enrich-2", "router", "sequencer"]


def test_every_service_is_killed_as_often_as_asked_never_twice_in_a_row() -> None:
    for seed in range(50):
        actions = plan(SERVICES, 2, every_s=5.0, seed=seed)
        kills = [a.target for a in actions if a.kind == "kill"]
        assert Counter(kills) == dict.fromkeys(SERVICES, 2)
        assert all(a != b for a, b in itertools.pairwise(kills)), kills


def test_one_broker_restart_one_redis_restart_one_outage_in_time_order() -> None:
    actions = plan(SERVICES, 2, every_s=5.0, seed=1, outage_at_s=12.0)
    kinds = Counter(a.kind for a in actions)
    assert kinds == {"kill": 10, "broker_restart": 1, "redis_restart": 1, "outage": 1}
    times = [a.at_s for a in actions]
    assert times == sorted(times)
    kill_times = {a.at_s for a in actions if a.kind == "kill"}
    restarts = [a.at_s for a in actions if a.kind.endswith("restart")]
    assert not kill_times & set(restarts), "a restart never coincides with a kill"
    assert plan(SERVICES, 2, 5.0, seed=1) == plan(SERVICES, 2, 5.0, seed=1)
    assert "outage" not in {a.kind for a in plan(SERVICES, 1, 5.0, seed=1, outage_at_s=None)}
