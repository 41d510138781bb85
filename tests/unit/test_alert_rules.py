"""The alert rules and the dashboard: promtool checks and unit-tests the rules, each alert
has its labels, annotations and a runbook section, the dashboard is valid JSON with a
datasource variable, and metric names are read out of PromQL the way the cross-check
(tests/integration/test_metric_names.py) needs.

``promtool`` comes from ``scripts/promtool.sh`` (part of ``make setup``), which builds it
with Go into ``~/.cache/sluice/promtool``; without it the promtool tests skip, saying so.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.promnames import dashboard_exprs, exported_names, metric_names, rule_exprs
from tests.support.tools import tool_path

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "helm" / "sluice" / "files" / "prometheus-rules.yaml"
DASHBOARD = ROOT / "deploy" / "helm" / "sluice" / "files" / "grafana-dashboard.json"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tests"
GUIDE = ROOT / "docs" / "operations.md"


def promtool_path() -> str:
    return tool_path("promtool")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool_path(), *args], capture_output=True, text=True, timeout=120,
                          check=False, cwd=ROOT)  # fmt: skip


def rules() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return doc


def alerts() -> list[dict[str, Any]]:
    return [r for g in rules()["groups"] for r in g["rules"] if "alert" in r]


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub makes of a Markdown file's headings."""
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, re.MULTILINE):
        text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
        out.add(re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", text)))
    return out


# -- promtool ---------------------------------------------------------------------------


def test_promtool_checks_the_rules_file() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in checked.stdout


def test_promtool_unit_tests_fire_and_hold_back_lag_dlq_and_pause_alerts() -> None:
    files = sorted(RULE_TESTS.glob("*.yaml"))
    assert {f.stem for f in files} >= {"lag", "dlq", "paused"}
    tested = promtool("test", "rules", *map(str, files))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    covered = {t["alertname"] for f in files for case in yaml.safe_load(f.read_text())["tests"]
               for t in case.get("alert_rule_test", [])}  # fmt: skip
    assert {"SluicePartitionStalled", "SluiceLagHigh", "SluiceDlqWrites",
            "SluiceProviderPausedTooLong"} <= covered  # fmt: skip


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    """The check can fail: a rule with a PromQL syntax error and no severity."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - alert: Broken\n"
                   "        expr: sum(rate(sluice_router_dlq_total[5m]) > 1\n")  # fmt: skip
    checked = promtool("check", "rules", str(bad))
    assert checked.returncode != 0 and "Broken" in checked.stdout + checked.stderr


# -- the rules' shape -------------------------------------------------------------------


def test_every_alert_has_severity_summary_description_and_a_runbook_section() -> None:
    anchors = github_anchors(GUIDE.read_text())
    for rule in alerts():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        notes = rule["annotations"]
        assert notes["summary"].strip() and notes["description"].strip(), name
        page, _, anchor = notes["runbook"].partition("#")
        assert page == "docs/operations.md", name
        assert anchor == name.lower() and anchor in anchors, f"{name}: no section #{anchor}"


def test_the_issue_s_alerts_are_all_there() -> None:
    names = {r["alert"] for r in alerts()}
    assert {
        "SluicePartitionStalled", "SluiceLagHigh", "SluiceDlqWrites", "SluiceProviderBreakerOpen",
        "SluiceProviderPausedTooLong", "SluiceProviderRateLimited", "SluiceParkedGrowing",
        "SluiceBlockedKeyOld", "SluiceSequencerPendingGrowing", "SluiceServiceDown",
    } <= names  # fmt: skip


# -- the dashboard ----------------------------------------------------------------------


def test_dashboard_is_json_with_a_datasource_variable_every_panel_uses() -> None:
    doc = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = [p for p in doc["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in doc["panels"]}) == len(doc["panels"])
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"] and all(t["expr"] for t in p["targets"]), p["title"]
    titles = " | ".join(p["title"].lower() for p in panels)
    for topic in ("by stage", "lag per partition", "latency", "tokens", "429", "cooldown",
                  "breaker and pause", "dlq", "parked", "blocked keys", "replays"):  # fmt: skip
        assert topic in titles, topic


# -- reading metric names (for the cross-check) -----------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (topic) (rate(sluice_router_dlq_total{kind!="x"}[10m])) * 60 > 1',
         {"sluice_router_dlq_total"}),
        ("time() - max by (provider) (sluice_provider_paused_since_seconds > 0) > 3600",
         {"sluice_provider_paused_since_seconds"}),
        ("sum(a) > sum(a offset 15m) and on (x) b unless bool c",
         {"a", "b", "c"}),
        ('histogram_quantile(0.99, sum by (le) (rate(h_bucket{p=~"$provider"}[$__rate_interval])))',
         {"h_bucket"}),
        ("max_over_time(deriv(g[5m])[30m:1m]) * 1e3", {"g"}),
        ('absent(up{job=~"sluice"}) or vector(0)', {"up"}),
    ],
)  # fmt: skip
def test_metric_names_of_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_every_rule_and_panel_names_some_metric() -> None:
    for where, expr in {**rule_exprs(rules()),
                        **dashboard_exprs(json.loads(DASHBOARD.read_text()))}.items():  # fmt: skip
        assert metric_names(expr), f"{where}: no metric in {expr!r}"


def test_exported_names_include_families_without_samples_by_type() -> None:
    text = (
        "# HELP a_total h\n# TYPE a_total counter\n"
        "# HELP b_seconds h\n# TYPE b_seconds histogram\n"
        '# HELP c h\n# TYPE c gauge\nc{x="1"} 2.0\n'
    )
    names = exported_names(text)
    assert {"a_total", "b_seconds_bucket", "b_seconds_count", "c"} <= names
    assert "a" not in names and "b_seconds" not in names
