"""How a stage's process starts: ``sluice ingest|enrich|router|sequencer`` after their flags.

every setting checked (Kafka passthrough properties) before any wait
/metrics served
Redis awaited, bounded by SLUICE_STARTUP_TIMEOUT_S, and watched (enrich, router)
the stage's body runs until SIGTERM/SIGINT, within SLUICE_SHUTDOWN_GRACE_S
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

from shared.kafka.shutdown import StopFlag
from shared.kafka.startup import check_props
from shared.metrics import serve
from shared.settings import CommonSettings


def run_stage(
    name: str, settings: CommonSettings, body: Callable[[StopFlag], None], *, redis: bool
) -> int:
    """Run ``body`` as the process of stage ``name``; its exit status (0) when it returns."""
    check_props(settings.kafka_props)
    watching: AbstractContextManager[object] = nullcontext()
    if redis:
        from shared.redis.watch import RedisWatch  # only the stages that keep state in Redis

        watching = RedisWatch(settings.redis_url.get_secret_value()).running(
            settings.startup_timeout_s
        )
    serve(settings.metrics_port, settings.metrics_host)
    with watching:
        body(StopFlag(settings.shutdown_grace_s).install(f"sluice {name}"))
    return 0
