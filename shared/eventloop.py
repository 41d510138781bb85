"""The asyncio event loop a service runs its calls on (I/O-free choice, then construction).

``uvloop`` (libuv) runs the same coroutines as the standard loop at a fraction of its
CPU per callback, socket read and timer: enrich's loop spends most of its time on
exactly those (an HTTP call, two Redis round trips, a cross-thread hand-over per
record). It is a dependency on Linux and macOS; where it is not installed, or with
``SLUICE_EVENT_LOOP=asyncio``, the standard loop runs instead.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from typing import Literal

log = logging.getLogger(__name__)

LoopKind = Literal["auto", "uvloop", "asyncio"]


def choose(kind: LoopKind, uvloop_installed: bool) -> Literal["uvloop", "asyncio"]:
    """Which loop ``kind`` means here (pure); ``uvloop`` asked for but missing is an error."""
    if kind == "asyncio" or (kind == "auto" and not uvloop_installed):
        return "asyncio"
    if not uvloop_installed:
        from shared.errors import ConfigError

        raise ConfigError("SLUICE_EVENT_LOOP=uvloop: uvloop is not installed (pip install uvloop)")
    return "uvloop"


def new_event_loop(kind: LoopKind = "auto") -> asyncio.AbstractEventLoop:
    """A new event loop of ``kind`` (not set as any thread's current loop)."""
    if choose(kind, importlib.util.find_spec("uvloop") is not None) == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()
