"""Where Kafka and Redis come from, in this order:

1. addresses in ``SLUICE_KAFKA_BOOTSTRAP`` / ``SLUICE_REDIS_URL``;
2. testcontainers, when a Docker engine answers;
3. a local stack started here (Kafka jars + JDK, ``redis-server``).

A :class:`Stack` owns whatever it started and stops it on :meth:`Stack.close`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from devtools.stack.kafka_local import LocalKafka, wait_for_kafka
from devtools.stack.redis_local import LocalRedis, redis_ping
from shared.errors import StackError

log = logging.getLogger(__name__)

Source = Literal["env", "docker", "local"]

KAFKA_IMAGE = os.environ.get("SLUICE_KAFKA_IMAGE", "apache/kafka:4.1.1")
REDIS_IMAGE = os.environ.get("SLUICE_REDIS_IMAGE", "redis:7-alpine")


@dataclass
class Stack:
    bootstrap: str
    redis_url: str
    kafka_source: Source
    redis_source: Source
    kafka: LocalKafka | None = None
    redis: LocalRedis | None = None
    _containers: list[Any] = field(default_factory=list)

    def close(self) -> None:
        for c in self._containers:
            with contextlib.suppress(Exception):
                c.stop()
        if self.kafka is not None:
            self.kafka.cleanup()
        if self.redis is not None:
            self.redis.cleanup()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def docker_available(timeout_s: float = 3.0) -> bool:
    """True when a Docker engine answers a ping (never raises)."""
    if os.environ.get("SLUICE_NO_DOCKER"):
        return False
    try:
        import docker
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=int(timeout_s))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _kafka(stack_containers: list[Any]) -> tuple[str, Source, LocalKafka | None]:
    env = os.environ.get("SLUICE_KAFKA_BOOTSTRAP")
    if env:
        wait_for_kafka(env, 60)
        return env, "env", None
    if docker_available():
        from testcontainers.kafka import KafkaContainer

        container = KafkaContainer(KAFKA_IMAGE).with_kraft()
        container.start()
        stack_containers.append(container)
        return container.get_bootstrap_server(), "docker", None
    kafka = LocalKafka().start()
    return kafka.bootstrap, "local", kafka


def _redis(stack_containers: list[Any]) -> tuple[str, Source, LocalRedis | None]:
    env = os.environ.get("SLUICE_REDIS_URL")
    if env:
        if not redis_ping(env):
            raise StackError("SLUICE_REDIS_URL is set but Redis does not answer PING there")
        return env, "env", None
    if docker_available():
        from testcontainers.redis import RedisContainer

        container = RedisContainer(REDIS_IMAGE)
        container.start()
        stack_containers.append(container)
        host = container.get_container_host_ip()
        port = container.get_exposed_port(6379)
        return f"redis://{host}:{port}/0", "docker", None
    redis = LocalRedis().start()
    return redis.url, "local", redis


def acquire(need_redis: bool = True) -> Stack:
    """Kafka (and Redis) from the environment, Docker or the local stack."""
    containers: list[Any] = []
    kafka: LocalKafka | None = None
    try:
        bootstrap, ksrc, kafka = _kafka(containers)
        if need_redis:
            redis_url, rsrc, redis = _redis(containers)
        else:
            redis_url, rsrc, redis = "", "env", None
    except BaseException:
        for c in containers:
            with contextlib.suppress(Exception):
                c.stop()
        if kafka is not None:
            kafka.cleanup()
        raise
    log.info("stack: kafka=%s (%s) redis=%s (%s)", bootstrap, ksrc, redis_url or "-", rsrc)
    return Stack(bootstrap, redis_url, ksrc, rsrc, kafka, redis, containers)
