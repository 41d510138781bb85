"""Start-up problems through the real CLI: one line naming the setting, exit 1, no traceback.

Nothing needs to run: the broker is at a closed port, Redis at a closed port or
a bad URL. ``SLUICE_STARTUP_TIMEOUT_S`` keeps the bounded waits short.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.support.cli import error_line

SERVICES = ("ingest", "enrich", "router", "sequencer")
NOWHERE = "127.0.0.1:1"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sluice(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env = {"SLUICE_KAFKA_BOOTSTRAP": NOWHERE, "SLUICE_SOURCE_TOPIC": "src",
           "SLUICE_REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0",
           "SLUICE_STARTUP_TIMEOUT_S": "2", "SLUICE_LOG_FORMAT": "json", **env}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env={**base, **env},
                          capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.mark.parametrize("service", SERVICES)
def test_unknown_kafka_property(service: str) -> None:
    line = error_line(sluice(service, SLUICE_KAFKA_PROP_NO_SUCH_THING="1"), service)
    assert "SLUICE_KAFKA_PROP_NO_SUCH_THING" in line and "no.such.thing" in line


@pytest.mark.parametrize("service", ["sequencer", "topics"])
def test_bad_kafka_property_value(service: str) -> None:
    args = ["topics", "create"] if service == "topics" else [service]
    line = error_line(sluice(*args, SLUICE_KAFKA_PROP_ACKS="banana"), service)
    assert "SLUICE_KAFKA_PROP_ACKS: Invalid value" in line


@pytest.mark.parametrize("service", ["ingest", "sequencer"])
def test_unreachable_broker_after_a_bounded_wait(service: str) -> None:
    started = time.monotonic()
    line = error_line(sluice(service), service)
    assert line == (
        f"sluice {service}: error: Kafka at {NOWHERE} (SLUICE_KAFKA_BOOTSTRAP) is not reachable: "
        "Failed to get metadata: Local: Broker transport failure"
    )
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("service", ["enrich", "router"])
@pytest.mark.parametrize(
    ("url", "needle"),
    [("not a url", "must specify one of the following schemes"),
     ("redis://:hunter2@127.0.0.1:abc/0", "Port could not be cast to integer value as 'abc'")],
)  # fmt: skip
def test_bad_redis_url(service: str, url: str, needle: str) -> None:
    line = error_line(sluice(service, SLUICE_REDIS_URL=url), service)
    assert "SLUICE_REDIS_URL is not a Redis URL" in line and needle in line
    assert "hunter2" not in line


@pytest.mark.parametrize("service", ["enrich", "router"])
def test_unreachable_redis_warns_then_stops_after_the_startup_timeout(service: str) -> None:
    port = closed_port()
    proc = sluice(service, SLUICE_REDIS_URL=f"redis://:hunter2@127.0.0.1:{port}/0",
                  SLUICE_STARTUP_TIMEOUT_S="3")  # fmt: skip
    line = error_line(proc, service)
    address = f"redis://127.0.0.1:{port}/0"
    assert line.startswith(f"sluice {service}: error: Redis at {address} (SLUICE_REDIS_URL) ")
    assert "SLUICE_STARTUP_TIMEOUT_S" in line
    warnings = [x for x in proc.stderr.splitlines() if '"warning"' in x and address in x]
    assert warnings, "a warning names Redis while the service waits"
    assert "hunter2" not in proc.stderr


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


@pytest.mark.parametrize("service", SERVICES)
def test_metrics_port_in_use(service: str, taken_port: int) -> None:
    line = error_line(sluice(service, SLUICE_METRICS_PORT=str(taken_port)), service)
    assert f"SLUICE_METRICS_PORT: cannot listen on 127.0.0.1:{taken_port}" in line
    assert "Address already in use" in line


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_max_in_flight_must_be_positive(value: str) -> None:
    proc = sluice("enrich", "--max-in-flight", value)
    assert proc.returncode == 2, proc.stderr
    assert "--max-in-flight" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("command", "module"),
    [("demo", "devtools.demo"), ("bench", "bench.main"), ("tickets", "devtools.runs.produce")],
)
def test_a_development_command_without_the_development_tools_is_one_line(
    command: str, module: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The runtime image leaves devtools and bench out: their commands say so, no traceback."""
    from services.cli import main

    monkeypatch.setitem(sys.modules, module, None)  # importing it raises ModuleNotFoundError
    # main() points the root logger at this test's captured stderr, which is closed once
    # the test ends: every later test of this process would log to a closed file
    monkeypatch.setattr("services.cli.logs.configure", lambda: None)
    assert main([command]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"sluice {command}: error: this command is part "
                                               "of the development tools")  # fmt: skip
