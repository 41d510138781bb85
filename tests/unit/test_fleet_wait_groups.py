"""``wait_groups`` against a broker that accepts connections and never answers: it
gives up at its deadline with ``False`` (the caller's readable error), never with a
bare ``TimeoutError`` from an admin future."""

import socket
import threading

from devtools.fleet.fleet import wait_groups


def test_a_silent_broker_is_a_false_at_the_deadline_not_an_exception() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])  # keep it open, say nothing
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    checks: list[int] = []
    try:
        bootstrap = f"127.0.0.1:{srv.getsockname()[1]}"
        ok = wait_groups(bootstrap, {"g": 1}, lambda: checks.append(1), timeout_s=1.0)
    finally:
        stop.set()
        t.join(5)
        for s in held:
            s.close()
        srv.close()
    assert ok is False
    assert checks, "the liveness check ran between looks"
