"""Small helpers for starting local servers: free ports and polling waits."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    ready: Callable[[], bool],
    timeout_s: float,
    died: Callable[[], bool] | None = None,
    interval_s: float = 0.25,
) -> bool:
    """Poll ``ready`` until true (True), or until timeout or ``died`` (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return True
        if died is not None and died():
            return False
        time.sleep(interval_s)
    return False


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
