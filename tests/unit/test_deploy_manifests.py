"""compose.yaml and the Helm chart run every service, with commands sluice knows.

The admin's tokens come only from secrets mounted as files (never a value in
these files, a ConfigMap or the chart's values), and in a container it
listens on 0.0.0.0 on purpose (loopback is its default). ``helm template``
checks run when ``scripts/helm.sh`` (part of ``make setup``) could install helm.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.admin.app import is_loopback
from services.cli import COMMANDS
from tests.support.tools import tool_path

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "sluice"
PIPELINE_SERVICES = {"ingest", "enrich", "router", "sequencer"}


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return doc


def test_compose_runs_every_service_with_a_known_command() -> None:
    services = compose()["services"]
    assert PIPELINE_SERVICES | {"admin", "fakellm", "kafka", "redis"} <= set(services)
    for name in PIPELINE_SERVICES | {"admin", "fakellm"}:
        svc = services[name]
        assert svc["command"][0] in COMMANDS, name
        assert svc["environment"]["SLUICE_KAFKA_BOOTSTRAP"] == "kafka:9092", name
    seq = services["sequencer"]["environment"]
    assert seq["SLUICE_WORKER_ID"] == seq["SLUICE_KAFKA_PROP_GROUP_INSTANCE_ID"]


def test_chart_services_are_known_commands_and_the_sequencer_is_stateful() -> None:
    """Each key of ``services`` is a component and its command (``sluice <name>``)."""
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values["services"]) == PIPELINE_SERVICES | {"admin", "fakellm"}
    assert set(values["services"]) <= set(COMMANDS)
    template = (CHART / "templates" / "stages.yaml").read_text()
    assert 'ternary "StatefulSet" "Deployment" $stateful' in template
    assert 'has $name (list "router" "sequencer")' in template and "SLUICE_WORKER_ID" in template


def helm_path() -> str:
    return tool_path("helm")


@pytest.fixture(scope="module")
def helm() -> str:
    return helm_path()


def helm_template(helm: str, *sets: str) -> subprocess.CompletedProcess[str]:
    args = [helm, "template", "t", str(CHART)]
    for s in sets:
        args += ["--set", s]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def render(helm: str, *sets: str) -> list[dict[str, Any]]:
    done = helm_template(helm, *sets)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def component(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind
             and d["metadata"]["labels"].get("app.kubernetes.io/component") == name]  # fmt: skip
    return doc


def test_chart_renders(helm: str) -> None:
    docs = render(helm, "admin.existingSecret=sluice-admin")
    kinds = {(d["kind"], d["metadata"]["labels"].get("app.kubernetes.io/component")) for d in docs}
    assert {("Deployment", "ingest"), ("Deployment", "enrich"), ("StatefulSet", "router"),
            ("StatefulSet", "sequencer"), ("Deployment", "admin"),
            ("Service", "admin")} <= kinds  # fmt: skip


def test_containers_expose_metrics_and_fakellm_explicitly() -> None:
    """Loopback is the default everywhere; in containers the host is set to 0.0.0.0 on purpose."""
    services = compose()["services"]
    for name in PIPELINE_SERVICES:
        assert services[name]["environment"]["SLUICE_METRICS_HOST"] == "0.0.0.0", name
    assert services["admin"]["environment"]["SLUICE_ADMIN_HOST"] == "0.0.0.0"
    command = services["fakellm"]["command"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["metrics"]["host"] == "0.0.0.0"
    configmap = (CHART / "templates" / "configmap.yaml").read_text()
    assert "SLUICE_METRICS_HOST: {{ .Values.metrics.host | quote }}" in configmap


TOKEN_VARS = {"SLUICE_ADMIN_TOKEN", "SLUICE_ADMIN_VIEWER_TOKEN"}
"""Variables that would carry a token's value: only their ``*_FILE`` twins may be set."""


