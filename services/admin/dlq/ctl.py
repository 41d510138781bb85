"""``sluice dlq``: the admin API's DLQ endpoints from the command line.

    sluice dlq list                               records per DLQ, by kind and age
    sluice dlq show NAME [filters] [--limit N]    a page of records (--cursor for the next)
    sluice dlq replay NAME [filters] --dry-run    what a replay would do and cost
    sluice dlq replay NAME [filters] [--replay-id ID] [--rate N] [--max-records N]
                                                  start the replay (a progress bar on a terminal)
    sluice dlq replays [ID]                       replay tasks, or one
    sluice dlq cancel ID                          stop a running replay

Filters: ``--kind`` (repeatable), ``--error-class``, ``--provider``, ``--key``,
``--src-topic``, ``--src-partition``, ``--src-offset-min|max``, ``--since``,
``--until`` (ISO 8601, UTC unless a zone is given), ``--replay-count-min|max``.
A replay without ``--replay-id`` gets a new one (printed); the same id again
gives the same task, never a second replay. On a terminal the command follows
the task with a progress bar until it ends (Ctrl-C stops following, not the
replay: ``sluice dlq cancel ID`` does that).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from typing import Any

from services.admin.client import AdminClient
from services.admin.ctl import _common, _emit
from services.admin.dlq import tables

FILTERS = (
    ("--error-class", str), ("--provider", str), ("--key", str), ("--src-topic", str),
    ("--src-partition", int), ("--src-offset-min", int), ("--src-offset-max", int),
    ("--since", str), ("--until", str), ("--replay-count-min", int), ("--replay-count-max", int),
)  # fmt: skip


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="timeout, error, poison or parked (parked: show only)")
    parser.add_argument("--kind", action="append", help="an error kind (repeat for several)")
    for flag, kind in FILTERS:
        parser.add_argument(flag, type=kind)
    _common(parser)


def _given(args: argparse.Namespace) -> dict[str, Any]:
    names = ["kind", *(flag[2:].replace("-", "_") for flag, _ in FILTERS)]
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sluice dlq", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="action", required=True)
    _common(sub.add_parser("list", help="records per DLQ, by kind and by age"))
    show = sub.add_parser("show", help="a page of a DLQ's records")
    _filters(show)
    show.add_argument("--limit", type=int, default=50, help="records per page (1..500)")
    show.add_argument("--cursor", help="where the previous page stopped")
    replay = sub.add_parser("replay", help="replay records (--dry-run: what it would do)")
    _filters(replay)
    replay.add_argument(
        "--dry-run", action="store_true", help="say what it would do; write nothing"
    )
    replay.add_argument("--max-records", type=int, help="replay at most this many")
    replay.add_argument("--task", help="the task to replay through (default: the config's)")
    replay.add_argument("--replay-id", help="the idempotency key (default: a new one)")
    replay.add_argument("--rate", type=float, help="records/s at most")
    replays = sub.add_parser("replays", help="replay tasks (or one, by id)")
    replays.add_argument("id", nargs="?")
    _common(replays)
    cancel = sub.add_parser("cancel", help="stop a running replay")
    cancel.add_argument("id")
    _common(cancel)
    args = parser.parse_args(argv)
    with AdminClient.from_env(args.url) as api:
        if args.action == "list":
            return _emit(args, api.dlqs(), tables.dlq_records, tables.dlq_table)
        if args.action == "show":
            params = {**_given(args), "limit": args.limit}
            doc = api.dlq_records(
                args.name, params | ({"cursor": args.cursor} if args.cursor else {})
            )
            if hint := tables.next_page(doc):
                print(f"sluice dlq: {hint}", file=sys.stderr)
            return _emit(args, doc, tables.page_records, tables.page_table)
        if args.action == "replays":
            doc = api.replay_task(args.id) if args.id else api.replays()
            return _emit(args, doc, tables.task_records, tables.task_table)
        if args.action == "cancel":
            return _emit(args, api.cancel_replay(args.id), tables.task_records, tables.task_table)
        body = {"dlq": args.name, "dry_run": args.dry_run, **_given(args)}
        for field in ("max_records", "task", "rate"):
            if getattr(args, field) is not None:
                body[field] = getattr(args, field)
        if args.dry_run:
            return _emit(args, api.replay(body), lambda d: [d], tables.dry_run_table)
        return _start(args, api, body)


def _start(args: argparse.Namespace, api: AdminClient, body: dict[str, Any]) -> int:
    """Start the replay; on a terminal, follow it with a progress bar until it ends."""
    follow = sys.stdout.isatty() and not args.json
    total = api.replay({**body, "dry_run": True})["selected"] if follow else 0
    replay_id = args.replay_id or f"r-{uuid.uuid4().hex[:12]}"
    doc = api.replay({**body, "replay_id": replay_id})
    if not follow:
        return _emit(args, doc, tables.task_records, tables.task_table)
    print(f"replay {replay_id} ({total} records): sluice dlq replays {replay_id}")
    try:
        while doc["status"] in ("running", "cancelling"):
            print("\r" + tables.progress_bar(doc, total), end="", flush=True)
            time.sleep(0.5)
            doc = api.replay_task(replay_id)
    except KeyboardInterrupt:
        print(f"\nstopped following; the replay goes on (sluice dlq cancel {replay_id})")
        return 130
    print("\r" + tables.progress_bar(doc, total))
    return _emit(args, doc, tables.task_records, tables.task_table)
