"""Shared fixtures: one real Kafka + Redis per test session.

Where they come from: ``SLUICE_KAFKA_BOOTSTRAP`` / ``SLUICE_REDIS_URL`` if set,
else testcontainers when Docker answers, else the local stack (JDK + Kafka
jars from Maven Central, ``redis-server``). Unit tests never touch them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from devtools.stack.resolve import Stack, acquire

pytest_plugins = ["tests.support.sigterm"]


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    s = acquire()
    try:
        yield s
    finally:
        if s.kafka is not None and os.environ.get("SLUICE_KEEP_LOGS"):
            print(f"broker log: {s.kafka.log_path}")
        s.close()


@pytest.fixture
def pipeline() -> str:
    """A pipeline name of its own for each test: topics never collide."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def kafka_env(stack: Stack, pipeline: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "SLUICE_KAFKA_BOOTSTRAP": stack.bootstrap,
        "SLUICE_REDIS_URL": stack.redis_url,
        "SLUICE_PIPELINE": pipeline,
        "SLUICE_PARTITIONS": "3",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    """On a failing integration test, show the tail of the local broker's log."""
    if call.when != "call" or call.excinfo is None:
        return
    s = getattr(item, "funcargs", {}).get("stack")
    if isinstance(s, Stack) and s.kafka is not None:
        item.add_report_section(
            "call",
            "broker log (tail)",
            "\n".join(line[:300] for line in s.kafka.log_tail(20).splitlines()),
        )
