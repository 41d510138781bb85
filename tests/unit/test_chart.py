"""The Helm chart: lint, render, Kubernetes schemas, values schema, what the parts do.

Rendered with the helm that ``scripts/helm.sh`` installs (skips, saying why, without
it) for two value sets: the defaults (plus the one value they require,
``admin.existingSecret``) and ``ci/full-values.yaml``, where every optional part is on.
Each manifest of a built-in kind is validated offline against the Kubernetes JSON
schemas that the PyPI package ``kubernetes-validate`` ships, strictly (an unknown
field fails), for the oldest and the newest Kubernetes the chart is checked on.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from shared.settings import _kafka_props_from_env
from tests.unit.test_deploy_manifests import CHART, helm_path, secret_file

FULL_VALUES = CHART / "ci" / "full-values.yaml"
REQUIRED = ("admin.existingSecret=sluice-admin",)
"""The one value the defaults lack: the chart refuses to render the admin without it."""

K8S_VERSIONS = ("1.25.0", "1.37.0")
CRD_KINDS = {"ScaledObject", "ServiceMonitor", "PrometheusRule"}
"""Custom resources (KEDA, prometheus-operator): kubernetes-validate has no schema for them
and none can be fetched here, so they are skipped by kind in the schema check and their
content is checked by the tests below instead."""

STABLE_SELECTOR_KEYS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
}
RULES_FILE, DASHBOARD_FILE = "files/prometheus-rules.yaml", "files/grafana-dashboard.json"


@pytest.fixture(scope="module")
def helm() -> str:
    return helm_path()


@pytest.fixture(scope="module")
def chart() -> Path:
    """The chart, with the alert rules and the dashboard it carries."""
    assert (CHART / RULES_FILE).is_file() and (CHART / DASHBOARD_FILE).is_file()
    return CHART


def run_helm(helm: str, command: str, chart: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [helm, command, *(["t"] if command == "template" else []), str(chart), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def sets(*values: str) -> list[str]:
    return [a for v in values for a in ("--set", v)]


def render(helm: str, chart: Path, *args: str) -> list[dict[str, Any]]:
    done = run_helm(helm, "template", chart, *args)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module")
def default_docs(helm: str, chart: Path) -> list[dict[str, Any]]:
    return render(helm, chart, *sets(*REQUIRED))


@pytest.fixture(scope="module")
def full_docs(helm: str, chart: Path) -> list[dict[str, Any]]:
    return render(helm, chart, "-f", str(FULL_VALUES))


def one(docs: list[dict[str, Any]], kind: str, component: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind
             and component_of(d) == component]  # fmt: skip
    assert len(found) == 1, f"{len(found)} {kind} of {component}"
    return found[0]


def component_of(doc: dict[str, Any]) -> str:
    return str(doc["metadata"]["labels"]["app.kubernetes.io/component"])


def container(workload: dict[str, Any]) -> dict[str, Any]:
    [c] = workload["spec"]["template"]["spec"]["containers"]
    return c  # type: ignore[no-any-return]


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


# --- lint, render, Kubernetes schemas ---------------------------------------------------


def test_helm_lint_passes_for_default_and_full_values(helm: str, chart: Path) -> None:
    for args in (sets(*REQUIRED), ["-f", str(FULL_VALUES)]):
        done = run_helm(helm, "lint", chart, "--strict", *args)
        assert done.returncode == 0, done.stdout + done.stderr


def test_full_values_turn_every_optional_part_on() -> None:
    """Every ``enabled`` switch of values.yaml is true in ci/full-values.yaml."""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    full = yaml.safe_load(FULL_VALUES.read_text())

    def switches(node: Any, path: str = "") -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "enabled":
                    yield path
                yield from switches(value, f"{path}.{key}".lstrip("."))

    def enabled(path: str) -> bool:
        default, override = defaults, full
        for key in path.split(".") if path else []:
            default, override = default[key], (override or {}).get(key)
        return bool((override or {}).get("enabled", default["enabled"]))

    found = list(switches(defaults))
    # services.enrich.autoscaling stays off: keda scales enrich, and both at once is refused.
    off = [p for p in found if not enabled(p)]
    assert len(found) >= 14 and off == ["services.enrich.autoscaling"], off


def validate_all(docs: list[dict[str, Any]]) -> set[str]:
    """Validate every built-in manifest; the kinds validated."""
    kinds = set()
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
        kinds.add(doc["kind"])
    return kinds


def test_default_manifests_are_valid_kubernetes(default_docs: list[dict[str, Any]]) -> None:
    assert validate_all(default_docs) == {
        "ConfigMap", "Service", "Deployment", "StatefulSet", "PodDisruptionBudget",
    }  # fmt: skip


def test_full_manifests_are_valid_kubernetes(full_docs: list[dict[str, Any]]) -> None:
    assert validate_all(full_docs) == {
        "ConfigMap", "Service", "Deployment", "StatefulSet", "PodDisruptionBudget",
        "HorizontalPodAutoscaler", "Ingress",
    }  # fmt: skip
    assert {d["kind"] for d in full_docs} >= CRD_KINDS


def test_the_kubernetes_schema_check_rejects_a_bad_manifest(
    default_docs: list[dict[str, Any]],
) -> None:
    """The check can fail: a misplaced field and a wrong type are caught."""
    deployment = json.loads(json.dumps(one(default_docs, "Deployment", "enrich")))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)
    service = json.loads(json.dumps(one(default_docs, "Service", "admin")))
    service["spec"]["ports"][0]["port"] = "http"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, K8S_VERSIONS[0], strict=True)


# --- the values schema ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("servcies.enrich.replicas=3", "'servcies' not allowed"),
        ("admin.enabeld=false", "'enabeld' not allowed"),
        ("services.enrich.replica=3", "'replica' not allowed"),
        ("keda.prometheus.treshold=2", "'treshold' not allowed"),
        ("services.enrich.replicas=two", "/services/enrich/replicas"),
        ("admin.enabled=yes", "/admin/enabled"),
        ("metrics.port=70000", "/metrics/port"),
        ("services.sequencer.deadMode=drop", "/services/sequencer/deadMode"),
    ],
)
def test_values_schema_rejects_misspelled_keys_and_wrong_types(
    helm: str, chart: Path, value: str, says: str
) -> None:
    for command in ("template", "lint"):
        done = run_helm(helm, command, chart, *sets(*REQUIRED, value))
        assert done.returncode != 0, f"helm {command} accepted {value}"
        assert says in done.stdout + done.stderr, done.stdout + done.stderr


def test_values_schema_closes_every_object_it_describes() -> None:
    """``additionalProperties: false`` wherever the schema lists properties."""
    schema = json.loads((CHART / "values.schema.json").read_text())

    def open_objects(node: Any, path: str) -> Iterator[str]:
        """Paths of schemas that list properties but let others through."""
        if not isinstance(node, dict):
            return
        if "properties" in node and node.get("additionalProperties") is not False:
            yield path or "/"
        for group in ("properties", "$defs"):
            for name, sub in node.get(group, {}).items():
                yield from open_objects(sub, f"{path}/{name}")
        for key in ("additionalProperties", "items"):
            yield from open_objects(node.get(key), f"{path}/{key}")

    assert list(open_objects(schema, "")) == []


# --- labels and selectors ---------------------------------------------------------------


def selectors(doc: dict[str, Any]) -> Iterator[dict[str, str]]:
    spec = doc.get("spec", {})
    if doc["kind"] == "Service" and "selector" in spec:
        yield spec["selector"]
    elif "matchLabels" in spec.get("selector", {}):
        yield spec["selector"]["matchLabels"]


def test_selectors_hold_only_stable_labels_and_each_picks_its_own_pods(
    full_docs: list[dict[str, Any]],
) -> None:
    workloads = [d for d in full_docs if d["kind"] in {"Deployment", "StatefulSet"}]
    pod_labels = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
                  for d in workloads}  # fmt: skip
    for doc in full_docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm", doc["metadata"]["name"]
        assert {"app.kubernetes.io/component", "app.kubernetes.io/version", "helm.sh/chart"} <= set(
            labels
        )
        for selector in selectors(doc):
            assert set(selector) <= STABLE_SELECTOR_KEYS, (doc["kind"], selector)
    for workload in workloads:
        [selector] = selectors(workload)
        assert set(selector) == STABLE_SELECTOR_KEYS
        picked = [n for n, labels in pod_labels.items() if selector.items() <= labels.items()]
        assert picked == [workload["metadata"]["name"]]


# --- the workloads ----------------------------------------------------------------------


def test_one_workload_per_service_and_the_sequencer_keeps_its_pod_name_as_id(
    default_docs: list[dict[str, Any]], full_docs: list[dict[str, Any]]
) -> None:
    kinds = {(d["kind"], component_of(d))
             for d in default_docs if d["kind"] in {"Deployment", "StatefulSet"}}  # fmt: skip
    assert kinds == {("Deployment", "ingest"), ("Deployment", "enrich"), ("StatefulSet", "router"),
                     ("StatefulSet", "sequencer"), ("Deployment", "admin")}  # fmt: skip
    assert ("Deployment", "fakellm") not in kinds
    for docs in (default_docs, full_docs):
        for d in docs:
            if d["kind"] in {"Deployment", "StatefulSet"}:
                component = component_of(d)
                assert container(d)["args"][0] == component
    sequencer = one(full_docs, "StatefulSet", "sequencer")
    assert sequencer["spec"]["replicas"] == 3
    env = env_of(container(sequencer))
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["SLUICE_WORKER_ID"]["value"] == "$(POD_NAME)"
    assert env["SLUICE_KAFKA_PROP_GROUP_INSTANCE_ID"]["value"] == "$(POD_NAME)"
    assert env["SLUICE_DEAD_MODE"]["value"] == "block"
    order = [e["name"] for e in container(sequencer)["env"]]
    assert order.index("POD_NAME") < order.index("SLUICE_WORKER_ID"), "$(POD_NAME) comes first"
    governing = [d for d in full_docs if d["kind"] == "Service"
                 and d["metadata"]["name"] == sequencer["spec"]["serviceName"]]  # fmt: skip
    assert governing and governing[0]["spec"]["clusterIP"] == "None"
    # the router too: its transactional id is its worker id, which must survive a restart
    router = one(full_docs, "StatefulSet", "router")
    env = env_of(container(router))
    assert env["SLUICE_WORKER_ID"]["value"] == "$(POD_NAME)" and "SLUICE_DEAD_MODE" not in env
    assert [d for d in full_docs if d["kind"] == "Service"
            and d["metadata"]["name"] == router["spec"]["serviceName"]]  # fmt: skip


def test_probes_use_the_endpoints_each_service_serves(full_docs: list[dict[str, Any]]) -> None:
    """Stages serve only /metrics; the admin /healthz and /readyz; fakellm /healthz."""
    expected = {"ingest": ("/metrics", "/metrics", "metrics"),
                "enrich": ("/metrics", "/metrics", "metrics"),
                "router": ("/metrics", "/metrics", "metrics"),
                "sequencer": ("/metrics", "/metrics", "metrics"),
                "admin": ("/healthz", "/readyz", "http"),
                "fakellm": ("/healthz", "/healthz", "http")}  # fmt: skip
    for d in full_docs:
        if d["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        c = container(d)
        live, ready = c["livenessProbe"]["httpGet"], c["readinessProbe"]["httpGet"]
        path_live, path_ready, port = expected[component_of(d)]
        assert (live["path"], ready["path"], live["port"], ready["port"]) == (
            path_live, path_ready, port, port)  # fmt: skip
        assert port in {p["name"] for p in c["ports"]}
        assert c["resources"]["requests"] and c["resources"]["limits"]


def test_kafka_sasl_and_tls_map_to_librdkafka_properties(full_docs: list[dict[str, Any]]) -> None:
    ingest = one(full_docs, "Deployment", "ingest")
    env = env_of(container(ingest))
    configmap = one(full_docs, "ConfigMap", "config")
    names = {**configmap["data"], **env}
    props = _kafka_props_from_env({k: "x" for k in names})
    assert {"security.protocol", "sasl.mechanism", "sasl.username", "sasl.password",
            "ssl.ca.location", "ssl.certificate.location", "ssl.key.location"} <= set(props)  # fmt: skip
    assert configmap["data"]["SLUICE_KAFKA_PROP_SECURITY_PROTOCOL"] == "SASL_SSL"
    for var, key in (("SLUICE_KAFKA_PROP_SASL_USERNAME", "username"),
                     ("SLUICE_KAFKA_PROP_SASL_PASSWORD", "password")):  # fmt: skip
        assert env[var]["valueFrom"]["secretKeyRef"] == {"name": "sluice-kafka", "key": key}
    spec = ingest["spec"]["template"]["spec"]
    tls = "my-cluster-cluster-ca-cert"
    for var, key in (("SLUICE_KAFKA_PROP_SSL_CA_LOCATION", "ca.crt"),
                     ("SLUICE_KAFKA_PROP_SSL_CERTIFICATE_LOCATION", "user.crt"),
                     ("SLUICE_KAFKA_PROP_SSL_KEY_LOCATION", "user.key")):  # fmt: skip
        assert secret_file(spec, container(ingest), env[var]["value"]) == (tls, key)


def test_provider_keys_reach_enrich_only_from_their_secret(full_docs: list[dict[str, Any]]) -> None:
    for d in full_docs:
        if d["kind"] in {"Deployment", "StatefulSet"}:
            env = env_of(container(d))
            component = component_of(d)
            assert ("OPENAI_API_KEY" in env) == (component == "enrich"), component
    key = env_of(container(one(full_docs, "Deployment", "enrich")))["OPENAI_API_KEY"]
    assert key == {"name": "OPENAI_API_KEY", "valueFrom": {
        "secretKeyRef": {"name": "sluice-providers", "key": "openai-api-key"}}}  # fmt: skip


def test_fakellm_when_enabled_is_what_enrich_calls(full_docs: list[dict[str, Any]]) -> None:
    service = one(full_docs, "Service", "fakellm")
    configmap = one(full_docs, "ConfigMap", "config")
    [port] = service["spec"]["ports"]
    url = f"http://{service['metadata']['name']}:{port['port']}/v1"
    assert configmap["data"]["SLUICE_FAKELLM_URL"] == url
    args = container(one(full_docs, "Deployment", "fakellm"))["args"]
    assert args[args.index("--host") + 1] == "0.0.0.0"


def test_disruption_budgets_and_autoscalers_target_rendered_workloads(
    full_docs: list[dict[str, Any]],
) -> None:
    names = {
        d["metadata"]["name"]: d for d in full_docs if d["kind"] in {"Deployment", "StatefulSet"}
    }
    budgets = {component_of(d): d
               for d in full_docs if d["kind"] == "PodDisruptionBudget"}  # fmt: skip
    assert set(budgets) == {"ingest", "enrich", "router", "sequencer"}
    for component, budget in budgets.items():
        workload = [w for w in names.values()
                    if component_of(w) == component]  # fmt: skip
        assert budget["spec"]["selector"] == workload[0]["spec"]["selector"]
    scaled = {d["spec"]["scaleTargetRef"]["name"] for d in full_docs
              if d["kind"] in {"HorizontalPodAutoscaler", "ScaledObject"}}  # fmt: skip
    assert scaled <= set(names) and len(scaled) == 3
    for name in scaled:
        assert "replicas" not in names[name]["spec"], f"{name}: the autoscaler owns replicas"


def test_admin_ingress_routes_to_the_admin_service(full_docs: list[dict[str, Any]]) -> None:
    ingress = one(full_docs, "Ingress", "admin")["spec"]
    [rule] = ingress["rules"]
    [path] = rule["http"]["paths"]
    service = one(full_docs, "Service", "admin")
    assert path["backend"]["service"] == {
        "name": service["metadata"]["name"],
        "port": {"name": "http"},
    }
    assert ingress["tls"] == [{"hosts": [rule["host"]], "secretName": "sluice-admin-tls"}]


# --- KEDA, prometheus-operator, Grafana -------------------------------------------------


def test_keda_scales_enrich_on_the_useful_workers_gauge(full_docs: list[dict[str, Any]]) -> None:
    scaled = one(full_docs, "ScaledObject", "enrich")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert (
        spec["scaleTargetRef"]["name"] == one(full_docs, "Deployment", "enrich")["metadata"]["name"]
    )
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 20)
    [trigger] = spec["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    assert trigger["metadata"] == {
        "serverAddress": "http://prometheus-operated.monitoring:9090",
        "query": 'max(sluice_enrich_useful_workers{pipeline="sluice"})',
        "threshold": "1",
    }
    assert not [d for d in full_docs if d["kind"] == "HorizontalPodAutoscaler"
                and d["spec"]["scaleTargetRef"]["name"] == spec["scaleTargetRef"]["name"]]  # fmt: skip


def test_keda_and_an_hpa_on_enrich_at_once_are_refused(helm: str, chart: Path) -> None:
    done = run_helm(helm, "template", chart, "-f", str(FULL_VALUES),
                    *sets("services.enrich.autoscaling.enabled=true"))  # fmt: skip
    assert done.returncode != 0 and "choose one" in done.stderr
    done = run_helm(helm, "template", chart, *sets(*REQUIRED, "keda.enabled=true"))
    assert done.returncode != 0 and "keda.prometheus.serverAddress" in done.stderr


def test_service_monitor_scrapes_every_service_that_serves_metrics(
    full_docs: list[dict[str, Any]],
) -> None:
    monitor = one(full_docs, "ServiceMonitor", "metrics")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    spec = monitor["spec"]
    [expr] = spec["selector"]["matchExpressions"]
    picked = [d for d in full_docs if d["kind"] == "Service"
              and spec["selector"]["matchLabels"].items() <= d["metadata"]["labels"].items()
              and d["metadata"]["labels"][expr["key"]] in expr["values"]]  # fmt: skip
    ports = {p["name"] for s in picked for p in s["spec"]["ports"]}
    assert {e["port"] for e in spec["endpoints"]} == ports == {"metrics", "http"}
    assert {component_of(s) for s in picked} == {
        "metrics", "admin", "fakellm"}  # fmt: skip
    # The stages' metrics Service reaches every stage's pods on their metrics port.
    metrics = one(full_docs, "Service", "metrics")["spec"]
    for d in full_docs:
        if d["kind"] in {"Deployment", "StatefulSet"} and "metrics" in {
            p["name"] for p in container(d)["ports"]}:  # fmt: skip
            assert (
                metrics["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
            )


def test_prometheus_rule_and_dashboard_carry_the_chart_files(
    chart: Path, full_docs: list[dict[str, Any]]
) -> None:
    rule = one(full_docs, "PrometheusRule", "alerts")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == yaml.safe_load((chart / RULES_FILE).read_text())
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    dashboards = one(full_docs, "ConfigMap", "dashboards")
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    [(name, text)] = dashboards["data"].items()
    assert name.endswith(".json")
    assert json.loads(text) == json.loads((chart / DASHBOARD_FILE).read_text())
