"""``sluice ingest``: run the ingest service."""

from __future__ import annotations

import argparse

from services.ingest.service import run as run_ingest
from shared.settings import IngestSettings, load_with_flags
from shared.stage import run_stage


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sluice ingest", description=__doc__)
    parser.add_argument("--source-topic", help="overrides SLUICE_SOURCE_TOPIC")
    parser.add_argument("--format", choices=["json", "bytes"], help="overrides SLUICE_INPUT_FORMAT")
    args = parser.parse_args(argv)
    settings = load_with_flags(
        IngestSettings, source_topic=args.source_topic, input_format=args.format
    )
    return run_stage("ingest", settings, lambda stop: run_ingest(settings, stop), redis=False)
