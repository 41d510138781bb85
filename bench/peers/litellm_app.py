"""One peer process of ``sluice bench peers``: LiteLLM's Router behind an asyncio Kafka consumer.

Runs in LiteLLM's own virtual environment (:mod:`bench.peers.litellm_peer`),
never in sluice's: it imports nothing of sluice. Usage::

    python litellm_app.py BOOTSTRAP SOURCE OUTPUT ERRORS GROUP API_BASE MODEL RPM \
        REDIS_HOST REDIS_PORT CONCURRENCY

Written the way LiteLLM documents a rate limit shared by several instances: one
deployment with ``rpm``, ``enable_pre_call_checks`` and the Router's Redis
(usage counted across processes); the Router's other settings are its defaults.
The consumer is the usual asyncio one: aiokafka with its default auto-commit,
one task per record, at most CONCURRENCY at once. An answer goes to OUTPUT
(the source value, unchanged); a call that still fails after the Router's own
retries goes to ERRORS. SIGTERM stops it (in-flight calls are awaited first).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import litellm
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from litellm import Router

log = logging.getLogger("litellm-peer")


async def main(argv: list[str]) -> None:
    (bootstrap, source, output, errors, group, api_base, model, rpm, redis_host, redis_port,
     concurrency) = argv  # fmt: skip
    router = Router(
        model_list=[{"model_name": "peer",
                     "litellm_params": {"model": f"openai/{model}", "api_base": api_base,
                                        "api_key": "bench", "rpm": int(rpm)}}],
        enable_pre_call_checks=True,
        redis_host=redis_host,
        redis_port=int(redis_port),
    )  # fmt: skip
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest")  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    await consumer.start()
    slots = asyncio.Semaphore(int(concurrency))
    tasks: set[asyncio.Task[None]] = set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def handle(key: bytes | None, value: bytes) -> None:
        try:
            await router.acompletion(model="peer", max_tokens=16,
                                     messages=[{"role": "user", "content": value.decode()}])  # fmt: skip
            await producer.send(output, value, key=key)
        except Exception as exc:  # after the Router's retries
            log.warning("call failed: %s", type(exc).__name__)
            await producer.send(errors, value, key=key)
        finally:
            slots.release()

    print("litellm-peer: running", flush=True)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for r in records:
                    await slots.acquire()
                    task = asyncio.create_task(handle(r.key, r.value))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
    finally:
        await asyncio.gather(*tasks, return_exceptions=True)
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    litellm.suppress_debug_info = True
    asyncio.run(main(sys.argv[1:]))
