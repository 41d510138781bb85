"""The provider gauges a worker publishes from the health it read (pure; the default registry)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from services.enrich.breaker_policy import opened_for_auth
from services.enrich.metrics import observe_provider
from shared.provider_state import Health


def gauge(name: str, provider: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"provider": provider})


def test_a_pause_publishes_when_it_began_and_a_resume_clears_it() -> None:
    observe_provider(
        "gp", Health(paused=True, breaker="closed", paused_since_ms=1_700_000_000_500), 8
    )
    assert gauge("sluice_provider_paused", "gp") == 1
    assert gauge("sluice_provider_paused_since_seconds", "gp") == 1_700_000_000.5
    observe_provider("gp", Health(paused=False, breaker="open"), 8)
    assert gauge("sluice_provider_paused", "gp") == 0
    assert gauge("sluice_provider_paused_since_seconds", "gp") == 0
    assert gauge("sluice_provider_breaker_open", "gp") == 1
    observe_provider("gp", None, 8)  # Redis unreadable: nothing known
    assert gauge("sluice_provider_paused_since_seconds", "gp") == 0


def test_tripping_the_breaker_for_auth_keeps_the_pause_and_its_start() -> None:
    paused = Health(paused=True, breaker="closed", paused_since_ms=123_000)
    assert opened_for_auth(paused) == Health(True, "open", "auth", paused_since_ms=123_000)
    assert opened_for_auth(None) == Health(False, "open", "auth")
