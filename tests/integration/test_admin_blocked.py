"""``/v1/blocked`` and ``sluice blocked`` against a real Kafka and Redis, with a sequencer in block mode.

Keys are blocked as in ``test_sequencer.py``: announcements in ``P.work``, a
``dead`` outcome and later ``ok`` outcomes in ``P.results``. ``P.output`` and
``P.audit`` are read ``read_committed``.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from devtools.stack.resolve import Stack
from services.sequencer.settings import SequencerSettings
from shared import headers as h
from shared.kafka.provision import create_topics
from shared.settings import load
from tests.integration.test_sequencer import Running, announce, dead, ident, ok
from tests.support.admin import OP, VIEW, Client, serve_admin
from tests.support.cli import error_line, on_a_terminal
from tests.support.kafka import end_offsets, produce, read_all, wait_for

pytestmark = pytest.mark.integration

KEY = b"cust-7"
BINARY = b"\xff\xfe-bin"  # not UTF-8
FREE = b"free"


@pytest.fixture
def settings(kafka_env: dict[str, str], pipeline: str) -> SequencerSettings:
    s = load(SequencerSettings, worker_id=f"w-{pipeline}", dead_mode="block")
    create_topics(s)
    return s


@pytest.fixture
def admin(settings: SequencerSettings) -> Iterator[Client]:
    with serve_admin() as client:
        yield client


def block_two_keys(stack: Stack, pipeline: str) -> None:
    """KEY held at 0 (1..3 behind it), BINARY held at 4 (5 behind), FREE (6) flows."""
    keys = [KEY] * 4 + [BINARY] * 2 + [FREE]
    produce(stack.bootstrap, f"{pipeline}.work", [announce(i, k) for i, k in enumerate(keys)])
    produce(stack.bootstrap, f"{pipeline}.results",
            [dead(0, KEY), *(ok(i, KEY) for i in (1, 2, 3)), dead(4, BINARY), ok(5, BINARY),
             ok(6, FREE)])  # fmt: skip


def blocked(admin: Client, token: str = VIEW) -> list[dict[str, Any]]:
    r = admin.get("/v1/blocked", token)
    assert r.status_code == 200, r.text
    return r.json()["blocked"]  # type: ignore[no-any-return]


def wait_blocked(admin: Client, n: int) -> list[dict[str, Any]]:
    wait_for(lambda: len(blocked(admin)) == n, 60, what=f"{n} blocked keys in GET /v1/blocked")
    return blocked(admin)


def release_body(key: bytes, offset: int) -> dict[str, Any]:
    return {"key_b64": base64.b64encode(key).decode(), "src_topic": "src", "src_partition": 0,
            "src_offset": offset}  # fmt: skip


def per_key(
    stack: Stack, pipeline: str, expect: int | None
) -> dict[bytes | None, list[tuple[int, str]]]:
    """``P.output`` by key: until ``expect`` records then 1 s quiet, or (``None``: to show
    nothing more came) until 3 s without a record."""
    out = read_all(stack.bootstrap, f"{pipeline}.output", expect=expect, timeout_s=60, idle_s=3)
    keyed: dict[bytes | None, list[tuple[int, str]]] = defaultdict(list)
    for m in out:
        keyed[m.key()].append((ident(m), h.get_str(m.headers(), h.OUTCOME) or "?"))
    return keyed


def test_list_then_release_durably_in_order_exactly_once_and_audited(
    stack: Stack, pipeline: str, settings: SequencerSettings, admin: Client
) -> None:
    with Running(settings):
        block_two_keys(stack, pipeline)
        listed = wait_blocked(admin, 2)
        assert per_key(stack, pipeline, expect=1) == {FREE: [(6, "ok")]}
    by_key = {base64.b64decode(b["key_b64"]): b for b in listed}
    held, binary = by_key[KEY], by_key[BINARY]
    assert {k: held[k] for k in ("key", "partition", "src_topic", "src_partition", "src_offset",
                                 "waiting", "error_kind", "error_class", "error_message")} == {
        "key": "cust-7", "partition": held["partition"], "src_topic": "src", "src_partition": 0,
        "src_offset": 0, "waiting": 3, "error_kind": "timeout", "error_class": "Hang",
        "error_message": "hung"}  # fmt: skip
    assert held["age_s"] >= 0 and held["since"].endswith("Z")
    assert binary["key"] is None and (binary["src_offset"], binary["waiting"]) == (4, 1)

    # released while the sequencer is down: it applies the release when it comes back
    r = admin.post("/v1/blocked/release", OP, json=release_body(KEY, 0),
                   headers={"X-Request-ID": "rel-1"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json() == {"released": held | {"age_s": r.json()["released"]["age_s"]},
                        "request_id": "rel-1"}  # fmt: skip
    assert per_key(stack, pipeline, expect=1).keys() == {FREE}, "nothing before the restart"
    with Running(settings):
        keyed = per_key(stack, pipeline, expect=5)
        assert keyed[KEY] == [(0, "dead"), (1, "ok"), (2, "ok"), (3, "ok")]
        wait_blocked(admin, 1)
        r = admin.post("/v1/blocked/release", OP,
                       json={**release_body(BINARY, 4), "key_b64": binary["key_b64"]})  # fmt: skip
        assert r.status_code == 200, r.text
        assert per_key(stack, pipeline, expect=7)[BINARY] == [(4, "dead"), (5, "ok")]
        wait_blocked(admin, 0)
    with Running(settings) as again:  # restarted again: nothing is emitted twice
        wait_for(lambda: len(again.seq.states) == settings.partitions, 60,
                 what="assignment and restore")  # fmt: skip
        keyed = per_key(stack, pipeline, expect=None)
    assert sum(len(v) for v in keyed.values()) == 7
    assert keyed == {FREE: [(6, "ok")], KEY: [(0, "dead"), (1, "ok"), (2, "ok"), (3, "ok")],
                     BINARY: [(4, "dead"), (5, "ok")]}  # fmt: skip

    audit = admin.get("/v1/audit", VIEW).json()["records"]
    releases = [a for a in audit if a["action"] == "blocked.release"]
    assert [(a["target"], a["who"]) for a in releases] == [("src/0/4", "operator"),
                                                           ("src/0/0", "operator")]  # fmt: skip
    assert releases[1]["id"] == "rel-1"
    assert releases[1]["params"] == release_body(KEY, 0)
    assert releases[1]["result"]["waiting"] == 3


def ends(stack: Stack, pipeline: str) -> list[dict[int, int]]:
    """High watermarks of P.results and P.audit (aborted transactions' records included);
    retried while new topics have no leader yet."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return [end_offsets(stack.bootstrap, f"{pipeline}.{t}", committed_only=False)
                    for t in ("results", "audit")]  # fmt: skip
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.parametrize(
    ("body", "field", "msg"),
    [
        ({"key": "cust-7", "src_topic": "src", "src_partition": 0}, "src_offset", "Field required"),
        ({**release_body(KEY, 0), "src_partition": -1}, "src_partition", "greater than or equal"),
        ({**release_body(KEY, 0), "key_b64": "not base64!"}, "key_b64", "not base64"),
        ({**release_body(KEY, 0), "key": "cust-7"}, "key_b64", "not both"),
        ({"src_topic": "src", "src_partition": 0, "src_offset": 0}, "key_b64", "name the key"),
        ({**release_body(KEY, 0), "src_topic": "a b"}, "src_topic", "should match pattern"),
        ({**release_body(KEY, 0), "force": True}, "force", "Extra inputs are not permitted"),
    ],
)
def test_a_bad_body_is_a_422_naming_the_field(
    stack: Stack, pipeline: str, admin: Client, body: dict[str, Any], field: str, msg: str
) -> None:
    before = ends(stack, pipeline)
    r = admin.post("/v1/blocked/release", OP, json=body)
    assert r.status_code == 422, r.text
    assert [(e["loc"][-1], msg in e["msg"]) for e in r.json()["detail"]] == [(field, True)]
    assert ends(stack, pipeline) == before


