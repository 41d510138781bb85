"""The dry run's cost is what the replay then costs, by fakellm's own counters.

Some DLQ records carry texts a real enrich worker answered before (their
answers are in the result cache, under enrich's key), the others texts never
asked. The dry run says how many of each; the replay through a real enrich
worker then asks fakellm exactly the paid ones, once each, and a replay of
records whose answers are all cached asks it nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.stack.resolve import Stack
from services.fakellm.config import FakeLLMConfig, FixedLatency
from services.fakellm.server import serve_in_thread
from shared.kafka.provision import create_topics
from shared.kinds import FailureKind
from shared.settings import CommonSettings, load
from tests.integration.test_admin_dlq import cached_run, put
from tests.integration.test_replay_pipeline import replay
from tests.support.admin import VIEW, Client, serve_admin
from tests.support.dlq import dead_record
from tests.support.enrich import Worker, fake_stats, write_config

pytestmark = pytest.mark.integration

ANSWERED = 4  # texts enrich answered before: cache hits
NEW = 5  # texts never asked: paid calls


@pytest.fixture
def topics(kafka_env: dict[str, str], pipeline: str) -> str:
    create_topics(load(CommonSettings))
    return pipeline


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    with serve_in_thread(FakeLLMConfig(latency=FixedLatency(ms=20))) as url:
        yield write_config(tmp_path / "c.yaml", url, rpm=6000), url


def dry_run(admin: Client) -> dict[str, Any]:
    r = admin.post("/v1/replays", VIEW, json={"dlq": "error", "dry_run": True})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def calls(url: str) -> tuple[int, int]:
    """fakellm's (requests, answers it would have billed twice) so far."""
    s = fake_stats(url)
    return s["requests_total"], s["repeated_paid_requests"]


def test_the_dry_runs_cache_hits_and_paid_calls_are_what_the_replay_costs(
    stack: Stack, topics: str, fake: tuple[Path, str]
) -> None:
    cfg, url = fake
    answered = cached_run(stack, topics, cfg, ANSWERED)
    dead = [dead_record(i, value=value, kind=FailureKind.INVALID_OUTPUT, error_class="schema")
            for i, (_key, value, _hs) in enumerate(answered)]  # fmt: skip
    dead += [dead_record(10 + i, text=f"never asked before {i}") for i in range(NEW)]
    put(stack, f"{topics}.dlq.error", dead)
    assert calls(url) == (ANSWERED, 0)  # the cached run's own calls
    with serve_admin(config_file=cfg) as admin, Worker(config_file=cfg) as worker:
        dry = dry_run(admin)
        assert (dry["matched"], dry["selected"], dry["repeats"], dry["unrenderable"]) == (
            ANSWERED + NEW, ANSWERED + NEW, 0, 0)  # fmt: skip
        assert (dry["cache_hits"], dry["paid_calls"]) == (ANSWERED, NEW)
        done = replay(admin, "cost-1", succeeded=ANSWERED + NEW, failed_again=0)
        # fakellm was asked exactly the paid calls, each once; the task saw the same hits
        assert calls(url) == (ANSWERED + dry["paid_calls"], 0)
        assert (done["sent"], done["cache_hits"]) == (ANSWERED + NEW, dry["cache_hits"])

        # every answer is cached now: the dry run says so and the replay costs no call
        again = dry_run(admin)
        assert (again["matched"], again["cache_hits"], again["paid_calls"]) == (
            ANSWERED + NEW, ANSWERED + NEW, 0)  # fmt: skip
        done = replay(admin, "cost-2", succeeded=ANSWERED + NEW, failed_again=0)
        assert (done["sent"], done["cache_hits"]) == (ANSWERED + NEW, ANSWERED + NEW)
        assert calls(url) == (ANSWERED + NEW, 0)
    assert worker.error is None, repr(worker.error)
