"""The operator page's rendering (pure): escaping, read-only for viewers, lag strip, vendored htmx."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path

from services.admin import models as m
from services.admin.auth import Principal
from services.admin.blocked.models import Blocked, BlockedKeys
from services.admin.dlq import models as dm
from services.admin.dlq.filters import Filters
from services.admin.dlq.replay_tasks import ReplayView
from services.admin.dlq.task import Status as Status_
from services.admin.lag.models import GroupLag, LagReport, PartitionLag
from services.admin.lag.status import Status
from services.admin.page import view
from services.admin.page.routes import STATIC_DIR
from services.admin.tokens import Role

OPERATOR = Principal(Role.OPERATOR, "operator")
VIEWER = Principal(Role.VIEWER, "viewer")
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC).timestamp()
EVIL = "<img src=x onerror=alert(1)>"


def provider(name: str, pause: m.Pause | None = None) -> m.Provider:
    return m.Provider(
        name=name, kind="openai", paused=pause is not None, pause=pause,
        breaker=m.Breaker(state="closed"),
        buckets=[m.Bucket(bucket="rpm", kind="requests", model=None, left=12.5, capacity=60,
                          refill_per_s=1.0)],
        cooldown_until=None, in_flight=2, workers=1,
        last_minute=m.LastMinute(calls=10, errors=1, calls_per_s=0.2, error_rate=0.1,
                                 p50_ms=80.0, p99_ms=950.0),
    )  # fmt: skip


def part(topic: str, partition: int, lag: int | None, status: Status) -> PartitionLag:
    return PartitionLag(topic=topic, partition=partition, committed=None if lag is None else 100,
                        end=100 + (lag or 0), lag_records=lag,
                        lag_seconds=None if not lag else 3.25, status=status)  # fmt: skip


def group(stage: str, *parts: PartitionLag, missing: tuple[str, ...] = ()) -> GroupLag:
    return GroupLag(group=f"p.{stage}", stage=stage, state="stable", missing_topics=missing,
                    partitions=parts)  # fmt: skip


# -- the shell ----------------------------------------------------------------
def test_the_shell_asks_for_the_token_and_holds_no_data() -> None:
    html = view.shell(insecure_dev=False)
    assert 'id="token-form"' in html and 'type="password"' in html
    assert 'data-insecure-dev="0"' in html
    for fragment in (
        "/page/providers",
        "/page/blocked",
        "/page/lag",
        "/page/audit",
        "/page/session",
    ):
        assert f'hx-get="{fragment}"' in html
    assert f'src="/static/{view.HTMX}"' in html
    assert "Bearer" not in html and "<table" not in html
    assert 'data-insecure-dev="1"' in view.shell(insecure_dev=True)


def test_the_vendored_htmx_is_the_recorded_file() -> None:
    record = (STATIC_DIR / "VENDORED.md").read_text()
    [row] = [line for line in record.splitlines() if line.startswith(f"| {view.HTMX} ")]
    recorded = row.rstrip(" |").rsplit("|", 1)[1].strip()
    assert re.fullmatch(r"[0-9a-f]{64}", recorded)
    assert hashlib.sha256((STATIC_DIR / view.HTMX).read_bytes()).hexdigest() == recorded
    for name in ("page.js", "page.css", "htmx.LICENSE"):
        assert (STATIC_DIR / name).is_file()


def test_the_package_ships_the_templates_and_the_static_files() -> None:
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert '"services.admin" = ["templates/*.html", "static/*"]' in pyproject


# -- providers ----------------------------------------------------------------
def test_html_in_a_provider_name_or_a_pause_reason_is_shown_as_text() -> None:
    pause = m.Pause(by="operator", reason=f'{EVIL} & "quoted"',
                    since=datetime(2024, 5, 1, 11, 57, tzinfo=UTC))  # fmt: skip
    html = view.providers(m.Providers(providers=[provider(EVIL, pause)]), OPERATOR, NOW)
    assert "<img" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&amp; &#34;quoted&#34;" in html
    # the action's URL: the name as one escaped path segment
    assert 'hx-post="/v1/providers/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E/resume"' in html
    assert "3 min ago" in html and "2024-05-01 11:57:00 UTC" in html


def test_a_running_provider_offers_pause_with_a_required_reason_and_a_paused_one_resume() -> None:
    html = view.providers(m.Providers(providers=[provider("a")]), OPERATOR, NOW)
    assert 'hx-post="/v1/providers/a/pause"' in html and 'hx-ext="json-body"' in html
    assert re.search(r'<input name="reason" required maxlength="500"', html)
    assert "resume" not in html and "disabled" not in html
    paused = m.Pause(by="operator", reason="r", since=None)
    html = view.providers(m.Providers(providers=[provider("a", paused)]), OPERATOR, NOW)
    assert 'hx-post="/v1/providers/a/resume"' in html and "/pause" not in html
    assert 'class="badge paused"' in html


def test_a_viewer_gets_the_actions_disabled() -> None:
    for pause in (None, m.Pause(by="operator", reason="r", since=None)):
        html = view.providers(m.Providers(providers=[provider("a", pause)]), VIEWER, NOW)
        assert html.count(" disabled") >= 1
        assert re.search(r"<button [^>]*disabled", html)
    assert "read only" in view.session(VIEWER, "p") and "read only" not in view.session(
        OPERATOR, "p"
    )


# -- lag ----------------------------------------------------------------------
def test_lag_rows_are_one_per_group_and_topic_with_cells_in_partition_order() -> None:
    groups = (
        group("enrich", part("p.work", 2, 7, Status.GROWING), part("p.work", 0, 0, Status.OK),
              part("p.work", 1, None, Status.NO_COMMITS)),
        group("router", part("p.failures", 0, 4, Status.STALLED), part("p.parked", 0, 0, Status.OK)),
        group("ingest"),
    )  # fmt: skip
    rows = view.lag_rows(groups)
    assert [(r.stage, r.topic, [c.partition for c in r.cells]) for r in rows] == [
        ("enrich", "p.work", [0, 1, 2]),
        ("router", "p.failures", [0]),
        ("router", "p.parked", [0]),
        ("ingest", "", []),
    ]
    assert [(c.text, c.status) for c in rows[0].cells] == [
        ("0", "ok"), ("-", "no_commits"), ("7", "growing")]  # fmt: skip
    assert rows[0].cells[2].title == (
        "p.work [2]: growing; 7 records behind (committed 100, end 107); "
        "oldest unconsumed 3.2 s old"
    )
    assert view.alerting(groups) == [("stalled", 1), ("growing", 1)]
    assert view.alerting(groups[2:]) == []


def test_the_lag_fragment_shows_status_age_errors_and_missing_topics() -> None:
    assert "No lag sample yet" in view.lag(None, NOW)
    report = LagReport(sampled_at=NOW - 4, interval_s=5, window_s=120, error="broker <down>",
                       groups=(group("enrich", part("p.work", 0, 9, Status.STALLED)),
                               group("router", missing=("p.parked",))))  # fmt: skip
    html = view.lag(report, NOW)
    assert 'data-status="stalled"' in html and ">9</span>" in html
    assert '<span class="badge st-stalled">1 stalled</span>' in html
    assert "sampled 4 s ago" in html and "last 2 min" in html
    assert "broker &lt;down&gt;" in html
    assert "p.router: missing topics p.parked" in html
    ok = report.model_copy(update={"error": None, "groups": report.groups[1:]})
    assert "all ok" in view.lag(ok, NOW)


# -- blocked keys ---------------------------------------------------------------
def blocked_key(key: str | None, key_b64: str) -> Blocked:
    return Blocked(key=key, key_b64=key_b64, partition=1, src_topic="src", src_partition=0,
                   src_offset=4, since=datetime(2024, 5, 1, 11, 0, tzinfo=UTC), age_s=3600.0,
                   error_kind="timeout", error_class="Hang", error_message=EVIL,
                   waiting=3)  # fmt: skip


def test_a_blocked_key_with_html_in_it_is_text_and_released_by_its_bytes() -> None:
    doc = BlockedKeys(blocked=[blocked_key(EVIL, "PGltZz4="), blocked_key(None, "//4tYmlu")])
    html = view.blocked(doc, OPERATOR)
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert '<b class="key">//4tYmlu</b> <small>(base64)</small>' in html
    # the release names the key by its bytes and the dead record, as GET /v1/blocked lists it
    assert (
        'hx-vals=\'{"key_b64": "PGltZz4=", "src_offset": 4, '
        '"src_partition": 0, "src_topic": "src"}\''
    ) in html
    assert html.count('hx-post="/v1/blocked/release"') == 2
    assert 'hx-confirm="Release &lt;img' in html and "the 3 records behind it" in html
    assert "60 min" in html and "disabled" not in html
    assert view.blocked(doc, VIEWER).count(" disabled") == 2
    assert "No key is held" in view.blocked(BlockedKeys(blocked=[]), OPERATOR)


# -- audit and helpers ----------------------------------------------------------
def test_audit_entries_are_listed_with_their_details_escaped() -> None:
    record = m.AuditRecord(id="req-1", time=datetime(2024, 5, 1, 11, 0, tzinfo=UTC),
                           who="operator", action="provider.pause", target=EVIL,
                           params={"reason": EVIL}, result={"changed": False})  # fmt: skip
    html = view.audit(m.AuditRecords(records=[record]), NOW)
    assert "<img" not in html and html.count("&lt;img") == 2
    assert "provider.pause" in html and "req-1" in html and "60 min ago" in html
    assert "(no change)" in html
    assert "No audit entries yet" in view.audit(m.AuditRecords(records=[]), NOW)


def test_ages_and_times_read_well() -> None:
    assert [view.ago(s) for s in (-1, 0, 59.9, 119, 120, 7199, 7200, 172_800)] == [
        "0 s", "0 s", "59 s", "119 s", "2 min", "119 min", "2 h", "2 d"]  # fmt: skip
    assert view.utc(None) == "-"
    assert view.segment("a/b c") == "a%2Fb%20c"


# -- the DLQ view -------------------------------------------------------------
def dry_run(**over: object) -> dm.DryRun:
    doc: dict[str, object] = dict(
        dlq="error", topic="p.dlq.error", task="sentiment", provider="primary", model="m-1",
        provider_available=True, scanned=10, complete=True, matched=3, by_kind={"timeout": 3},
        by_class={}, replay_cap=3, refused_by_cap=1, selected=2, unrenderable=0, cache_hits=1,
        repeats=0, paid_calls=1, input_tokens=120, output_tokens=512,
        money=dm.Money(amount=0.0123, input=0.01, output=0.0023, note="estimate"),
        drain=dm.Drain(seconds=150, limited_by="rpm"),
    )  # fmt: skip
    return dm.DryRun.model_validate({**doc, **over})


def dead(key: str, message: str) -> dm.DlqRecord:
    return dm.DlqRecord(
        partition=0, offset=4, time=datetime(2024, 5, 1, tzinfo=UTC),
        key=dm.Preview(encoding="utf-8", value=key, bytes=len(key), truncated=False),
        value=dm.Preview(encoding="base64", value="AAE=", bytes=2, truncated=False),
        kind="bad_request", error_class="http_400", error_message=message, provider="primary",
        attempt=1, replay_count=2, source=dm.Source(topic="src", partition=0, offset=7),
        history=[{"attempt": 1, "kind": "bad_request", "message": message}],
        headers=[dm.Header(name="sluice.error.message", encoding="utf-8", value=message,
                           bytes=len(message), truncated=False)],
    )  # fmt: skip


def task(status: Status_, sent: int = 1) -> ReplayView:
    stamp = datetime(2024, 5, 1, tzinfo=UTC)
    return ReplayView(id="page-1", dlq="error", topic="p.dlq.error", filters=Filters(),
                      who="operator", created=stamp, updated=stamp, status=status, matched=2,
                      sent=sent)  # fmt: skip


def test_the_estimate_summary_names_every_figure_the_confirmation_shows() -> None:
    said = view.estimate_summary(dry_run())
    assert said == (
        "3 records matched in error; 1 refused by the replay cap (3); 2 to send: 1 cache hit, "
        "1 paid call to primary (m-1); about 120 input and at most 512 output tokens; "
        "about 0.0123 in money; drains in about 2 min (rpm)"
    )
    bare = view.estimate_summary(dry_run(money=None, drain=None, refused_by_cap=0,
                                         complete=False))  # fmt: skip
    assert "money" not in bare and "drains" not in bare and "refused" not in bare
    assert bare.endswith("counts of the first 10 records only (read budget)")


def test_the_replay_asked_for_is_the_dry_runs_dlq_and_filters_without_defaults() -> None:
    filters = Filters.model_validate({"kind": ["timeout"], "key": "cust-a"})
    assert view.replay_request(dry_run(), filters) == {
        "dlq": "error", "kind": ["timeout"], "key": "cust-a"}  # fmt: skip
    assert view.replay_request(dry_run(), Filters()) == {"dlq": "error"}


def test_dlq_records_and_their_detail_are_text() -> None:
    page = dm.DlqPage(dlq="error", topic="p.dlq.error", records=[dead(EVIL, EVIL)],
                      next_cursor=None, scanned=1)  # fmt: skip
    html = view.dlq_records(page)
    assert "<img" not in html and "&lt;img" in html
    assert 'class="dlq-detail" hidden' in html
    assert "AAE= (base64)" in html and "src[0]@7" in html
    assert '<td class="replay-count">2</td>' in html


def test_the_estimate_offers_replay_to_the_operator_only() -> None:
    filters = Filters.model_validate({"key": EVIL})
    html = view.dlq_estimate(dry_run(), filters, OPERATOR)
    button = re.search(r'<button type="button" class="replay"[^>]*>', html)
    assert button and "disabled" not in button.group(0)
    assert "<img" not in html
    viewer = re.search(r'<button type="button" class="replay"[^>]*>',
                       view.dlq_estimate(dry_run(), filters, VIEWER))  # fmt: skip
    assert viewer and "disabled" in viewer.group(0)
    nothing = view.dlq_estimate(dry_run(selected=0), filters, OPERATOR)
    assert 'disabled title="nothing to send"' in nothing


def test_a_replays_progress_polls_while_it_runs_and_offers_cancel_then_stops() -> None:
    running = view.replay_progress(task("running"), OPERATOR)
    assert f'hx-trigger="every {view.PROGRESS_S}s"' in running
    assert 'class="cancel"' in running and "1 / 2 sent" in running
    assert '<progress max="2" value="1">' in running
    assert "disabled" in view.replay_progress(task("running"), VIEWER)
    done = view.replay_progress(task("completed", sent=2), OPERATOR)
    assert 'hx-trigger="none"' in done and 'class="cancel"' not in done
    assert 'data-status="completed"' in done


def test_the_shell_has_the_dlq_filters() -> None:
    html = view.shell(insecure_dev=False)
    assert 'hx-get="/page/dlq"' in html and 'id="dlq-filter"' in html
    assert '<option value="parked">' in html and '<option value="bad_request">' in html