def compose_secret_paths(svc: dict[str, Any]) -> dict[str, str]:
    """Where each secret a compose service is granted is mounted: path -> secret name."""
    paths = {}
    for entry in svc.get("secrets", []):
        source = entry if isinstance(entry, str) else entry["source"]
        target = source if isinstance(entry, str) else entry.get("target", source)
        paths[target if target.startswith("/") else f"/run/secrets/{target}"] = source
    return paths


def test_compose_admin_reads_its_token_from_a_secret_file_only() -> None:
    doc = compose()
    for name, svc in doc["services"].items():
        assert not TOKEN_VARS & set(svc.get("environment") or {}), f"{name}: a token in compose"
    admin = doc["services"]["admin"]
    example = (ROOT / "deploy" / "sluice.env.example").read_text()  # the env_file's template
    assert not re.search(r"^#?\s*\w*TOKEN\w*=", example, re.M), "tokens only as secret files"
    env, mounted = admin["environment"], compose_secret_paths(admin)
    files = {k: v for k, v in env.items() if k.endswith("_FILE") and "TOKEN" in k}
    assert "SLUICE_ADMIN_TOKEN_FILE" in files
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    for var, path in files.items():
        assert path in mounted, f"{var}={path} is not a mounted secret"
        source = doc["secrets"][mounted[path]]
        assert set(source) == {"file"}, f"secret {mounted[path]}: from a file only"
        assert source["file"].removeprefix("./") in ignored, "git must ignore the token file"


