"""Serving the fake: in the foreground (:func:`run`) or in a background thread for tests."""

from __future__ import annotations

import gc
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from services.fakellm.app import create_app
from services.fakellm.config import FakeLLMConfig

_STARTUP_TIMEOUT_S = 10.0


def _uvicorn_config(
    config: FakeLLMConfig | None, log_level: str, control_token: str | None = None
) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(config, control_token=control_token),
        log_level=log_level,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
    )


def run(
    host: str, port: int, config: FakeLLMConfig | None = None, control_token: str | None = None
) -> None:
    """Serve until SIGINT/SIGTERM.

    The heap built at startup is frozen out of garbage collection first: a full
    collection otherwise walks every module object and stalls the event loop for
    tens of milliseconds, after which the requests that queued meanwhile are
    stamped as one bunch and the 1 s window counters (the measuring instrument
    of the rate-limit tests and benchmarks) see more than was sent in the window.
    """
    uv_config = _uvicorn_config(config, "info", control_token)
    uv_config.host, uv_config.port = host, port
    gc.collect()
    gc.freeze()
    uvicorn.Server(uv_config).run()


@contextmanager
def serve_in_thread(
    config: FakeLLMConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    control_token: str | None = None,
) -> Iterator[str]:
    """Serve a fresh fake in a background thread; yields its base URL.

    ``port=0`` takes a free port. On exit the server stops (in-flight hangs are
    cut after about a second) and the thread is joined.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when
    # the listener's proto says TCP; without it every response waits ~40 ms for ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(_uvicorn_config(config, "warning", control_token))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="fakellm", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fakellm server did not start")
            time.sleep(0.01)
        url_host = f"[{host}]" if ":" in host else host
        yield f"http://{url_host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=_STARTUP_TIMEOUT_S)
        sock.close()
