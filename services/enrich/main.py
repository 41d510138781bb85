"""``sluice enrich``: run an enrich worker."""

from __future__ import annotations

import argparse

from services.enrich.service import run as run_enrich
from services.enrich.settings import EnrichSettings
from shared.kafka.shutdown import StopFlag
from shared.kafka.startup import check_props
from shared.metrics import serve
from shared.redis.watch import RedisWatch
from shared.settings import load


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sluice enrich", description=__doc__)
    parser.add_argument(
        "--task", help="overrides SLUICE_TASK (default: the config file's default_task)"
    )
    parser.add_argument(
        "--max-in-flight", type=positive_int, help="overrides SLUICE_MAX_IN_FLIGHT (at least 1)"
    )
    args = parser.parse_args(argv)
    overrides: dict[str, object] = {}
    if args.task:
        overrides["task"] = args.task
    if args.max_in_flight is not None:
        overrides["max_in_flight"] = args.max_in_flight
    settings = load(EnrichSettings, **overrides)
    check_props(settings.kafka_props)  # every setting is checked before any wait
    watch = RedisWatch(settings.redis_url.get_secret_value())
    serve(settings.metrics_port, settings.metrics_host)
    with watch.running(settings.startup_timeout_s):
        run_enrich(settings, StopFlag(settings.shutdown_grace_s).install("sluice enrich"))
    return 0


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (else a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value
