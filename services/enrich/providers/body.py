"""Reading a provider's answer with a size cap (``max_response_bytes``).

A provider may answer with a body far bigger than any completion (a proxy's
error page, a runaway stream, an endless chunked body, a gzip bomb). The body
is read chunk by chunk and the read stops as soon as the cap is passed, so a
call never holds more than the cap plus one chunk; a ``Content-Length`` over
the cap is refused before any of the body is read. The cap counts decoded
bytes: aiohttp (>= 3.13.3) inflates gzip/deflate in bounded steps as the
reader asks for data, so a small compressed body cannot expand in one go.

The caller drops the connection after :class:`ResponseTooLarge` (the rest of
the body is never read), and the call fails as ``provider_error`` /
``response_too_large``.
"""

from __future__ import annotations

from typing import Protocol


class ResponseTooLarge(Exception):
    """The answer is bigger than the provider's ``max_response_bytes``."""

    def __init__(self, cap: int, read: int, declared: int | None = None) -> None:
        self.cap, self.read, self.declared = cap, read, declared
        if declared is not None:
            what = f"Content-Length {declared} bytes is over the {_size(cap)} cap"
        else:
            what = f"body over the {_size(cap)} cap: stopped after reading {read} bytes"
        super().__init__(f"response too large: {what} (max_response_bytes)")


def _size(n: int) -> str:
    if n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MiB"
    if n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} bytes"


class ChunkSource(Protocol):
    """What the body is read from (``aiohttp.StreamReader``: ``response.content``)."""

    async def readany(self) -> bytes: ...


def check_declared(content_length: int | None, cap: int) -> None:
    """Refuse early when the declared length is over the cap (nothing read yet)."""
    if content_length is not None and content_length > cap:
        raise ResponseTooLarge(cap, 0, declared=content_length)


async def read_capped(source: ChunkSource, cap: int) -> bytes:
    """The whole body if it is at most ``cap`` bytes; else :class:`ResponseTooLarge`."""
    chunks: list[bytes] = []
    total = 0
    while chunk := await source.readany():
        total += len(chunk)
        if total > cap:
            raise ResponseTooLarge(cap, total)
        chunks.append(chunk)
    return b"".join(chunks)
