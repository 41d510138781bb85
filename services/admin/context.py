"""What the admin's routers work with: the pipeline's clients, built once per app.

Routers get it with a parameter ``ctx: Ctx``. It is
built when the app starts (the Redis client binds to the serving loop) and
closed when it stops.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated

import redis.asyncio as aioredis
from confluent_kafka.admin import AdminClient
from fastapi import Depends, HTTPException, Request

from services.admin.audit import AuditLog
from services.admin.settings import AdminSettings
from shared.config_file import ProviderConfig, SluiceConfig
from shared.kafka.rdlog import rdkafka_logger
from shared.redis.bucket import Limiter
from shared.redis.client import connect
from shared.redis.fleet import Fleet
from shared.redis.pause import Pauses
from shared.redis.provider_config import bucket_limits
from shared.topics import Topics


@dataclass
class AdminContext:
    settings: AdminSettings
    config: SluiceConfig
    redis: aioredis.Redis
    audit: AuditLog
    kafka: AdminClient
    topics: Topics = field(init=False)
    pauses: Pauses = field(init=False)
    fleet: Fleet = field(init=False)
    limiter: Limiter = field(init=False)

    def __post_init__(self) -> None:
        p = self.settings.pipeline
        self.topics = Topics(p)
        self.pauses = Pauses(self.redis, p)
        self.fleet = Fleet(self.redis, p)
        self.limiter = Limiter(
            self.redis, p, {n: bucket_limits(c) for n, c in self.config.providers.items()}
        )

    @classmethod
    def build(cls, settings: AdminSettings, config: SluiceConfig) -> AdminContext:
        kafka = AdminClient(settings.kafka_config("admin", logger=rdkafka_logger()))
        return cls(settings, config, connect(settings.redis_url.get_secret_value()),
                   AuditLog(settings), kafka)  # fmt: skip

    def provider(self, name: str) -> ProviderConfig:
        """The provider's YAML entry; 404 naming the configured ones when unknown."""
        cfg = self.config.providers.get(name)
        if cfg is None:
            known = ", ".join(sorted(self.config.providers)) or "none"
            raise HTTPException(404, f"unknown provider {name!r}; configured: {known}")
        return cfg

    async def aclose(self) -> None:
        await asyncio.to_thread(self.audit.close)
        await self.redis.aclose()


def admin_context(request: Request) -> AdminContext:
    ctx: AdminContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AdminContext, Depends(admin_context)]
"""A route's parameter ``ctx: Ctx`` is the app's :class:`AdminContext`."""
