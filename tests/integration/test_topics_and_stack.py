"""`sluice topics create` and `sluice dev` against a real broker."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from devtools.stack.kafka_local import metadata_ok
from devtools.stack.resolve import Stack
from shared.errors import TopicError
from shared.kafka.provision import create_topics
from shared.settings import CommonSettings, load
from shared.topics import Topics
from tests.support.kafka import create_topic, read_all

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
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    md = admin.list_topics(timeout=10)
    for name in (f"{pipeline}.work", f"{pipeline}.results", f"{pipeline}.sequencer.state"):
        assert len(md.topics[name].partitions) == 3
    # the broker took every topic's settings as given (retention, message size, and the
    # compacted topics' segment and tombstone bounds)
    specs = Topics(pipeline).specs(3)
    assert sum(1 for spec in specs if spec.config) > sum(
        1 for spec in specs if "cleanup.policy" in spec.config
    )
    for spec in specs:
        res = ConfigResource(ResourceType.TOPIC, spec.name)
        live = admin.describe_configs([res])[res].result(30)
        assert {k: live[k].value for k in spec.config} == spec.config, spec.name


def test_missing_source_topic_is_a_clear_error(kafka_env: dict[str, str]) -> None:
    proc = cli(kafka_env, "topics", "create", "--source-topic", "no-such-topic")
    assert proc.returncode == 1
    assert "no-such-topic" in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_topics_create_can_make_the_source_topic_too(
    stack: Stack, kafka_env: dict[str, str], pipeline: str
) -> None:
    """compose's one-shot ``topics`` service: the source, then the pipeline's topics, idempotent."""
    source = f"{pipeline}.tickets"
    args = ("topics", "create", "--source-topic", source, "--source-partitions", "2")
    for _ in range(2):
        proc = cli(kafka_env, *args)
        assert proc.returncode == 0, proc.stderr
    md = AdminClient({"bootstrap.servers": stack.bootstrap}).list_topics(timeout=10)
    assert len(md.topics[source].partitions) == 2
    assert len(md.topics[f"{pipeline}.work"].partitions) == 3
    usage = cli(kafka_env, "topics", "create", "--source-partitions", "2")
    assert usage.returncode == 2 and "--source-partitions needs --source-topic" in usage.stderr


def test_tickets_produces_the_sample_tickets_to_the_source_topic(
    stack: Stack, kafka_env: dict[str, str], pipeline: str
) -> None:
    """compose's ``demo`` profile: ``sluice tickets`` sends every record and says how many."""
    source = f"{pipeline}.tickets"
    create_topic(stack.bootstrap, source, partitions=3)
    env = {**kafka_env, "SLUICE_SOURCE_TOPIC": source}
    proc = cli(env, "tickets", "--records", "40", "--keys", "5", "--rate", "400")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"topic": source, "produced": 40}
    got = read_all(stack.bootstrap, source, expect=40, timeout_s=60)
    assert len(got) == 40
    assert {m.key() for m in got} <= {f"customer-{k}".encode() for k in range(5)}
    missing = cli(kafka_env, "tickets", "--records", "1")
    assert missing.returncode == 1 and "SLUICE_SOURCE_TOPIC" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_conflicting_partition_count_is_refused(
    stack: Stack, kafka_env: dict[str, str], pipeline: str
) -> None:
    create_topic(stack.bootstrap, f"{pipeline}.work", partitions=2)
    with pytest.raises(TopicError, match=r"work has 2 partitions"):
        create_topics(load(CommonSettings))
    proc = cli(kafka_env, "topics", "create")
    assert proc.returncode == 1 and "partitions" in proc.stderr and "Traceback" not in proc.stderr


def exported(stdout: str) -> dict[str, str]:
    """The variables of ``sluice dev up``'s ``export`` line."""
    [line] = [line for line in stdout.splitlines() if line.startswith("export ")]
    return dict(kv.split("=", 1) for kv in line.split()[1:])


def printed_token(stdout: str) -> str:
    """The line after ``admin operator token ...``."""
    lines = stdout.splitlines()
    [at] = [i for i, line in enumerate(lines) if line.startswith("admin operator token")]
    return lines[at + 1].strip()


def test_dev_up_status_down(tmp_path: Path) -> None:
    """The stack, with the admin on loopback behind a token printed once; down stops it all."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLUICE_KAFKA", "SLUICE_ADMIN")) and k != "SLUICE_REDIS_URL"
    }
    env["SLUICE_DEV_DIR"] = str(tmp_path)
    env["SLUICE_NO_DOCKER"] = "1"

    def run(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "services.cli", *args],
                              env={**env, **(extra or {})}, capture_output=True, text=True,
                              timeout=180, check=False)  # fmt: skip

    up = run("dev", "up")
    try:
        assert up.returncode == 0, up.stderr[-2000:]
        exports = exported(up.stdout)
        bootstrap, admin = exports["SLUICE_KAFKA_BOOTSTRAP"], exports["SLUICE_ADMIN_URL"]
        assert metadata_ok(bootstrap)
        assert admin.startswith("http://127.0.0.1:"), "the dev admin listens on loopback"
        token = printed_token(up.stdout)
        token_file = Path(exports["SLUICE_ADMIN_TOKEN_FILE"])
        assert token_file.read_text().strip() == token
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert httpx.get(f"{admin}/healthz", timeout=10).json() == {"status": "ok"}
        assert httpx.get(f"{admin}/v1/providers", timeout=10).status_code == 401
        answer = httpx.get(f"{admin}/v1/providers", timeout=10,
                           headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert [p["name"] for p in answer.json()["providers"]] == ["fakellm"]
        listed = run("providers", "list", "--json", extra=exports)
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout.splitlines()[0])["name"] == "fakellm"
        again = run("dev", "up")
        assert again.returncode == 0 and bootstrap in again.stdout, "up is idempotent"
        assert token not in again.stdout and str(token_file) in again.stdout, "printed once"
        status = run("dev", "status")
        assert status.returncode == 0, status.stdout
        for name in ("kafka", "redis", "fakellm", "admin"):
            assert name in status.stdout
    finally:
        down = run("dev", "down")
    assert down.returncode == 0
    assert "admin" in down.stdout and "killed" not in down.stdout, down.stdout
    assert not metadata_ok(bootstrap, timeout_s=1)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{admin}/healthz", timeout=2)
    log = (tmp_path / "admin.log").read_text()
    assert "admin stopping" in log and "Traceback" not in log
    assert not token_file.exists()
    assert run("dev", "status").returncode == 1
