"""``sluice bench NAME``: benchmarks, each against a baseline in the same run."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM reached the bench: it stops what it started, as after Ctrl-C. Not an
    ``Exception``, so that no ``except Exception`` on the way (a readiness probe that
    answers "not yet" to any error) can swallow it."""


@contextmanager
def sigterm_as_exception() -> Iterator[None]:
    """A SIGTERM raises :class:`Terminated` in the bench's main thread, so the
    ``finally`` blocks that stop its fleet, fakellm and peers run (the default
    action would end the process and leave them running)."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise Terminated("SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(argv: list[str]) -> int:
    benches = {"ingest": "bench.ingest", "enrich": "bench.enrich", "e2e": "bench.e2e",
               "http": "bench.http_client", "replay": "bench.replay",
               "peers": "bench.peers.main"}  # fmt: skip
    if not argv or argv[0] not in benches:
        print(f"usage: sluice bench {{{','.join(benches)}}} [ARGS]", file=sys.stderr)
        return 2
    import importlib

    module = importlib.import_module(benches[argv[0]])
    try:
        with sigterm_as_exception():
            result: int = module.run(argv[1:])
    except Terminated:
        print("sluice bench: stopped by SIGTERM (what it started is stopped)", file=sys.stderr)
        return EXIT_TERMINATED
    return result
