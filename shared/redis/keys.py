"""Redis key names (pure). Every key is scoped by pipeline and provider.

sluice:{P}:provider:{name}:paused        "1" while an operator paused it
sluice:{P}:provider:{name}:pause         hash: by, reason, since_ms of that pause (admin)
sluice:{P}:provider:{name}:cooldown      ms timestamp (Redis TIME) until which no call may start
sluice:{P}:provider:{name}:breaker       hash: state (closed|open|half_open), opened_ms, ...
sluice:{P}:provider:{name}:window        hash: breaker's rolling counts
sluice:{P}:provider:{name}:bucket:{dim}  hash: token bucket (dim = rpm[:model] | tpm[:model]):
                                         l level, t its time (us), a the latest appointment
                                         given to a waiting pump (us, Redis TIME)
sluice:{P}:provider:{name}:inflight:{worker}  in-flight count of one worker (TTL heartbeat)
sluice:{P}:provider:{name}:settled:{id}  "1": reservation {id} was reconciled or refunded (TTL)
sluice:{P}:provider:{name}:calls:{sec}   hash: the fleet's calls that ended in second {sec}
                                         (Redis TIME): counts + latency histogram (TTL)
sluice:{P}:cache:{sha256}                 cached LLM answer (TTL)
"""

from __future__ import annotations


def provider(pipeline: str, name: str, what: str) -> str:
    return f"sluice:{pipeline}:provider:{name}:{what}"


def paused(pipeline: str, name: str) -> str:
    return provider(pipeline, name, "paused")


def pause_info(pipeline: str, name: str) -> str:
    return provider(pipeline, name, "pause")


def calls_prefix(pipeline: str, name: str) -> str:
    """A second's call statistics are at this prefix + the second (Redis TIME)."""
    return provider(pipeline, name, "calls:")


def calls(pipeline: str, name: str, second: int) -> str:
    return calls_prefix(pipeline, name) + str(second)


def cooldown(pipeline: str, name: str) -> str:
    return provider(pipeline, name, "cooldown")


def breaker(pipeline: str, name: str) -> str:
    return provider(pipeline, name, "breaker")


def window(pipeline: str, name: str) -> str:
    return provider(pipeline, name, "window")


def bucket(pipeline: str, name: str, dim: str) -> str:
    return provider(pipeline, name, f"bucket:{dim}")


def settled(pipeline: str, name: str, reservation_id: str) -> str:
    return provider(pipeline, name, f"settled:{reservation_id}")


def inflight(pipeline: str, name: str, worker: str) -> str:
    return provider(pipeline, name, f"inflight:{worker}")


def inflight_prefix(pipeline: str, name: str) -> str:
    """Every worker's in-flight key is this prefix + the worker id."""
    return inflight(pipeline, name, "")


def glob_escape(s: str) -> str:
    """``s`` matched literally by a Redis glob pattern (SCAN MATCH, KEYS)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in s)


def inflight_pattern(pipeline: str, name: str) -> str:
    return glob_escape(inflight_prefix(pipeline, name)) + "*"


def cache(pipeline: str, digest: str) -> str:
    return f"sluice:{pipeline}:cache:{digest}"
