"""A few lines that say where a stuck run stands (pure).

A test that gives up on the fleet writes every service's metrics to a file
(:meth:`devtools.fleet.fleet.Fleet.snapshot`), but a CI log outlives that
file. The digest goes into the failure message instead: the lag of each
consumer group per topic, fakellm's request counters, and the last warnings
and errors of each service's log.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

_LAG = re.compile(
    r'^sluice_consumer_lag\{(?=[^}]*group="(?P<group>[^"]*)")(?=[^}]*topic="(?P<topic>[^"]*)")'
    r"[^}]*\}\s+(?P<value>[-+0-9.eE]+)"
)
_LEVELS = ("WARNING", "ERROR", "CRITICAL")


def lag_lines(metrics_text: str) -> list[str]:
    """``group topic: lag`` for every group and topic with records left to read."""
    total: dict[tuple[str, str], float] = defaultdict(float)
    for line in metrics_text.splitlines():
        m = _LAG.match(line)
        if m:
            total[(m["group"], m["topic"])] += float(m["value"])
    return [f"{g} {t}: {int(v)}" for (g, t), v in sorted(total.items()) if v > 0]


def llm_line(stats: Mapping[str, Any], now: float) -> str:
    """fakellm's totals and how long ago it last answered."""
    last = stats.get("last_request_at")
    ago = f"{now - float(last):.0f}s ago" if last else "never"
    return (
        f"fakellm: {stats.get('requests_total')} requests, last {ago}, "
        f"{stats.get('requests_last_60s')} in the last 60s, "
        f"by status {json.dumps(stats.get('responses_by_status'))}"
    )


def log_warnings(lines: Iterable[str], keep: int) -> list[str]:
    """The last ``keep`` warning-or-worse lines of a service log (JSON lines or text)."""
    found: list[str] = []
    for line in lines:
        line = line.rstrip()
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if isinstance(rec, dict):
            if str(rec.get("level", "")).upper() in _LEVELS:
                where = f"{rec.get('ts', '')} {rec['level']} {rec.get('logger', '')}"
                found.append(f"{where}: {rec.get('msg', '')}"[:300])
        elif any(level in line for level in _LEVELS):
            found.append(line[:300])
    return found[-keep:]
