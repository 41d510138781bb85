"""``sluice ingest``: run the ingest service."""

from __future__ import annotations

import argparse

from services.ingest.service import run as run_ingest
from shared.kafka.shutdown import StopFlag
from shared.metrics import serve
from shared.settings import IngestSettings, load


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sluice ingest", description=__doc__)
    parser.add_argument("--source-topic", help="overrides SLUICE_SOURCE_TOPIC")
    parser.add_argument("--format", choices=["json", "bytes"], help="overrides SLUICE_INPUT_FORMAT")
    args = parser.parse_args(argv)
    overrides = {}
    if args.source_topic:
        overrides["source_topic"] = args.source_topic
    if args.format:
        overrides["input_format"] = args.format
    settings = load(IngestSettings, **overrides)
    serve(settings.metrics_port, settings.metrics_host)
    run_ingest(settings, StopFlag(settings.shutdown_grace_s).install("sluice ingest"))
    return 0
