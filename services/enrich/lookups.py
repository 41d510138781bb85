"""The answer-cache lookups of a worker's queued calls, batched into one round trip.

A call that finds its worker busy (every slot taken, or others queued at the
gate) asks the result cache alone before it queues: a cached answer must not
wait for a slot. At a provider's limit that is every call, and each lookup on
its own was a round trip to Redis per call. Here the lookups that arrive
while one is out go together in the next, one ``MGET``
(:meth:`shared.provider_state.ProviderState.lookup`): the first one asked on
an idle worker leaves at once, in the same event-loop turn as any asked with
it, and a busy worker sends one request per batch.

A waiter cancelled before its answer just stops waiting; a Redis failure
reaches every waiter of that request as the exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

MAX_BATCH = 256

Fetch = Callable[[Sequence[str]], Awaitable[Sequence[bytes | None]]]


class Lookups:
    def __init__(self, fetch: Fetch, max_batch: int = MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self._fetch = fetch
        self.max_batch = max_batch
        self._pending: list[tuple[str, asyncio.Future[bytes | None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def get(self, digest: str) -> bytes | None:
        """The answer stored for ``digest``, or ``None``."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bytes | None] = loop.create_future()
        self._pending.append((digest, fut))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        return await fut

    async def _run(self) -> None:
        batch: list[tuple[str, asyncio.Future[bytes | None]]] = []
        try:
            while self._pending:
                batch = [(d, f) for d, f in self._pending[: self.max_batch] if not f.done()]
                del self._pending[: self.max_batch]
                if batch:
                    await self._send(batch)
        finally:
            # Cancelled with the loop: nobody is left to answer the waiters.
            for _, f in batch + self._pending:
                f.cancel()
            self._pending.clear()

    async def _send(self, batch: list[tuple[str, asyncio.Future[bytes | None]]]) -> None:
        digests = list(dict.fromkeys(d for d, _ in batch))
        try:
            found = dict(zip(digests, await self._fetch(digests), strict=True))
        except Exception as exc:
            for _, f in batch:
                if not f.done():
                    f.set_exception(exc)
            return
        for d, f in batch:
            if not f.done():
                f.set_result(found[d])
