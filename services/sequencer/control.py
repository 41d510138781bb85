"""Operator control of the sequencer: list blocked keys, release one (``sluice sequencer ...``).

A release is a ``P.results`` record keyed by the blocked record's key, with its
``sluice.src.*`` headers and ``sluice.outcome=release``. It goes through the
sequencer's transactions like any outcome, so it is durable across restarts,
and it is idempotent: releasing a record that is not blocked changes nothing.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from confluent_kafka import Producer

from services.sequencer.blocked import BlockedKey, read_blocked, release_record
from shared import headers as h
from shared.errors import DeliveryError
from shared.kafka.config import producer_config
from shared.settings import CommonSettings, load
from shared.topics import Topics


def blocked_json(b: BlockedKey) -> dict[str, Any]:
    doc = asdict(b)
    doc["key"] = b.key.decode("utf-8", "backslashreplace")
    return doc


def send_release(settings: CommonSettings, key: bytes, ident: h.SourceId) -> None:
    k, v, hs = release_record(key, ident)
    p = Producer(producer_config(settings))
    errors: list[str] = []
    p.produce(Topics(settings.pipeline).results, v, k, headers=hs,  # type: ignore[arg-type]
              on_delivery=lambda err, _m: errors.append(str(err)) if err else None)  # fmt: skip
    left = p.flush(30)
    if left or errors:
        raise DeliveryError(f"release not delivered: {errors[0] if errors else 'timed out'}")


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sluice sequencer", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("blocked", help="list keys held by a dead record (block mode), oldest first")
    rel = sub.add_parser("release", help="move a blocked key past its dead record")
    rel.add_argument("--key", required=True, help="the record's key (UTF-8)")
    rel.add_argument("--src-topic", required=True)
    rel.add_argument("--src-partition", type=int, required=True)
    rel.add_argument("--src-offset", type=int, required=True)
    args = parser.parse_args(argv)
    settings = load(CommonSettings)
    if args.cmd == "blocked":
        for b in read_blocked(settings):
            print(json.dumps(blocked_json(b)))
        return 0
    if args.src_partition < 0 or args.src_offset < 0:
        parser.error("--src-partition and --src-offset must be >= 0")
    ident = h.SourceId(args.src_topic, args.src_partition, args.src_offset)
    send_release(settings, args.key.encode(), ident)
    print(json.dumps({"released": {"key": args.key, "src_topic": ident.topic,
                                   "src_partition": ident.partition, "src_offset": ident.offset}}))  # fmt: skip
    return 0
