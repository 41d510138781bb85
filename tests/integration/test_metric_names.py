"""Every metric the alert rules and the dashboard name is exported by a running service.

The pipeline runs as its own processes (:mod:`devtools.fleet`: fakellm, ingest, one
enrich worker, router, sequencer) with the admin service beside it, each with its own
``/metrics``; a few tickets (some of them poison) go through to ``P.output``, so the
labelled series exist. Each service's ``/metrics`` text is then read for the names it can
hold (a labelled family without a child yet still prints its ``# TYPE`` line), and every
metric named in ``deploy/helm/sluice/files/prometheus-rules.yaml`` and
``deploy/helm/sluice/files/grafana-dashboard.json`` must be among them.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from devtools.fleet.fleet import Fleet, FleetSpec
from devtools.runs.tickets import POISON, tickets
from devtools.stack.ports import free_port
from devtools.stack.resolve import Stack
from shared.kafka.provision import create_topics, ensure_topic
from shared.settings import CommonSettings, load
from shared.topics import Topics
from tests.support.kafka import produce, read_all, wait_for
from tests.support.promnames import dashboard_exprs, exported_names, metric_names, rule_exprs

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "helm" / "sluice" / "files" / "prometheus-rules.yaml"
DASHBOARD = ROOT / "deploy" / "helm" / "sluice" / "files" / "grafana-dashboard.json"

SYNTHETIC = {"up"}
"""Series Prometheus makes itself for every scrape target."""
RECORDS = 40
WAIT_S = 180.0


def used_names() -> dict[str, set[str]]:
    """``{metric: where it is named}`` over the rules file and the dashboard."""
    exprs = {
        **{f"rules {k}": v for k, v in rule_exprs(yaml.safe_load(RULES.read_text())).items()},
        **{f"dashboard {k}": v for k, v in dashboard_exprs(json.loads(DASHBOARD.read_text())).items()},
    }  # fmt: skip
    out: dict[str, set[str]] = {}
    for where, expr in exprs.items():
        for name in metric_names(expr):
            out.setdefault(name, set()).add(where)
    return out


def unexported(used: dict[str, set[str]], scraped: dict[str, set[str]]) -> dict[str, set[str]]:
    """The names of ``used`` that no service exports (Prometheus's own and the allowlist aside)."""
    exported = set().union(*scraped.values())
    return {n: w for n, w in used.items() if n not in exported | SYNTHETIC}


@pytest.fixture(scope="module")
def scraped(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, set[str]]]:
    """``{service: names its /metrics can hold}`` of a running pipeline and its admin."""
    pipeline = f"m{uuid.uuid4().hex[:10]}"
    source = f"{pipeline}.tickets"
    log_dir = tmp_path_factory.mktemp("metric-names")
    spec = FleetSpec(bootstrap=stack.bootstrap, redis_url=stack.redis_url, pipeline=pipeline,
                     source_topic=source, log_dir=log_dir, enrich_workers=1, max_in_flight=16,
                     llm_rps=100, latency="fixed:20")  # fmt: skip
    settings = load(CommonSettings, kafka_bootstrap=stack.bootstrap, pipeline=pipeline, partitions=2,
                    retry_rungs=spec.rungs)  # fmt: skip
    ensure_topic(settings, source, 2)
    create_topics(settings, source)
    fleet = Fleet(spec)
    admin_port = free_port()
    admin_env = {
        "SLUICE_KAFKA_BOOTSTRAP": stack.bootstrap, "SLUICE_REDIS_URL": stack.redis_url,
        "SLUICE_PIPELINE": pipeline, "SLUICE_SOURCE_TOPIC": source, "SLUICE_RETRY_RUNGS": spec.rungs,
        "SLUICE_CONFIG_FILE": str(log_dir / "sluice.yaml"), "SLUICE_ADMIN_TOKEN": secrets.token_hex(16),
        "SLUICE_ADMIN_LAG_INTERVAL_S": "0.5", "SLUICE_ADMIN_LAG_WINDOW_S": "3",
    }  # fmt: skip
    admin_metrics = f"http://127.0.0.1:{admin_port}/metrics"
    try:
        fleet.start()
        fleet.procs.spawn("admin", ["admin", "--port", str(admin_port)], admin_env)
        fleet.wait_ready(WAIT_S)
        data = tickets(RECORDS, keys=8, poison=0.1)
        produce(stack.bootstrap, source, [(k, v, None) for k, v in data])
        topics = Topics(pipeline)  # P.output's name does not depend on the rungs
        valid = sum(v not in POISON for _, v in data)  # poison ends in P.dlq.poison
        done = read_all(stack.bootstrap, topics.output, timeout_s=WAIT_S, idle_s=2, expect=valid)
        assert len(done) == valid, (
            f"{len(done)} of {valid} tickets reached {topics.output} in {WAIT_S:.0f}s; logs in {log_dir}"
        )

        def admin_sampled() -> bool:
            fleet.check()
            try:
                text = httpx.get(admin_metrics, timeout=5).text
            except httpx.HTTPError:
                return False
            return "\nsluice_lag_sampled_at_seconds " in text

        wait_for(admin_sampled, WAIT_S, 0.5, "the admin's first lag sample in its /metrics")
        texts = {name: fleet.metrics(name) for name in fleet.spec.names}
        texts["admin"] = httpx.get(admin_metrics, timeout=5).text
        yield {name.split("-")[0]: exported_names(text) for name, text in texts.items()}
    finally:
        fleet.stop()


def test_every_metric_of_the_rules_and_the_dashboard_is_exported(
    scraped: dict[str, set[str]],
) -> None:
    assert set(scraped) == {"ingest", "enrich", "router", "sequencer", "admin"}
    used = used_names()
    assert len(used) > 20, sorted(used)  # the extraction found the files' metrics
    missing = unexported(used, scraped)
    assert not missing, "named but exported by no service: " + "; ".join(
        f"{n} (in {', '.join(sorted(w))})" for n, w in sorted(missing.items())
    )


def test_a_made_up_metric_is_reported(scraped: dict[str, set[str]]) -> None:
    """The check can fail: an alert on a metric no service exports is named with its rule."""
    used = {"sluice_router_dlq_total": {"rules a"}, "sluice_made_up_total": {"rules b"}}
    assert unexported(used, scraped) == {"sluice_made_up_total": {"rules b"}}


def test_each_stage_absent_rule_watches_a_metric_only_that_stage_exports(
    scraped: dict[str, set[str]],
) -> None:
    """``absent(x)`` for a stage fires when no instance of it is scraped only if no other
    service exports ``x`` too."""
    absent = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
              if r.get("alert") == "SluiceStageAbsent"]  # fmt: skip
    assert {r["labels"]["stage"] for r in absent} == set(scraped)
    for rule in absent:
        (name,) = metric_names(rule["expr"])
        exporters = {service for service, names in scraped.items() if name in names}
        assert exporters == {rule["labels"]["stage"]}, (name, exporters)
