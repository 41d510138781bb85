"""Schemathesis over the admin's own OpenAPI schema, against the real app on Kafka + Redis.

Every operation of ``/openapi.json`` is called with generated input, valid
and invalid (schemathesis' coverage and fuzzing phases), with the operator
token (mutations act on this test's own pipeline). Each answer must be no
5xx, a status code the operation documents, of the documented media type,
with a body that fits the documented schema; an operation that takes a
token must refuse a request without one or with a wrong one. A fixed seed
and derandomized generation make the cases the same on every run.

It drives schemathesis' engine (what ``st run`` runs) rather than its pytest
plugin, whose fixture-loaded schemas do not work with pytest 9.2.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events

from devtools.stack.resolve import Stack
from services.fakellm.config import FakeLLMConfig, FixedLatency
from services.fakellm.server import serve_in_thread
from shared.kafka.provision import create_topics
from shared.settings import CommonSettings, load
from tests.support.admin import OP, admin_config, serve_admin

pytestmark = pytest.mark.integration

CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "ignored_auth")  # fmt: skip
OPERATIONS = {"GET /healthz", "GET /readyz", "GET /metrics", "GET /v1/providers",
              "POST /v1/providers/{name}/pause", "POST /v1/providers/{name}/resume",
              "GET /v1/audit", "GET /v1/lag", "GET /v1/dlq", "GET /v1/dlq/{name}/records",
              "POST /v1/replays", "GET /v1/replays", "GET /v1/replays/{replay_id}",
              "POST /v1/replays/{replay_id}/cancel", "GET /v1/blocked",
              "POST /v1/blocked/release"}  # fmt: skip
# Operations whose 2xx random input cannot reach here (their success is tested elsewhere).
NO_2XX_HERE = {
    "POST /v1/replays",  # only a dry run of a known DLQ and task answers 2xx (test_admin_dlq.py)
    "GET /v1/replays/{replay_id}",  # only a task's id answers 2xx (test_admin_replay.py)
    "POST /v1/replays/{replay_id}/cancel",
    "POST /v1/blocked/release",  # only a key blocked now answers 2xx (test_admin_blocked.py)
}


def _config() -> SchemathesisConfig:
    return SchemathesisConfig.from_dict({
        "seed": 20240611,
        "generation": {"mode": "all", "max-examples": 20, "deterministic": True,
                       "database": "none"},
        "phases": {"stateful": {"enabled": False}},  # no links between the operations
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        "auth": {"openapi": {"HTTPBearer": {"bearer": OP}}},
        "request-timeout": 15,
    })  # fmt: skip


def _failures(event: events.EngineEvent) -> list[str]:
    if isinstance(event, events.ScenarioFinished):
        return [f"{event.recorder.label}: {check.name}: {check.failure_info.failure.title}\n"
                f"{check.failure_info.failure.message}\n{check.failure_info.code_sample}"
                for checks in event.recorder.checks.values() for check in checks
                if check.failure_info is not None]  # fmt: skip
    if isinstance(event, (events.NonFatalError, events.FatalError)):
        return [f"{type(event).__name__}: {event!r}"]
    if isinstance(event, events.EngineFinished):
        return [str(f) for f in event.failures]
    return []


def test_every_operation_answers_as_its_schema_says(
    stack: Stack, kafka_env: dict[str, str], tmp_path: Path
) -> None:
    create_topics(load(CommonSettings))
    failures: list[str] = []
    answered: Counter[tuple[str, int]] = Counter()
    with serve_in_thread(FakeLLMConfig(latency=FixedLatency(ms=20))) as fake, \
         serve_admin(config_file=admin_config(tmp_path / "c.yaml", fake),
                     admin_lag_interval_s=0.5, admin_lag_window_s=2.0) as admin:  # fmt: skip
        admin.wait_ready(60)  # a 503 before the first lag sample is the documented warm-up
        url = str(admin.http.base_url).rstrip("/")
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=_config())
        for event in schemathesis.engine.from_schema(schema).execute():
            failures += _failures(event)
            if isinstance(event, events.ScenarioFinished):
                for interaction in event.recorder.interactions.values():
                    if interaction.response is not None:
                        answered[(event.recorder.label, interaction.response.status_code)] += 1
    assert not failures, "\n\n".join(dict.fromkeys(failures))
    # every operation was asked, and each answered 2xx at least once (the mutations on this
    # pipeline too), but those listed in NO_2XX_HERE
    assert {label for label, _status in answered} == OPERATIONS, sorted(answered.items())
    succeeded = {label for (label, status), _ in answered.items() if 200 <= status < 300}
    assert succeeded >= OPERATIONS - NO_2XX_HERE, sorted(answered.items())
