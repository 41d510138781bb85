"""The admin service of ``sluice dev``: its token, its environment, what ``up`` prints.

The dev stack's admin asks for a token like a deployed one (``--insecure-dev``
would let anyone on the machine pause providers, and would not show what
operators see): ``up`` makes a new operator token, keeps it in a file only its
owner can read (``SLUICE_ADMIN_TOKEN_FILE`` for the admin and for the CLI) and
prints it once; ``down`` removes the file. All but :func:`write_token` is pure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

TOKEN_VARS = (
    "SLUICE_ADMIN_TOKEN",
    "SLUICE_ADMIN_TOKEN_FILE",
    "SLUICE_ADMIN_VIEWER_TOKEN",
    "SLUICE_ADMIN_VIEWER_TOKEN_FILE",
)
"""The caller's own admin tokens: never handed to the dev stack's admin."""


def write_token(path: Path) -> str:
    """A new operator token, written to ``path`` (mode 600, replacing an old one)."""
    token = secrets.token_hex(24)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token


def admin_env(environ: Mapping[str, str], stack: Mapping[str, str],
              token_file: Path) -> dict[str, str]:  # fmt: skip
    """The admin's environment: the caller's, minus its tokens and Kafka settings (the dev
    stack's broker is plain), plus the stack's addresses (``stack``) and the token file."""
    kept = {k: v for k, v in environ.items()
            if k not in TOKEN_VARS and not k.startswith("SLUICE_KAFKA_")}  # fmt: skip
    return {**kept, **stack, "SLUICE_ADMIN_TOKEN_FILE": str(token_file)}


def exports(addresses: Mapping[str, str]) -> str:
    """The ``export`` line for a shell: every variable the stack's clients need."""
    return "export " + " ".join(f"{k}={v}" for k, v in addresses.items())


def token_notice(token: str | None, token_file: str) -> list[str]:
    """What ``up`` prints about the admin token: the token itself only when it is new."""
    if token is None:
        return [f"admin token: in {token_file} (printed when the stack started)"]
    return [
        f"admin operator token (printed only now; kept in {token_file} until `sluice dev down`):",
        f"  {token}",
        "with the exports above:",
        "  sluice topics create     # the pipeline's topics (the admin's audit log needs P.audit)",
        "  sluice providers list",
        '  curl -H "Authorization: Bearer $(cat $SLUICE_ADMIN_TOKEN_FILE)" '
        "$SLUICE_ADMIN_URL/v1/providers",
    ]
