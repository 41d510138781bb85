"""Prometheus metrics of the enrich service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shared.provider_state import Health

LATENCY = Histogram(
    "sluice_llm_latency_seconds",
    "LLM call latency",
    ["provider", "model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60),
)
TOKENS = Counter("sluice_llm_tokens_total", "Tokens used", ["provider", "model", "direction"])
CALLS = Counter(
    "sluice_llm_calls_total",
    "LLM calls by outcome and failure kind",
    ["provider", "outcome", "kind"],
)
BUCKET_WAIT = Histogram(
    "sluice_bucket_wait_seconds", "Time waiting for the fleet-wide token buckets", ["provider"],
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)  # fmt: skip
STEP = Histogram(
    "sluice_enrich_step_seconds",
    "Time of a call's steps around the call itself (bucket wait and call: their own metrics)",
    ["provider", "step"],  # admit | lookup | settle (the round trips to the shared state)
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
REGRANTS = Counter(
    "sluice_enrich_regrants_total",
    "Grants scheduled ahead that were given back before their call started, by why: the "
    "worker woke too late for its start (late), a 429 came meanwhile (pushback), or the "
    "provider became unavailable",
    ["provider", "reason"],
)
COOLDOWNS = Counter(
    "sluice_provider_cooldowns_total", "Cooldowns set from provider signals", ["provider"]
)
AUTH_FAILURES = Counter(
    "sluice_provider_auth_failures_total",
    "Calls whose API key the provider rejected (401/403): each opens its breaker (reason auth)",
    ["provider"],
)
PROBE_CHECKS = Counter(
    "sluice_provider_probe_checks_total",
    "Model-list requests after a record failed as the half-open probe again, by verdict "
    "(up: the breaker closed and the failure was the record's; down: it re-opened)",
    ["provider", "verdict"],
)
BREAKER_OPEN = Gauge(
    "sluice_provider_breaker_open", "1 while the provider's breaker is open", ["provider"]
)
PAUSED = Gauge("sluice_provider_paused", "1 while an operator paused the provider", ["provider"])
PAUSED_SINCE = Gauge(
    "sluice_provider_paused_since_seconds",
    "Unix time the provider's pause began (0: not paused, or paused without a recorded start)",
    ["provider"],
)
IN_FLIGHT = Gauge("sluice_enrich_in_flight", "Records in flight in this worker")
CONCURRENCY_LIMIT = Gauge(
    "sluice_enrich_concurrency_limit", "AIMD concurrency limit of this worker", ["provider"]
)
CACHE_HITS = Counter(
    "sluice_llm_cache_hits_total", "Answers served from the result cache", ["provider"]
)
OUTCOMES = Counter(
    "sluice_enrich_outcomes_total", "Records finished by outcome", ["outcome", "kind"]
)


def observe_provider(name: str, health: Health | None, concurrency_limit: int) -> None:
    """A provider's state as this worker last read it (``None``: unknown)."""
    PAUSED.labels(name).set(1 if health and health.paused else 0)
    PAUSED_SINCE.labels(name).set(health.paused_since_ms / 1000 if health and health.paused else 0)
    BREAKER_OPEN.labels(name).set(1 if health and health.breaker == "open" else 0)
    CONCURRENCY_LIMIT.labels(name).set(concurrency_limit)
