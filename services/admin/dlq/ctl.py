"""``sluice dlq``: the admin API's DLQ endpoints from the command line.

    sluice dlq list                               records per DLQ, by kind and age
    sluice dlq show NAME [filters] [--limit N]    a page of records (--cursor for the next)
    sluice dlq replay NAME [filters] --dry-run    what a replay would do and cost

Filters: ``--kind`` (repeatable), ``--error-class``, ``--provider``, ``--key``,
``--src-topic``, ``--src-partition``, ``--src-offset-min|max``, ``--since``,
``--until`` (ISO 8601, UTC unless a zone is given), ``--replay-count-min|max``.
Without ``--dry-run`` the server refuses a replay: only dry runs are
available in this release.
"""

from __future__ import annotations

import argparse
import sys
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
    replay = sub.add_parser("replay", help="what a replay would do (--dry-run)")
    _filters(replay)
    replay.add_argument(
        "--dry-run", action="store_true", help="say what it would do; write nothing"
    )
    replay.add_argument("--max-records", type=int, help="replay at most this many")
    replay.add_argument("--task", help="the task to replay through (default: the config's)")
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
        body = {"dlq": args.name, "dry_run": args.dry_run, **_given(args)}
        for field in ("max_records", "task"):
            if getattr(args, field) is not None:
                body[field] = getattr(args, field)
        return _emit(args, api.replay(body), lambda d: [d], tables.dry_run_table)
