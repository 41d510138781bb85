"""`sluice topics create` and `sluice dev` against a real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from confluent_kafka.admin import AdminClient

from devtools.stack.kafka_local import metadata_ok
from devtools.stack.resolve import Stack
from shared.errors import TopicError
from shared.kafka.provision import create_topics
from shared.settings import CommonSettings, load
from shared.topics import Topics
from tests.support.kafka import create_topic

pytestmark = pytest.mark.integration


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def test_topics_create_is_idempotent_and_complete(
    stack: Stack, kafka_env: dict[str, str], pipeline: str
) -> None:
    first = cli(kafka_env, "topics", "create")
    assert first.returncode == 0, first.stderr
    created = json.loads(first.stdout.strip().splitlines()[-1])["created"]
    expected = {s.name for s in Topics(pipeline).specs(3)}
    assert set(created) == expected
    second = cli(kafka_env, "topics", "create")
    assert second.returncode == 0
    assert json.loads(second.stdout.strip().splitlines()[-1])["created"] == []
    md = AdminClient({"bootstrap.servers": stack.bootstrap}).list_topics(timeout=10)
    for name in (f"{pipeline}.work", f"{pipeline}.results", f"{pipeline}.sequencer.state"):
        assert len(md.topics[name].partitions) == 3


def test_missing_source_topic_is_a_clear_error(kafka_env: dict[str, str]) -> None:
    proc = cli(kafka_env, "topics", "create", "--source-topic", "no-such-topic")
    assert proc.returncode == 1
    assert "no-such-topic" in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_conflicting_partition_count_is_refused(
    stack: Stack, kafka_env: dict[str, str], pipeline: str
) -> None:
    create_topic(stack.bootstrap, f"{pipeline}.work", partitions=2)
    with pytest.raises(TopicError, match=r"work has 2 partitions"):
        create_topics(load(CommonSettings))
    proc = cli(kafka_env, "topics", "create")
    assert proc.returncode == 1 and "partitions" in proc.stderr and "Traceback" not in proc.stderr


def test_dev_up_status_down(tmp_path: object) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SLUICE_KAFKA") and k != "SLUICE_REDIS_URL"
    }
    env["SLUICE_DEV_DIR"] = str(tmp_path)
    env["SLUICE_NO_DOCKER"] = "1"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "services.cli", "dev", *args], env=env,
                              capture_output=True, text=True, timeout=180, check=False)  # fmt: skip

    up = run("up")
    try:
        assert up.returncode == 0, up.stderr[-2000:]
        bootstrap = next(
            line.split("=")[1].split()[0]
            for line in up.stdout.splitlines()
            if "SLUICE_KAFKA_BOOTSTRAP" in line
        )
        assert metadata_ok(bootstrap)
        again = run("up")
        assert again.returncode == 0 and bootstrap in again.stdout, "up is idempotent"
        status = run("status")
        assert status.returncode == 0, status.stdout
        assert "kafka" in status.stdout and "redis" in status.stdout and "fakellm" in status.stdout
    finally:
        down = run("down")
    assert down.returncode == 0
    assert not metadata_ok(bootstrap, timeout_s=1)
    assert run("status").returncode == 1
