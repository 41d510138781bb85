"""compose.yaml: valid under the Compose specification, and every SLUICE_ name one sluice reads.

The schema is the Compose specification's own (``tests/data/compose-spec.json``, vendored: no
network here). The names sluice reads come from the code, not a list kept by hand: the fields
of every pydantic settings class in ``shared`` and ``services`` (``env_prefix`` + field name),
plus the ``SLUICE_*`` names the code reads directly (string constants such as
``"SLUICE_LOG_LEVEL"``; one ending in ``_`` is a prefix: ``SLUICE_KAFKA_PROP_``).
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import json
import pkgutil
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from pydantic_settings import BaseSettings

import services
import shared
from services.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
ENV_EXAMPLE = ROOT / "deploy" / "sluice.env.example"
NAME = re.compile(r"SLUICE_[A-Z0-9_]+")
SLUICE_IMAGES = {"sluice:dev", "sluice:demo"}


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return doc


def schema_errors(doc: dict[str, Any]) -> list[str]:
    """What the Compose specification's schema says is wrong with ``doc`` (pure)."""
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)  # the schema's $schema: draft-07
    return [f"{'/'.join(map(str, e.absolute_path)) or '.'}: {e.message}"
            for e in validator.iter_errors(doc)]  # fmt: skip


def settings_classes() -> list[type[BaseSettings]]:
    """Every pydantic settings class defined in ``shared`` and ``services``."""
    found: dict[str, type[BaseSettings]] = {}
    for package in (shared, services):
        for mod in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if mod.name.endswith(".__main__"):  # running it starts a server
                continue
            for _, cls in inspect.getmembers(importlib.import_module(mod.name), inspect.isclass):
                if issubclass(cls, BaseSettings) and cls.__module__.startswith(mod.name):
                    found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return list(found.values())


