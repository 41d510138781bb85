"""``sluice enrich``: run an enrich worker."""

from __future__ import annotations

import argparse

from services.enrich.service import run as run_enrich
from services.enrich.settings import EnrichSettings
from shared.kafka.shutdown import StopFlag
from shared.metrics import serve
from shared.settings import load


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sluice enrich", description=__doc__)
    parser.add_argument(
        "--task", help="overrides SLUICE_TASK (default: the config file's default_task)"
    )
    parser.add_argument("--max-in-flight", type=int, help="overrides SLUICE_MAX_IN_FLIGHT")
    args = parser.parse_args(argv)
    overrides: dict[str, object] = {}
    if args.task:
        overrides["task"] = args.task
    if args.max_in_flight:
        overrides["max_in_flight"] = args.max_in_flight
    settings = load(EnrichSettings, **overrides)
    serve(settings.metrics_port)
    run_enrich(settings, StopFlag().install())
    return 0
