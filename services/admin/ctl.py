"""``sluice providers|lag|audit|blocked``: the admin API from the command line.

    sluice providers list                       every provider's state
    sluice providers pause NAME --reason R      stop new calls fleet-wide
    sluice providers resume NAME                let them start again
    sluice lag [--group G]                      consumer lag per partition
    sluice audit [--limit N]                    audit records, newest first
    sluice blocked list                         keys held by a dead record (block mode)
    sluice blocked release --key K --src-topic T --src-partition N --src-offset O
                                                skip the dead record; the rest follows

An aligned table on a terminal; otherwise, or with ``--json``, one JSON object
a line. ``--url`` or ``SLUICE_ADMIN_URL`` names the admin API,
``SLUICE_ADMIN_TOKEN`` (or ``SLUICE_ADMIN_TOKEN_FILE``) holds the token.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from services.admin import tables
from services.admin.client import DEFAULT_URL, AdminClient

Doc = dict[str, Any]


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    _common(parser)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help=f"the admin API (SLUICE_ADMIN_URL; default {DEFAULT_URL})")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object a line (the default when stdout is not a terminal)")  # fmt: skip


def _emit(args: argparse.Namespace, doc: Doc, records: Callable[[Doc], list[Doc]],
          table: Callable[[Doc], list[str]]) -> int:  # fmt: skip
    as_json = args.json or not sys.stdout.isatty()
    for line in tables.json_lines(records(doc)) if as_json else table(doc):
        print(line)
    return 0


def providers(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sluice providers",
                                     description="Providers' state; pause and resume them.")  # fmt: skip
    sub = parser.add_subparsers(dest="action", required=True)
    _common(sub.add_parser("list", help="every provider's state"))
    pause = sub.add_parser("pause", help="stop new calls to a provider fleet-wide")
    pause.add_argument("name")
    pause.add_argument("--reason", required=True, help="why (kept in the audit log)")
    _common(pause)
    resume = sub.add_parser("resume", help="let calls to a provider start again")
    resume.add_argument("name")
    _common(resume)
    args = parser.parse_args(argv)
    with AdminClient.from_env(args.url) as api:
        if args.action == "list":
            return _emit(args, api.providers(), tables.provider_records, tables.provider_table)
        doc = api.pause(args.name, args.reason) if args.action == "pause" else api.resume(args.name)
        return _emit(args, doc, lambda d: [d], tables.pause_table)


def lag(argv: list[str]) -> int:
    parser = _parser("sluice lag", "Consumer lag of the pipeline's groups, per partition.")
    parser.add_argument("--group", help="one consumer group of the pipeline")
    args = parser.parse_args(argv)
    with AdminClient.from_env(args.url) as api:
        doc = api.lag(args.group)
    if warning := tables.lag_warning(doc):
        print(f"sluice lag: warning: {warning}", file=sys.stderr)
    return _emit(args, doc, tables.lag_records, tables.lag_table)


def audit(argv: list[str]) -> int:
    parser = _parser("sluice audit", "The admin API's audit records, newest first.")
    parser.add_argument("--limit", type=int, default=50, help="at most this many (1..1000)")
    args = parser.parse_args(argv)
    with AdminClient.from_env(args.url) as api:
        return _emit(args, api.audit(args.limit), tables.audit_records, tables.audit_table)


def dlq(argv: list[str]) -> int:
    """``sluice dlq list|show|replay``: :mod:`services.admin.dlq.ctl`."""
    from services.admin.dlq.ctl import run

    return run(argv)


def blocked(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sluice blocked", description="Keys held by a dead "
                                     "record (the sequencer's block mode); release one.")  # fmt: skip
    sub = parser.add_subparsers(dest="action", required=True)
    _common(sub.add_parser("list", help="every blocked key, the longest blocked first"))
    rel = sub.add_parser("release", help="skip a blocked key's dead record; the key's later "
                                         "records follow in order (cannot be undone)")  # fmt: skip
    key = rel.add_mutually_exclusive_group(required=True)
    key.add_argument("--key", help="the key as UTF-8 text")
    key.add_argument("--key-b64", help="the key's bytes in base64, for any key (as listed)")
    rel.add_argument("--src-topic", required=True, help="the dead record's source topic")
    rel.add_argument("--src-partition", type=int, required=True, help="its source partition")
    rel.add_argument("--src-offset", type=int, required=True, help="its source offset")
    _common(rel)
    args = parser.parse_args(argv)
    with AdminClient.from_env(args.url) as api:
        if args.action == "list":
            return _emit(args, api.blocked(), tables.blocked_records, tables.blocked_table)
        named = {"key": args.key} if args.key is not None else {"key_b64": args.key_b64}
        doc = api.release({**named, "src_topic": args.src_topic,
                           "src_partition": args.src_partition, "src_offset": args.src_offset})  # fmt: skip
        return _emit(args, doc, lambda d: [d], tables.release_table)
