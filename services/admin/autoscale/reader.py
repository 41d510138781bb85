"""The providers of enrich's task as the fleet sees them now, read from Redis (I/O).

Per provider: the pause flag and breaker (:func:`~shared.redis.health.provider_health`),
the last minute of call statistics (mean latency) and the workers' heartbeats;
its request budget and connection limit from the YAML config. One enrich
worker heartbeats for every provider of its chain, paused or not, so the
workers alive are the union of the chain's heartbeats.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.admin.autoscale.model import Provider, mean_latency_s, rate_per_s
from services.admin.context import AdminContext
from shared.config_file import TaskConfig
from shared.redis.client import translated
from shared.redis.health import provider_health


@dataclass(frozen=True)
class ChainState:
    chain: tuple[Provider, ...]
    workers: int  # enrich workers heartbeating now


async def read_chain(ctx: AdminContext, task: TaskConfig, max_in_flight: int) -> ChainState:
    """ProviderStateUnavailable when Redis does not answer."""
    with translated("autoscale time"):
        now_s = int((await ctx.redis.time())[0])
    chain = []
    workers: set[str] = set()
    for name in task.providers:
        cfg = ctx.config.providers[name]
        model = cfg.models.get(task.model_for(name))
        health = await provider_health(ctx.redis, ctx.settings.pipeline, name)
        seconds = await ctx.fleet.seconds(name, now_s)
        workers |= set(await ctx.fleet.list_workers(name))
        chain.append(Provider(
            name=name, available=health.available,
            rate_per_s=rate_per_s([cfg.requests_per_minute,
                                   model.requests_per_minute if model else 0]),
            latency_s=mean_latency_s(seconds),
            slots_per_worker=min(max_in_flight, cfg.max_connections)))  # fmt: skip
    return ChainState(tuple(chain), len(workers))
