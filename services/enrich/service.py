"""The enrich service: wiring of consumer, producer, providers and Redis state.

It is the :class:`~shared.kafka.concurrent.Dispatcher` of its consumer loop:
records of ``P.work`` go to the :class:`~services.enrich.enricher.Enricher` on
the asyncio thread, their outcomes to ``P.results`` / ``P.failures``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from services.enrich.aimd import Aimd
from services.enrich.enricher import Enricher
from services.enrich.lanes import replayed
from services.enrich.metrics import IN_FLIGHT
from services.enrich.providers import build_providers
from services.enrich.settings import EnrichSettings
from services.enrich.worker_provider import WorkerProvider
from shared import looplag
from shared.config_file import load_config
from shared.errors import ConfigError
from shared.kafka.clients import KAFKA, Clients
from shared.kafka.concurrent import Dispatcher, start_loop, stop_loop
from shared.kafka.config import consumer_config, prompt_producer_config
from shared.kafka.loop import Subscription
from shared.kafka.producer import TrackedProducer
from shared.kafka.shutdown import StopFlag
from shared.metrics import lag_stats_callback
from shared.redis.client import connect
from shared.redis.provider_config import breaker_spec, bucket_limits
from shared.redis.state import RedisProviderState
from shared.topics import Topics

log = logging.getLogger(__name__)
T = TypeVar("T")


class EnrichService(Dispatcher):
    def __init__(self, settings: EnrichSettings, stop: StopFlag | None = None,
                 clients: Clients = KAFKA) -> None:  # fmt: skip
        self.settings = settings
        self.topics = t = Topics(settings.pipeline)
        self.config = load_config(settings.config_file)
        try:
            self.task_name = (
                settings.task or self.config.default_task or next(iter(self.config.tasks))
            )
            self.task = self.config.task(self.task_name)
        except (KeyError, StopIteration) as exc:
            raise ConfigError(f"task {settings.task!r} is not configured") from exc
        self.event_loop, self._thread = start_loop(settings.event_loop)
        self.redis = connect(settings.redis_url.get_secret_value())
        self.providers = build_providers({n: self.config.providers[n] for n in self.task.providers})
        self.worker_providers = {
            name: WorkerProvider(
                name,
                provider,
                RedisProviderState(
                    self.redis,
                    settings.pipeline,
                    name,
                    bucket_limits(self.config.providers[name]),
                    breaker_spec(self.config.providers[name].breaker),
                ),
                Aimd(max_limit=settings.max_in_flight),
                ahead_s=settings.schedule_ahead_ms / 1000,
            )
            for name, provider in self.providers.items()
        }
        self.enricher = self._in_loop(self._make_enricher())
        consumer = clients.consumer(
            consumer_config(
                settings,
                settings.group,
                stats_cb=lag_stats_callback(settings.group),
                on_commit=lambda err, parts: self.commits.commit_result(err, parts),
            )
        )
        producer = TrackedProducer(prompt_producer_config(settings), clients.producer)
        subscription = Subscription([t.work], [t.results, t.failures], t.co_partitioned)
        super().__init__("enrich", settings, consumer, producer, self.enricher, self.event_loop,
                         subscription, settings.max_in_flight, stop or StopFlag(),
                         settings.revoke_grace_s, replayed)  # fmt: skip
        self._refresher: concurrent.futures.Future[None] | None = None
        self._lag_watch: concurrent.futures.Future[None] | None = None

    async def _make_enricher(self) -> Enricher:
        # Clients bind to the running loop: build them inside it.
        return Enricher(
            self.topics,
            self.task_name,
            self.task,
            self.worker_providers,
            self.settings.cache_ttl_s,
            max_message_bytes=self.settings.max_message_bytes,
        )

    def _in_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.event_loop).result(30)

    async def _refresh_forever(self) -> None:
        while True:
            await self.enricher.refresh(self.settings.worker_id)
            IN_FLIGHT.set(self.in_flight())
            await asyncio.sleep(self.settings.health_refresh_s)

    def started(self, partitions: dict[str, int]) -> None:
        """Topics checked: read the providers' state, then start the background tasks."""
        self._in_loop(self.enricher.refresh(self.settings.worker_id))
        _freeze_startup_heap()
        self._refresher = asyncio.run_coroutine_threadsafe(self._refresh_forever(), self.event_loop)
        self._lag_watch = asyncio.run_coroutine_threadsafe(looplag.watch(), self.event_loop)
        log.info("enrich: task %s via %s, up to %d in flight", self.task_name, " → ".join(self.task.providers),
                 self.settings.max_in_flight)  # fmt: skip

    def close(self) -> None:
        """The loop is over (the consumer is closed): stop the asyncio side."""
        log.info("enrich stopping (%s)", self.stop.reason or "error")
        try:
            for task in (self._refresher, self._lag_watch):
                if task is not None:
                    task.cancel()
            self._in_loop(self._aclose())
            stop_loop(self.event_loop, self._thread)
        finally:
            super().close()

    async def _aclose(self) -> None:
        for wp in self.worker_providers.values():
            try:
                await wp.state.leave(self.settings.worker_id)
            except Exception:  # Redis may be down at shutdown; the TTL expires the entry
                log.debug("could not leave the fleet registry", exc_info=True)
            await wp.provider.aclose()
        await self.redis.aclose()


def _freeze_startup_heap() -> None:
    """Keep the long-lived startup objects out of every later garbage collection.

    Modules, clients and settings make up most of a worker's heap; without this
    each full collection walks them again and stalls the event loop for tens of
    milliseconds, so requests granted by the bucket just before it reach the
    provider late and in a bunch (the provider counts arrivals, not grants).
    """
    gc.collect()
    gc.freeze()


def run(settings: EnrichSettings, stop: StopFlag | None = None) -> None:
    EnrichService(settings, stop).run()
