"""``sluice bench NAME``: benchmarks, each against a baseline in the same run."""

from __future__ import annotations

import sys


def run(argv: list[str]) -> int:
    benches = {"ingest": "bench.ingest", "enrich": "bench.enrich", "e2e": "bench.e2e",
               "http": "bench.http_client", "replay": "bench.replay",
               "peers": "bench.peers.main"}  # fmt: skip
    if not argv or argv[0] not in benches:
        print(f"usage: sluice bench {{{','.join(benches)}}} [ARGS]", file=sys.stderr)
        return 2
    import importlib

    module = importlib.import_module(benches[argv[0]])
    result: int = module.run(argv[1:])
    return result
