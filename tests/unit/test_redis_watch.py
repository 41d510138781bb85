"""The Redis URL as shown (no credentials), and the start-up wait and watch over a dead port."""

from __future__ import annotations

import logging
import socket
import time

import pytest
from prometheus_client import REGISTRY

from shared.errors import ConfigError, StackError
from shared.redis.address import redis_address
from shared.redis.client import connect
from shared.redis.watch import Change, Outage, RedisWatch, cluster_mode_problem


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@cache:6380/1", "redis://cache:6380/1"),
        ("rediss://user:hunter2@cache.example/2", "rediss://cache.example:6379/2"),
        ("redis://127.0.0.1", "redis://127.0.0.1:6379/0"),
        ("redis://[::1]:7000/0", "redis://[::1]:7000/0"),
        ("unix:///run/redis.sock?db=1", "unix:///run/redis.sock"),
    ],
)
def test_address_leaves_credentials_out(url: str, shown: str) -> None:
    assert redis_address(url) == shown


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("not a url", "must specify one of the following schemes"),
        ("redis://:hunter2@127.0.0.1:abc/0", "Port could not be cast"),
        ("redis://:hunter2@127.0.0.1:99999/0", "Port out of range"),
        ("redis://:hunter2@h:1/0?socket_timeout=x", "socket_timeout"),
    ],
)
def test_a_bad_url_is_one_config_error_without_the_password(url: str, needle: str) -> None:
    for make in (redis_address, connect, RedisWatch):
        with pytest.raises(ConfigError) as err:
            make(url)
        msg = str(err.value)
        assert msg.startswith("SLUICE_REDIS_URL is not a Redis URL: ") and needle in msg
        assert "hunter2" not in msg


def test_outage_warns_at_once_then_every_interval_and_reports_recovery() -> None:
    o = Outage(warn_every_s=5)
    assert o.observe(True, 0) is None
    assert o.observe(False, 10) is Change.WARN
    assert o.observe(False, 12) is None
    assert o.observe(False, 15) is Change.WARN
    assert o.observe(False, 19) is None
    assert o.down_for(19) == 9
    assert o.observe(True, 20) is Change.RECOVERED
    assert o.observe(True, 21) is None
    assert o.observe(False, 22) is Change.WARN, "a new outage warns at once"


def gauge() -> float | None:
    return REGISTRY.get_sample_value("sluice_dependency_up", {"dependency": "redis"})


def test_startup_wait_warns_within_seconds_then_gives_up_naming_the_setting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = closed_port()
    watch = RedisWatch(f"redis://:hunter2@127.0.0.1:{port}/0", warn_every_s=0.5)
    caplog.set_level(logging.WARNING, logger="shared.redis.watch")
    started = time.monotonic()
    with pytest.raises(StackError) as err, watch.running(startup_timeout_s=2):
        pytest.fail("ran although Redis never answered")
    assert time.monotonic() - started < 15
    msg = str(err.value)
    assert msg.startswith(f"Redis at redis://127.0.0.1:{port}/0 (SLUICE_REDIS_URL) is unavailable")
    assert "SLUICE_STARTUP_TIMEOUT_S" in msg and "hunter2" not in msg
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) >= 2, "the warning repeats while Redis is away"
    assert all(f"127.0.0.1:{port}" in w and "hunter2" not in w for w in warnings)
    assert gauge() == 0


def test_a_redis_in_cluster_mode_is_refused_with_the_reason() -> None:
    problem = cluster_mode_problem({"cluster_enabled": 1}, "redis://r:6379/0")
    assert problem is not None
    assert problem.startswith("Redis at redis://r:6379/0 (SLUICE_REDIS_URL) runs in cluster mode")
    assert cluster_mode_problem({"cluster_enabled": 0}, "redis://r:6379/0") is None
    assert cluster_mode_problem({}, "redis://r:6379/0") is None  # no such section: not a cluster