def test_without_the_operator_token_or_for_a_key_not_blocked_nothing_changes(
    stack: Stack, pipeline: str, settings: SequencerSettings, admin: Client
) -> None:
    with Running(settings):
        block_two_keys(stack, pipeline)
        listed = wait_blocked(admin, 2)
    before = ends(stack, pipeline)
    assert admin.get("/v1/blocked", None).status_code == 401
    body = release_body(KEY, 0)
    for token, status in ((None, 401), ("wrong-token-0123456789", 401), (VIEW, 403)):
        r = admin.post("/v1/blocked/release", token, json=body)
        assert r.status_code == status, (token, r.text)
    for other, what in (({**body, "src_offset": 1}, "src/0/1"),  # the key, not its head
                        (release_body(b"nobody", 0), "src/0/0"),
                        ({**body, "src_topic": "other"}, "other/0/0")):  # fmt: skip
        r = admin.post("/v1/blocked/release", OP, json=other)
        assert r.status_code == 404, r.text
        assert f"is not blocked at {what} now" in r.json()["detail"]
    assert ends(stack, pipeline) == before, "no release and no audit record was written"
    assert [b | {"age_s": 0} for b in blocked(admin, OP)] == [b | {"age_s": 0} for b in listed]


def test_blocked_list_and_release_from_the_command_line(
    stack: Stack, pipeline: str, settings: SequencerSettings, admin: Client
) -> None:
    url = str(admin.http.base_url).rstrip("/")
    with Running(settings):
        block_two_keys(stack, pipeline)
        wait_blocked(admin, 2)
        listed = {base64.b64decode(d["key_b64"]): d for d in lines(sluice(url, VIEW, "list"))}
        assert listed.keys() == {KEY, BINARY}
        held = listed[KEY]
        assert (held["key"], held["src_topic"], held["src_offset"], held["waiting"]) == (
            "cust-7", "src", 0, 3)  # fmt: skip
        assert held["error_kind"] == "timeout" and held["age_s"] >= 0
        head_row, *rows = sluice_on_a_terminal(url, "list").splitlines()
        assert head_row.split()[:3] == ["KEY", "PART", "DEAD"]
        assert sorted(row.split()[0] for row in rows) == [
            "b64:" + listed[BINARY]["key_b64"], "cust-7"]  # fmt: skip
        head = ("--src-topic", "src", "--src-partition", "0", "--src-offset")
        refused = sluice(url, VIEW, "release", "--key", "cust-7", *head, "0")
        assert "POST /v1/blocked/release: 403 the viewer token may only read" in error_line(
            refused, "blocked")  # fmt: skip
        unknown = error_line(sluice(url, OP, "release", "--key", "cust-7", *head, "1"), "blocked")
        assert unknown.endswith("404 key 'cust-7' is not blocked at src/0/1 now "
                                "(GET /v1/blocked lists the blocked keys)")  # fmt: skip
        bad = error_line(sluice(url, OP, "release", "--key", "x", *head, "-1"), "blocked")
        assert bad.endswith("422 src_offset: Input should be greater than or equal to 0")
        usage = sluice(url, OP, "release", "--key", "x", "--src-topic", "src")
        assert usage.returncode == 2 and "--src-partition" in usage.stderr
        assert "Traceback" not in usage.stderr
        [done] = lines(sluice(url, OP, "release", "--key", "cust-7", *head, "0"))
        assert done["released"]["src_offset"] == 0 and done["request_id"]
        [done] = lines(sluice(url, OP, "release", "--key-b64", listed[BINARY]["key_b64"], *head,
                              "4", "--json"))  # fmt: skip
        assert done["released"]["key"] is None
        keyed = per_key(stack, pipeline, expect=7)
        assert keyed[KEY] == [(0, "dead"), (1, "ok"), (2, "ok"), (3, "ok")]
        assert keyed[BINARY] == [(4, "dead"), (5, "ok")]
        wait_for(lambda: lines(sluice(url, VIEW, "list")) == [], 60,
                 what="sluice blocked list to be empty")  # fmt: skip