def test_compose_admin_publishes_its_port_checks_health_and_waits_like_the_others() -> None:
    services = compose()["services"]
    admin = services["admin"]
    assert admin["command"] == ["admin"] and admin["image"] == services["ingest"]["image"]
    port = admin["environment"]["SLUICE_ADMIN_PORT"]
    assert port == "8700" and f"{port}:{port}" in admin["ports"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:", dockerfile, re.M), "the health check runs the image's python"
    check = admin["healthcheck"]["test"]
    assert check[:3] == ["CMD", "python", "-c"]
    compile(check[3], "healthcheck", "exec")
    assert f"http://127.0.0.1:{port}/healthz" in check[3]
    deps = admin["depends_on"]
    assert deps["topics"]["condition"] == "service_completed_successfully"
    assert deps["kafka"]["condition"] == deps["redis"]["condition"] == "service_healthy"


def test_chart_admin_token_comes_from_an_existing_secret_only() -> None:
    """Without helm: values name a Secret and keys, never a token; the template mounts it."""
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    admin = values["admin"]
    assert admin["enabled"] and admin["existingSecret"] == ""
    assert {k for k in admin if "token" in k.lower()} == {"tokenKey", "viewerTokenKey"}
    template = (CHART / "templates" / "admin.yaml").read_text()
    assert re.search(r"name: SLUICE_ADMIN_(VIEWER_)?TOKEN\s*$", template, re.M) is None
    assert "name: SLUICE_ADMIN_TOKEN_FILE" in template and "secretName: {{ $secret }}" in template
    assert 'required "admin.existingSecret' in template
    assert 'name: SLUICE_ADMIN_HOST\n              value: "0.0.0.0"' in template
    assert "TOKEN" not in (CHART / "templates" / "configmap.yaml").read_text()


SECRET_SETS = ("admin.existingSecret=sa", "admin.tokenKey=op-key")


def pod(docs: list[dict[str, Any]], name: str = "admin") -> tuple[dict[str, Any], dict[str, Any]]:
    """A Deployment's pod spec and its one container."""
    spec: dict[str, Any] = component(docs, "Deployment", name)["spec"]["template"]["spec"]
    [container] = spec["containers"]
    return spec, container


def secret_file(spec: dict[str, Any], container: dict[str, Any], path: str) -> tuple[str, str]:
    """The (Secret, key) a file of the container comes from; fails if it is not a Secret's."""
    mount, base = path.rsplit("/", 1)
    [volume_name] = [m["name"] for m in container["volumeMounts"] if m["mountPath"] == mount]
    [volume] = [v for v in spec["volumes"] if v["name"] == volume_name]
    assert "secret" in volume, f"{path} is not in a Secret's volume"
    [key] = [i["key"] for i in volume["secret"]["items"] if i["path"] == base]
    return volume["secret"]["secretName"], key


def test_rendered_admin_reads_its_tokens_from_the_secret_as_files(helm: str) -> None:
    docs = render(helm, *SECRET_SETS, "admin.viewerTokenKey=view-key")
    spec, admin = pod(docs)
    assert component(docs, "Deployment", "admin")["spec"]["replicas"] == 1
    assert admin["args"] == ["admin"]
    env = {e["name"]: e for e in admin["env"]}
    assert not TOKEN_VARS & set(env)
    assert not any(
        "secretKeyRef" in e.get("valueFrom", {}) and "ADMIN" in n for n, e in env.items()
    )
    assert secret_file(spec, admin, env["SLUICE_ADMIN_TOKEN_FILE"]["value"]) == ("sa", "op-key")
    assert secret_file(spec, admin, env["SLUICE_ADMIN_VIEWER_TOKEN_FILE"]["value"]) == (
        "sa",
        "view-key",
    )
    [configmap] = [d for d in docs if d["kind"] == "ConfigMap"]
    assert not [k for k in configmap["data"] if "TOKEN" in k]
    _, plain = pod(render(helm, *SECRET_SETS))
    assert "SLUICE_ADMIN_VIEWER_TOKEN_FILE" not in {e["name"] for e in plain["env"]}


def test_rendered_admin_listens_on_the_pod_ip_with_probes_and_a_service(helm: str) -> None:
    docs = render(helm, *SECRET_SETS)
    _, admin = pod(docs)
    env = {e["name"]: e.get("value") for e in admin["env"]}
    assert env["SLUICE_ADMIN_HOST"] == "0.0.0.0" and not is_loopback(env["SLUICE_ADMIN_HOST"])
    ports = {p["name"]: p["containerPort"] for p in admin["ports"]}
    assert str(ports["http"]) == env["SLUICE_ADMIN_PORT"] == "8700"
    assert admin["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert admin["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    service = component(docs, "Service", "admin")["spec"]
    [sp] = service["ports"]
    assert sp["port"] == 8700 and sp["targetPort"] == "http"
    labels = component(docs, "Deployment", "admin")["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    annotations = component(docs, "Deployment", "admin")["spec"]["template"]["metadata"]
    assert annotations["annotations"]["prometheus.io/port"] == "8700", "/metrics is on the API port"


def test_rendered_admin_gets_the_config_and_env_of_the_other_services(helm: str) -> None:
    docs = render(helm, *SECRET_SETS, "kafka.existingSecret=kafka-creds",
                  "redis.existingSecret=redis-creds", "config=tasks")  # fmt: skip
    (admin_spec, admin), (ingest_spec, ingest) = pod(docs), pod(docs, "ingest")
    assert admin["envFrom"] == ingest["envFrom"] and len(admin["envFrom"]) == 2
    [redis_env] = [e for e in ingest["env"] if e["name"] == "SLUICE_REDIS_URL"]
    assert redis_env in admin["env"] and "secretKeyRef" in redis_env["valueFrom"]
    assert ingest["volumeMounts"][0] in admin["volumeMounts"]
    assert ingest_spec["volumes"][0] in admin_spec["volumes"]


def test_chart_refuses_admin_without_a_secret_and_can_leave_it_out(helm: str) -> None:
    refused = helm_template(helm)
    assert refused.returncode != 0 and "admin.existingSecret" in refused.stderr
    docs = render(helm, "admin.enabled=false")
    assert not [
        d for d in docs if d["metadata"]["labels"].get("app.kubernetes.io/component") == "admin"
    ]
