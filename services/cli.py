"""The ``sluice`` command: run a service, provision topics, drive the local stack.

    sluice ingest | enrich | router | sequencer | admin | fakellm    run one service
    sluice providers list | pause | resume   providers over the admin API
    sluice lag | audit                  consumer lag, audit log over the admin API
    sluice dlq list|show|replay|replays|cancel  DLQs over the admin API
    sluice blocked list | release       blocked keys (block mode) over the admin API
    sluice topics create                provision + validate topics
    sluice dev up | down | status       local stack (Kafka, Redis, fakellm, admin)
    sluice demo                         end-to-end run with live progress and a summary
    sluice tickets                      sample tickets to a running pipeline's source topic
    sluice bench NAME                   benchmarks (ingest, enrich, e2e, http, replay, peers)

Errors that sluice raises on purpose print one line and exit with status 1
(2 for usage errors); no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable

from shared import logs
from shared.errors import ConfigError, SluiceError


def _ingest(argv: list[str]) -> int:
    from services.ingest.main import run

    return run(argv)


def _router(argv: list[str]) -> int:
    from services.router.main import run

    return run(argv)


def _enrich(argv: list[str]) -> int:
    from services.enrich.main import run

    return run(argv)


def _sequencer(argv: list[str]) -> int:
    from services.sequencer.main import run

    return run(argv)


def _admin(argv: list[str]) -> int:
    from services.admin.main import run

    return run(argv)


def _over_the_api(command: str) -> Callable[[list[str]], int]:
    """``sluice providers|lag|audit|dlq``: ``services.admin.ctl.<command>``, imported when run."""

    def run(argv: list[str]) -> int:
        from services.admin import ctl

        code: int = getattr(ctl, command)(argv)
        return code

    return run


def _fakellm(argv: list[str]) -> int:
    from services.fakellm.main import run

    return run(argv)


def _topics(argv: list[str]) -> int:
    from shared.kafka.provision import create_topics, ensure_topic
    from shared.settings import CommonSettings, load

    parser = argparse.ArgumentParser(
        prog="sluice topics", description="Provision and validate the pipeline's topics."
    )
    sub = parser.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create", help="create every topic of the pipeline (idempotent)")
    create.add_argument("--source-topic", help="also check that this source topic exists")
    create.add_argument("--partitions", type=int, help="overrides SLUICE_PARTITIONS")
    create.add_argument("--source-partitions", type=int, metavar="N",
                        help="first create the source topic with N partitions if it is missing")  # fmt: skip
    args = parser.parse_args(argv)
    if args.source_partitions is not None and (args.source_partitions < 1 or not args.source_topic):
        parser.error("--source-partitions needs --source-topic and a count of at least 1")
    overrides = {"partitions": args.partitions} if args.partitions else {}
    settings = load(CommonSettings, **overrides)
    if args.source_partitions is not None:
        ensure_topic(settings, args.source_topic, args.source_partitions)
    result = create_topics(settings, args.source_topic)
    print(json.dumps({"created": result.created, "existing": result.existing}))
    return 0


def _dev_tool(module: str) -> Callable[[list[str]], int]:
    """A command of the development tools (``devtools``, ``bench``), which the runtime
    image leaves out: there it is a one-line error, not a traceback."""

    def command(argv: list[str]) -> int:
        try:
            run: Callable[[list[str]], int] = importlib.import_module(module).run
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.split(".")[0] not in ("devtools", "bench"):
                raise
            raise ConfigError(
                "this command is part of the development tools, which this installation "
                "does not have (the runtime image leaves them out; its `demo` target has them)"
            ) from exc
        return run(argv)

    return command


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "ingest": (_ingest, "run the ingest service"),
    "router": (_router, "run the router: retry ladder, DLQs, parking"),
    "enrich": (_enrich, "run an enrich worker"),
    "sequencer": (_sequencer, "run the sequencer: per-key order, exactly once to P.output"),
    "admin": (_admin, "run the admin API: providers, lag, audit log, health"),
    "providers": (
        _over_the_api("providers"),
        "providers over the admin API: list | pause | resume",
    ),
    "lag": (_over_the_api("lag"), "consumer lag per partition, over the admin API"),
    "audit": (_over_the_api("audit"), "the admin API's audit log, newest first"),
    "dlq": (_over_the_api("dlq"), "DLQs over the admin API: list|show|replay|replays|cancel"),
    "blocked": (_over_the_api("blocked"), "blocked keys over the admin API: list | release"),
    "fakellm": (_fakellm, "run the fake LLM provider"),
    "topics": (_topics, "provision and validate topics"),
    "dev": (_dev_tool("devtools.stack.dev"), "local stack: up | down | status"),
    "demo": (_dev_tool("devtools.demo"), "end-to-end run with live progress and a summary"),
    "tickets": (
        _dev_tool("devtools.runs.produce"),
        "produce sample support tickets to the source topic (demo data)",
    ),
    "bench": (_dev_tool("bench.main"), "benchmarks"),
}


def _usage() -> str:
    lines = ["usage: sluice COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"sluice: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    logs.configure()
    try:
        return COMMANDS[name][0](rest)
    except SluiceError as exc:
        print(f"sluice {name}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