def cli_env(url: str, token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_ADMIN_")}
    return env | {"SLUICE_ADMIN_URL": url, "SLUICE_ADMIN_TOKEN": token}


def sluice(url: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", "blocked", *args],
                          env=cli_env(url, token), capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip


def lines(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def sluice_on_a_terminal(url: str, *args: str) -> str:
    return on_a_terminal(cli_env(url, VIEW), "blocked", *args)


def test_a_release_whose_audit_record_cannot_be_written_is_not_released(
    stack: Stack, pipeline: str, settings: SequencerSettings
) -> None:
    kafka = AdminClient({"bootstrap.servers": stack.bootstrap})
    with Running(settings), serve_admin(admin_audit_timeout_s=3) as admin:
        block_two_keys(stack, pipeline)
        wait_blocked(admin, 2)
        kafka.delete_topics([f"{pipeline}.audit"])[f"{pipeline}.audit"].result(30)
        r = admin.post("/v1/blocked/release", OP, json=release_body(KEY, 0))
        assert r.status_code == 503, r.text
        assert r.json()["detail"].endswith("; nothing was released")
        time.sleep(3)  # a few of the sequencer's transactions
        assert {base64.b64decode(b["key_b64"]) for b in blocked(admin)} == {KEY, BINARY}
        assert per_key(stack, pipeline, expect=None).keys() == {FREE}
        assert not [m for m in read_all(stack.bootstrap, f"{pipeline}.results", idle_s=1)
                    if h.get_str(m.headers(), h.OUTCOME) == "release"]  # fmt: skip
        create_topics(settings)  # P.audit is back: the same app releases it
        wait_for(lambda: admin.post("/v1/blocked/release", OP,
                                    json=release_body(KEY, 0)).status_code == 200, 60,
                 what="a release once P.audit exists again")  # fmt: skip
        assert per_key(stack, pipeline, expect=5)[KEY] == [(0, "dead"), (1, "ok"), (2, "ok"),
                                                          (3, "ok")]  # fmt: skip
