"""``sluice router``: run the router (retry ladder, dead-letter topics, parking)."""

from __future__ import annotations

import argparse

from services.router.service import run as run_router
from services.router.settings import RouterSettings
from shared.settings import load_with_flags
from shared.stage import run_stage


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sluice router", description=__doc__)
    parser.add_argument(
        "--rungs", help="retry rungs, e.g. 5s,1m,10m (overrides SLUICE_RETRY_RUNGS)"
    )
    parser.add_argument("--drain-rps", type=float, help="overrides SLUICE_PARKED_DRAIN_RPS")
    args = parser.parse_args(argv)
    settings = load_with_flags(
        RouterSettings, retry_rungs=args.rungs, parked_drain_rps=args.drain_rps
    )
    settings.topics  # noqa: B018  bad rungs are a one-line error before anything starts
    return run_stage("router", settings, lambda stop: run_router(settings, stop), redis=True)
