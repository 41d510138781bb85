"""``sluice router``: run the router (retry ladder, dead-letter topics, parking)."""

from __future__ import annotations

import argparse
from typing import Any

from services.router.service import run as run_router
from services.router.settings import RouterSettings
from shared.kafka.shutdown import StopFlag
from shared.kafka.startup import check_props
from shared.metrics import serve
from shared.redis.watch import RedisWatch
from shared.settings import load


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sluice router", description=__doc__)
    parser.add_argument(
        "--rungs", help="retry rungs, e.g. 5s,1m,10m (overrides SLUICE_RETRY_RUNGS)"
    )
    parser.add_argument("--drain-rps", type=float, help="overrides SLUICE_PARKED_DRAIN_RPS")
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.rungs:
        overrides["retry_rungs"] = args.rungs
    if args.drain_rps is not None:
        overrides["parked_drain_rps"] = args.drain_rps
    settings = load(RouterSettings, **overrides)
    settings.topics  # noqa: B018  bad rungs are a one-line error before anything starts
    check_props(settings.kafka_props)  # every setting is checked before any wait
    watch = RedisWatch(settings.redis_url.get_secret_value())
    serve(settings.metrics_port, settings.metrics_host)
    with watch.running(settings.startup_timeout_s):
        run_router(settings, StopFlag(settings.shutdown_grace_s).install("sluice router"))
    return 0
