"""``sluice admin``: the admin API (providers, audit log, health) on one port.

Needs the operator token (``SLUICE_ADMIN_TOKEN`` or ``SLUICE_ADMIN_TOKEN_FILE``);
``--insecure-dev`` runs without any token, on loopback only, for local
development. Listens on ``SLUICE_ADMIN_HOST:SLUICE_ADMIN_PORT``
(127.0.0.1:8700), or ``--host``/``--port``.
"""

from __future__ import annotations

import argparse
import logging

from services.admin.app import create_app
from services.admin.server import run as serve
from services.admin.settings import AdminSettings
from shared.kafka.shutdown import StopFlag
from shared.kafka.startup import check_props
from shared.settings import load_with_flags

log = logging.getLogger(__name__)


def port_number(text: str) -> int:
    """An argparse type: a TCP port (0..65535)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {value}")
    return value


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sluice admin", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--host", help="overrides SLUICE_ADMIN_HOST (default 127.0.0.1)")
    parser.add_argument("--port", type=port_number, help="overrides SLUICE_ADMIN_PORT (8700)")
    parser.add_argument("--insecure-dev", action="store_true",
                        help="no authentication at all (no token may be set); loopback only")  # fmt: skip
    args = parser.parse_args(argv)
    settings = load_with_flags(AdminSettings, admin_host=args.host, admin_port=args.port)
    check_props(settings.kafka_props)
    app = create_app(settings, insecure_dev=args.insecure_dev)
    if args.insecure_dev:
        log.warning("--insecure-dev: NO AUTHENTICATION, anyone who can reach %s:%d may pause "
                    "providers; development only (loopback only)", settings.admin_host,
                    settings.admin_port)  # fmt: skip
    serve(app, settings.admin_host, settings.admin_port,
          StopFlag(settings.shutdown_grace_s).install("sluice admin"))  # fmt: skip
    return 0
