"""Who may use ``/_control/*`` (pure).

The control endpoints change what the fake answers (faults, outages, limits),
so they are not for anyone who can reach the port:

    control token configured   client                    answer
    ------------------------   -----------------------   ---------------------------------
    no                         loopback (127.0.0.0/8,    allowed
                               ::1, ::ffff:127.x)
    no                         anything else             403 {"detail": "... loopback ..."}
    yes                        any, with                 allowed
                               ``Authorization: Bearer <token>``
    yes                        any, without it or wrong  401 {"detail": "..."}, WWW-Authenticate

The token is compared with :func:`hmac.compare_digest` and never appears in
an answer or a log line.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class Refusal:
    status: int
    detail: str


def is_loopback(host: str | None) -> bool:
    """True for a loopback IP address (IPv4, IPv6, IPv4-mapped); False for anything else."""
    if not host:
        return False
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def control_refusal(
    client_host: str | None, token: str | None, authorization: str | None
) -> Refusal | None:
    """None when the control request may go on; else why not (see the table above)."""
    if token:
        presented = bearer(authorization)
        if presented is not None and hmac.compare_digest(presented.encode(), token.encode()):
            return None
        return Refusal(401, "control endpoints need 'Authorization: Bearer <control token>'")
    if is_loopback(client_host):
        return None
    return Refusal(
        403,
        "control endpoints answer loopback clients only; start fakellm with "
        "--control-token (SLUICE_FAKELLM_CONTROL_TOKEN) to allow others with a bearer token",
    )