def literal_names() -> set[str]:
    """``SLUICE_*`` string constants of the code: the names it reads outside settings classes."""
    names: set[str] = set()
    for path in [*(ROOT / "shared").rglob("*.py"), *(ROOT / "services").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                names |= {node.value} if NAME.fullmatch(node.value) else set()
    return names


@functools.cache
def known_names() -> tuple[frozenset[str], tuple[str, ...]]:
    """(names, prefixes) of the environment variables sluice reads."""
    names = set()
    for cls in settings_classes():
        prefix = str(cls.model_config.get("env_prefix", ""))
        names |= {f"{prefix}{field}".upper() for field in cls.model_fields}
    literals = literal_names()
    prefixes = tuple(sorted(n for n in literals if n.endswith("_")))
    return frozenset(names | (literals - set(prefixes))), prefixes


def unknown(names: set[str]) -> list[str]:
    """The ``SLUICE_*`` names among ``names`` that no part of sluice reads."""
    known, prefixes = known_names()
    return sorted(n for n in names if NAME.fullmatch(n) and n not in known
                  and not any(n.startswith(p) and len(n) > len(p) for p in prefixes))  # fmt: skip


def compose_env_names(doc: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for svc in doc["services"].values():
        env = svc.get("environment") or {}
        names |= set(env) if isinstance(env, dict) else {e.split("=", 1)[0] for e in env}
    return names


def example_env_names() -> set[str]:
    """Names set in the example env file, commented-out suggestions included."""
    lines = ENV_EXAMPLE.read_text().splitlines()
    return {m[1] for ln in lines if (m := re.match(r"#?\s*([A-Z][A-Z0-9_]*)=", ln))}


def test_compose_yaml_is_valid_under_the_compose_specification() -> None:
    assert schema_errors(compose()) == []


def test_the_schema_check_rejects_a_misspelled_key_and_a_wrong_type() -> None:
    doc = compose()
    doc["services"]["enrich"]["deploy"]["replica"] = 2
    doc["services"]["admin"]["ports"] = "8700:8700"
    errors = schema_errors(doc)
    assert any(e.startswith("services/enrich/deploy") and "'replica'" in e for e in errors), errors
    assert any(e.startswith("services/admin/ports") and "not of type" in e for e in errors), errors


def test_every_sluice_name_in_compose_and_the_example_env_is_read_by_sluice() -> None:
    names = compose_env_names(compose()) | example_env_names()
    assert {"SLUICE_KAFKA_BOOTSTRAP", "SLUICE_ADMIN_TOKEN_FILE", "SLUICE_LOG_LEVEL"} <= names
    assert unknown(names) == []


def test_a_misspelled_or_made_up_name_is_unknown() -> None:
    known, prefixes = known_names()
    assert {"SLUICE_MAX_IN_FLIGHT", "SLUICE_FAKELLM_URL", "SLUICE_ADMIN_URL"} <= known
    assert "SLUICE_KAFKA_PROP_" in prefixes
    assert unknown({"SLUICE_MAX_INFLIGHT", "SLUICE_KAFKA_BOOTSTRAPS", "SLUICE_KAFKA_PROP_"}) == [
        "SLUICE_KAFKA_BOOTSTRAPS", "SLUICE_KAFKA_PROP_", "SLUICE_MAX_INFLIGHT"]  # fmt: skip
    assert unknown({"SLUICE_KAFKA_PROP_SASL_MECHANISM", "OPENAI_API_KEY"}) == []


def test_the_real_env_file_is_ignored_optional_and_the_example_holds_no_token() -> None:
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "deploy/sluice.env" in ignored
    for name, svc in compose()["services"].items():
        if svc.get("image") in SLUICE_IMAGES:
            assert svc["env_file"] == [{"path": "deploy/sluice.env", "required": False}], name
    assert not [n for n in example_env_names() if "TOKEN" in n or "PASSWORD" in n]
    assert not re.search(r"^[A-Z_]*(KEY|SECRET)=\S", ENV_EXAMPLE.read_text(), re.M)


def test_services_start_in_order_behind_health_checks() -> None:
    services = compose()["services"]
    topics = services["topics"]
    assert topics["command"][:2] == ["topics", "create"] and topics["command"][0] in COMMANDS
    assert topics.get("entrypoint") is None, "the image's `sluice`, no inline shell or python"
    assert topics["restart"] == "no"
    assert topics["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    for name in ("ingest", "enrich", "router", "sequencer", "admin"):
        deps = services[name]["depends_on"]
        assert deps["topics"]["condition"] == "service_completed_successfully", name
        assert "healthcheck" in services[name], name
    for name in ("enrich", "router", "admin"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy", name
    assert services["enrich"]["depends_on"]["fakellm"]["condition"] == "service_healthy"
    for name in ("kafka", "redis", "fakellm"):
        assert "healthcheck" in services[name], name


def test_stage_health_checks_probe_the_metrics_port_the_stages_serve() -> None:
    services = compose()["services"]
    for name in ("ingest", "enrich", "router", "sequencer"):
        svc = services[name]
        [code] = svc["healthcheck"]["test"][3:]
        compile(code, "healthcheck", "exec")
        assert f"http://127.0.0.1:{svc['environment']['SLUICE_METRICS_PORT']}/metrics" in code
    fakellm = services["fakellm"]
    port = fakellm["command"][fakellm["command"].index("--port") + 1]
    assert f"http://127.0.0.1:{port}/healthz" in fakellm["healthcheck"]["test"][3]


def test_redis_keeps_an_append_only_file_on_a_volume() -> None:
    doc = compose()
    redis = doc["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    [volume] = redis["volumes"]
    name, path = volume.split(":")
    assert path == "/data" and name in doc["volumes"]


def test_kafka_keeps_its_log_directory_on_a_volume() -> None:
    """Kafka's data outlives ``down`` as Redis's does: the blocked keys, breakers and
    cache in Redis never refer to topics and offsets that were thrown away."""
    doc = compose()
    kafka = doc["services"]["kafka"]
    [volume] = kafka["volumes"]
    name, path = volume.split(":")
    assert path == kafka["environment"]["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert name in doc["volumes"]


def test_enrich_runs_two_replicas_that_cannot_collide() -> None:
    services = compose()["services"]
    assert services["enrich"]["deploy"]["replicas"] == 2
    assert "ports" not in services["enrich"]
    assert not [n for n, s in services.items() if "container_name" in s]


def test_the_demo_profile_produces_sample_tickets_with_the_demo_image() -> None:
    services = compose()["services"]
    demo = services["demo"]
    assert demo["profiles"] == ["demo"] and demo["command"][0] == "tickets" in COMMANDS
    assert demo["build"] == {"context": ".", "target": "demo"} and demo["image"] == "sluice:demo"
    assert demo["restart"] == "no"
    assert {d for d, c in demo["depends_on"].items() if c["condition"] == "service_healthy"} == {
        "ingest", "enrich", "router", "sequencer"}  # fmt: skip
    assert not [n for n, s in services.items() if n != "demo" and s.get("profiles")]
    for name, svc in services.items():
        if svc.get("image") == "sluice:dev":
            assert svc["build"] == ".", f"{name}: the runtime image (the Dockerfile's last stage)"
