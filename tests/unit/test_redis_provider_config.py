"""The YAML provider entry as the Redis side's types: the translation enrich uses."""

from __future__ import annotations

from shared.config_file import ProviderConfig
from shared.redis.breaker_logic import BreakerSpec
from shared.redis.bucket import ModelLimits, ProviderLimits
from shared.redis.provider_config import breaker_spec, bucket_limits


def provider(**extra: object) -> ProviderConfig:
    return ProviderConfig.model_validate(
        {"kind": "openai", "base_url": "http://127.0.0.1:1/v1", **extra}
    )


def test_limits_of_the_provider_and_its_models() -> None:
    cfg = provider(
        requests_per_minute=1200,
        tokens_per_minute=90_000,
        models={"m": {"requests_per_minute": 60}},
    )
    assert bucket_limits(cfg) == ProviderLimits(1200, 90_000, {"m": ModelLimits(60, 0)})
    assert bucket_limits(provider()) == ProviderLimits()  # 0: unlimited


def test_breaker_entry_with_a_fractional_window_rounds_the_window_up() -> None:
    cfg = provider(
        breaker={
            "failure_rate": 0.3, "min_requests": 7, "window_s": 2.5, "open_s": 15,
            "half_open_probes": 3,
        }
    )  # fmt: skip
    assert breaker_spec(cfg.breaker) == BreakerSpec(
        window_s=3, min_requests=7, failure_threshold=0.3, open_s=15.0, half_open_probes=3
    )
    short = provider(breaker={"window_s": 0.2}).breaker
    assert breaker_spec(short).window_s == 1  # whole seconds, at least one


def test_the_default_breaker_entry() -> None:
    spec = breaker_spec(provider().breaker)
    assert (spec.window_s, spec.min_requests, spec.failure_threshold) == (30, 20, 0.5)
    assert (spec.open_s, spec.half_open_probes) == (15.0, 3)
