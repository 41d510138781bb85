"""compose.yaml and the Helm chart run every service, with commands sluice knows."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "sluice"
PIPELINE_SERVICES = {"ingest", "enrich", "router", "sequencer"}


def test_compose_runs_every_service_with_a_known_command() -> None:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert PIPELINE_SERVICES | {"fakellm", "kafka", "redis"} <= set(services)
    for name in PIPELINE_SERVICES | {"fakellm"}:
        svc = services[name]
        assert svc["command"][0] in COMMANDS, name
        assert svc["environment"]["SLUICE_KAFKA_BOOTSTRAP"] == "kafka:9092", name
    seq = services["sequencer"]["environment"]
    assert seq["SLUICE_WORKER_ID"] == seq["SLUICE_KAFKA_PROP_GROUP_INSTANCE_ID"]


def test_chart_values_name_known_commands_and_the_sequencer_is_stateful() -> None:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    for name, svc in values["services"].items():
        assert svc["args"][0] in COMMANDS, name
    assert set(values["services"]) | {"sequencer"} == PIPELINE_SERVICES
    template = (CHART / "templates" / "sequencer.yaml").read_text()
    assert "kind: StatefulSet" in template and "SLUICE_WORKER_ID" in template


@pytest.mark.skipif(shutil.which("helm") is None, reason="helm is not installed")
def test_chart_renders() -> None:
    out = subprocess.run(["helm", "template", "t", str(CHART)], capture_output=True, text=True,
                         check=True, timeout=60).stdout  # fmt: skip
    docs = [d for d in yaml.safe_load_all(out) if d]
    kinds = {(d["kind"], d["metadata"]["labels"].get("app.kubernetes.io/component")) for d in docs}
    assert {("Deployment", "ingest"), ("Deployment", "enrich"), ("Deployment", "router"),
            ("StatefulSet", "sequencer")} <= kinds  # fmt: skip


def test_containers_expose_metrics_and_fakellm_explicitly() -> None:
    """Loopback is the default everywhere; in containers the host is set to 0.0.0.0 on purpose."""
    compose: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    for name in PIPELINE_SERVICES:
        assert services[name]["environment"]["SLUICE_METRICS_HOST"] == "0.0.0.0", name
    command = services["fakellm"]["command"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["metrics"]["host"] == "0.0.0.0"
    configmap = (CHART / "templates" / "configmap.yaml").read_text()
    assert "SLUICE_METRICS_HOST: {{ .Values.metrics.host | quote }}" in configmap
