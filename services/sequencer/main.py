"""``sluice sequencer``: restore per-key order, exactly once to P.output.

sluice sequencer                  run the service

Blocked keys (block mode) are listed and released over the admin API:
``sluice blocked list|release`` (``GET /v1/blocked``, ``POST /v1/blocked/release``).
"""

from __future__ import annotations

import argparse

from services.sequencer.service import run as run_sequencer
from services.sequencer.settings import SequencerSettings
from shared.settings import load_with_flags
from shared.stage import run_stage


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sluice sequencer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--dead-mode", choices=["skip", "block"], help="overrides SLUICE_DEAD_MODE")
    parser.add_argument(
        "--worker-id", help="overrides SLUICE_WORKER_ID (names the transactional id)"
    )
    if argv and argv[0] in ("blocked", "release"):
        parser.error(f"'sluice sequencer {argv[0]}' is now 'sluice blocked "
                     f"{'list' if argv[0] == 'blocked' else 'release'}' (over the admin API)")  # fmt: skip
    args = parser.parse_args(argv)
    settings = load_with_flags(
        SequencerSettings, dead_mode=args.dead_mode, worker_id=args.worker_id
    )
    return run_stage("sequencer", settings, lambda stop: run_sequencer(settings, stop), redis=False)
