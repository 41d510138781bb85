"""fakellm's control API for tests that share one fakellm across a module."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from services.fakellm.config import FakeLLMConfig


@contextmanager
def control_client(url: str, base: FakeLLMConfig) -> Iterator[httpx.Client]:
    """A client of fakellm's ``/_control`` at ``url``, after putting it back to ``base``:
    that whole configuration, no outage, counters at zero."""
    with httpx.Client(base_url=url + "/_control", timeout=5) as c:
        c.put("/config?replace=true", json=base.model_dump()).raise_for_status()
        c.post("/outage", json={"seconds": 0}).raise_for_status()
        c.post("/reset").raise_for_status()
        yield c
