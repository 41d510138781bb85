"""``sluice enrich``: run an enrich worker."""

from __future__ import annotations

import argparse

from services.enrich.service import run as run_enrich
from services.enrich.settings import EnrichSettings
from shared.settings import load_with_flags
from shared.stage import run_stage


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sluice enrich", description=__doc__)
    parser.add_argument(
        "--task", help="overrides SLUICE_TASK (default: the config file's default_task)"
    )
    parser.add_argument(
        "--max-in-flight", type=positive_int, help="overrides SLUICE_MAX_IN_FLIGHT (at least 1)"
    )
    args = parser.parse_args(argv)
    settings = load_with_flags(EnrichSettings, task=args.task, max_in_flight=args.max_in_flight)
    return run_stage("enrich", settings, lambda stop: run_enrich(settings, stop), redis=True)


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (else a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value
