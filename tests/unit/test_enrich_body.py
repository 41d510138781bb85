"""Reading a provider's body under ``max_response_bytes`` (no network)."""

from __future__ import annotations

import pytest

from services.enrich.classify import classify_exception
from services.enrich.providers.body import ResponseTooLarge, check_declared, read_capped
from shared.kinds import FailureKind


class Chunks:
    def __init__(self, *chunks: bytes, endless: bytes | None = None) -> None:
        self.chunks = list(chunks)
        self.endless = endless
        self.reads = 0

    async def readany(self) -> bytes:
        self.reads += 1
        if self.chunks:
            return self.chunks.pop(0)
        return self.endless or b""


async def test_a_body_within_the_cap_is_read_whole() -> None:
    assert await read_capped(Chunks(b"ab", b"cd"), cap=4) == b"abcd"


async def test_reading_stops_at_the_first_chunk_past_the_cap() -> None:
    source = Chunks(endless=b"x" * 1000)
    with pytest.raises(ResponseTooLarge) as info:
        await read_capped(source, cap=4096)
    assert source.reads == 5 and info.value.read == 5000
    assert str(info.value) == (
        "response too large: body over the 4 KiB cap: stopped after reading 5000 bytes"
        " (max_response_bytes)"
    )


def test_a_declared_length_over_the_cap_is_refused_before_reading() -> None:
    check_declared(None, 10)
    check_declared(10, 10)
    with pytest.raises(ResponseTooLarge, match="Content-Length 50000000 bytes is over the 4 MiB"):
        check_declared(50_000_000, 4 * 1024 * 1024)


def test_too_large_is_a_provider_error_with_its_own_class() -> None:
    f = classify_exception(ResponseTooLarge(1024, 2048))
    assert (f.kind, f.error_class) == (FailureKind.PROVIDER_ERROR, "response_too_large")
    assert f.message.startswith("response too large: body over the 1 KiB cap")
