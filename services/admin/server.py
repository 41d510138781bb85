"""Serving the admin app: in the foreground until SIGTERM (:func:`run`), or in a thread (tests).

uvicorn runs in a thread of its own; the main thread waits on the service's
:class:`~shared.kafka.shutdown.StopFlag` (SIGTERM/SIGINT, with the
``SLUICE_SHUTDOWN_GRACE_S`` watchdog like every sluice service), then tells
uvicorn to finish the requests it has and stop.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from shared.errors import ConfigError, StackError
from shared.kafka.shutdown import StopFlag

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 30.0
DRAIN_S = 3  # uvicorn's grace for requests in progress after a stop


def listen(host: str, port: int) -> socket.socket:
    """A listening socket; ConfigError naming the settings when it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"SLUICE_ADMIN_PORT: cannot listen on {host}:{port} "
                          f"(SLUICE_ADMIN_HOST): {exc.strerror or exc}") from exc  # fmt: skip
    return sock


def _server(app: FastAPI) -> uvicorn.Server:
    # h11, not httptools: httptools answers a request line it cannot parse (a raw
    # character in the query, say) with a bare 400 before the app sees it; h11 lets the
    # app answer it, with the documented 4xx and a message
    return uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                                         http="h11", timeout_graceful_shutdown=DRAIN_S))  # fmt: skip


def _start(app: FastAPI, sock: socket.socket) -> tuple[uvicorn.Server, threading.Thread]:
    server = _server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="admin-http",
                              daemon=True)  # fmt: skip
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise StackError("the admin server did not start (see the log above)")
        time.sleep(0.01)
    return server, thread


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run(app: FastAPI, host: str, port: int, stop: StopFlag) -> None:
    """Serve until ``stop`` is set; StackError if the server ends on its own."""
    sock = listen(host, port)
    try:
        server, thread = _start(app, sock)
        log.info("admin listening on %s (API docs at /docs)", _url(sock))
        while not stop.wait(0.5):
            if not thread.is_alive():
                raise StackError("the admin server stopped unexpectedly (see the log above)")
        log.info("admin stopping (%s)", stop.reason)
        server.should_exit = True
        thread.join(DRAIN_S + 5)
    finally:
        sock.close()


@contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` in a background thread (``port=0``: a free one); yields its base URL."""
    sock = listen(host, port)
    try:
        server, thread = _start(app, sock)
        try:
            yield _url(sock)
        finally:
            server.should_exit = True
            thread.join(DRAIN_S + 5)
    finally:
        sock.close()
