"""Start-up checks against a real broker and Redis, through the real CLI.

Each problem is one line naming the setting or the topic and exit 1; the
Redis watch's flag follows a real redis-server going away and coming back.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client import REGISTRY

from devtools.stack.ports import free_port
from devtools.stack.redis_local import LocalRedis
from devtools.stack.resolve import Stack
from shared.redis.watch import RedisWatch
from shared.topics import Topics
from tests.support.cli import error_line
from tests.support.kafka import create_topic, wait_for

pytestmark = pytest.mark.integration


def sluice(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, "SLUICE_STARTUP_TIMEOUT_S": "3", "SLUICE_LOG_FORMAT": "json"}
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env=full,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.mark.parametrize("service", ["enrich", "router"])
def test_unreachable_broker_with_redis_up(service: str, kafka_env: dict[str, str]) -> None:
    proc = sluice({**kafka_env, "SLUICE_KAFKA_BOOTSTRAP": "127.0.0.1:1"}, service)
    assert error_line(proc, service) == (
        f"sluice {service}: error: Kafka at 127.0.0.1:1 (SLUICE_KAFKA_BOOTSTRAP) is not "
        "reachable: Failed to get metadata: Local: Broker transport failure"
    )


def test_sigterm_while_waiting_for_redis_exits_cleanly(kafka_env: dict[str, str]) -> None:
    """The stop flag is installed before the wait: a stop then is exit 0, not -15 or a hang."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nobody answers there
    env = {**os.environ, **kafka_env, "SLUICE_REDIS_URL": f"redis://127.0.0.1:{port}/0",
           "SLUICE_STARTUP_TIMEOUT_S": "300", "SLUICE_LOG_FORMAT": "json"}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "router"], env=env,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the first warning: it is waiting for Redis
            if '"warning"' in line and f"127.0.0.1:{port}" in line:
                break
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def redis_user(stack: Stack) -> Iterator[str]:
    """A Redis user with password ``right-pw`` on the stack's Redis; its name."""
    name = f"sluice-{uuid.uuid4().hex[:8]}"
    admin = redis.Redis.from_url(stack.redis_url)
    admin.acl_setuser(name, enabled=True, passwords=["+right-pw"], keys=["*"], commands=["+@all"])
    try:
        yield name
    finally:
        admin.acl_deluser(name)
        admin.close()


@pytest.mark.parametrize("service", ["enrich", "router"])
def test_wrong_redis_password_stops_after_the_startup_timeout(
    service: str, stack: Stack, kafka_env: dict[str, str], redis_user: str
) -> None:
    hostport = stack.redis_url.split("//", 1)[1].split("/", 1)[0]
    url = f"redis://{redis_user}:wrong-pw@{hostport}/0"
    proc = sluice({**kafka_env, "SLUICE_REDIS_URL": url}, service)
    line = error_line(proc, service)
    assert f"Redis at redis://{hostport}/0 (SLUICE_REDIS_URL) is unavailable after 3 s" in line
    assert "username-password" in line
    assert "wrong-pw" not in proc.stderr
    assert any('"warning"' in x and f"redis://{hostport}/0" in x for x in proc.stderr.splitlines())


def test_ingest_refuses_to_start_without_the_poison_dlq(
    stack: Stack, kafka_env: dict[str, str], pipeline: str
) -> None:
    t = Topics(pipeline)
    for name in (f"{pipeline}-src", t.work, t.results, t.state):
        create_topic(stack.bootstrap, name)
    proc = sluice(kafka_env, "ingest", "--source-topic", f"{pipeline}-src")
    assert error_line(proc, "ingest") == (
        f"sluice ingest: error: topic '{t.dlq('poison')}' does not exist: "
        "run `sluice topics create`"
    )


@pytest.mark.parametrize("service", ["ingest", "enrich"])
def test_topics_that_are_not_co_partitioned_are_refused(
    service: str, stack: Stack, kafka_env: dict[str, str], pipeline: str
) -> None:
    t = Topics(pipeline)
    for name in (f"{pipeline}-src", t.work, t.state, t.failures, t.dlq("poison")):
        create_topic(stack.bootstrap, name, partitions=3)
    create_topic(stack.bootstrap, t.results, partitions=2)
    proc = sluice({**kafka_env, "SLUICE_SOURCE_TOPIC": f"{pipeline}-src"}, service)
    line = error_line(proc, service)
    assert "must be co-partitioned" in line and f"'{t.results}': 2" in line


def cluster_port() -> int:
    """A free port whose cluster bus port (10000 higher) is free too: redis-server in
    cluster mode refuses a port above 55535."""
    for _ in range(200):
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise AssertionError("no free port pair for a cluster-mode redis-server")


@pytest.mark.parametrize("service", ["enrich", "router"])
def test_a_redis_in_cluster_mode_is_refused_at_start(
    service: str, kafka_env: dict[str, str], tmp_path: Path
) -> None:
    local = LocalRedis(port=cluster_port(), extra_args=(
        "--cluster-enabled", "yes", "--cluster-config-file", str(tmp_path / "nodes.conf"),
    )).start()  # fmt: skip
    try:
        proc = sluice({**kafka_env, "SLUICE_REDIS_URL": local.url}, service)
    finally:
        local.cleanup()
    line = error_line(proc, service)
    assert f"Redis at {local.url} (SLUICE_REDIS_URL) runs in cluster mode" in line, line


def gauge() -> float | None:
    return REGISTRY.get_sample_value("sluice_dependency_up", {"dependency": "redis"})


def test_watch_flag_follows_redis_away_and_back() -> None:
    local = LocalRedis().start()
    watch = RedisWatch(local.url, interval_s=0.2)
    try:
        with watch.running(startup_timeout_s=10):
            assert gauge() == 1
            local.stop()
            wait_for(lambda: gauge() == 0, 20, what="flag down while Redis is away")
            local.start()  # same port
            wait_for(lambda: gauge() == 1, 20, what="flag up once Redis answers again")
    finally:
        local.cleanup()
