"""Support tickets for runs of the whole pipeline: many keys, skewed, a little poison."""

from __future__ import annotations

import bisect
import itertools
import json
import random

TEXTS = (
    "I was charged twice for my invoice, please refund the extra payment",
    "Great support, the login issue is fixed. Thanks a lot!",
    "The package arrived late and the box was damaged",
    "The app crashes every time I open settings, looks like a bug",
    "How do I change my shipping address for the next order?",
    "Password reset email never arrives, I cannot log in",
    "Love the new dashboard, works perfectly",
)
POISON = (b"{this is not json", b"[1, 2, 3]", b"\xff\xfe binary junk")


def tickets(n: int, keys: int, seed: int = 7, poison: float = 0.005) -> list[tuple[bytes, bytes]]:
    """``n`` (key, value) pairs: Zipf-skewed customers (customer ``k`` writes in
    proportion to ``1/(k+1)``: with 500 keys the busiest writes ~15% of all tickets),
    distinct texts (no two prompts alike, so no cache hits), and a ``poison`` share
    of values that are not JSON objects."""
    rnd = random.Random(seed)
    cum = list(itertools.accumulate(1.0 / (k + 1) for k in range(keys)))
    out = []
    for i in range(n):
        cust = bisect.bisect_left(cum, rnd.random() * cum[-1])
        key = f"customer-{cust}".encode()
        if rnd.random() < poison:
            out.append((key, rnd.choice(POISON)))
        else:
            text = f"{rnd.choice(TEXTS)} (order {rnd.randrange(10**6):06d})"
            doc = {"ticket_id": i, "customer": key.decode(), "text": text}
            out.append((key, json.dumps(doc).encode()))
    return out
