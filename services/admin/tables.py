"""What ``sluice providers|lag|audit|blocked`` print, from the admin API's JSON (pure).

Each ``*_records`` function gives the JSON objects of ``--json`` (one a line);
each ``*_table`` the rows of the aligned table a terminal gets.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

Row = Sequence[str]

PROVIDER_HEAD = ("PROVIDER", "KIND", "STATE", "BREAKER", "IN_FLIGHT", "WORKERS", "CALLS/S",
                 "ERRORS", "P99_MS", "PAUSED BY / REASON")  # fmt: skip
PAUSE_HEAD = ("PROVIDER", "PAUSED", "CHANGED", "IN_FLIGHT", "PAUSED BY / REASON", "REQUEST_ID")
LAG_HEAD = ("GROUP", "STATE", "TOPIC", "PART", "COMMITTED", "END", "LAG", "LAG_S", "STATUS")
AUDIT_HEAD = ("TIME", "WHO", "ACTION", "TARGET", "PARAMS", "ID")
BLOCKED_HEAD = ("KEY", "PART", "DEAD RECORD", "SINCE", "AGE_S", "WAITING", "ERROR")
RELEASE_HEAD = ("RELEASED KEY", "PART", "DEAD RECORD", "WAITING", "REQUEST_ID")


def json_lines(records: Sequence[dict[str, Any]]) -> list[str]:
    return [json.dumps(r, separators=(",", ":"), sort_keys=False) for r in records]


def table(head: Row, rows: Sequence[Row]) -> list[str]:
    """Columns padded to their widest cell, two spaces apart; no trailing blanks."""
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in (head, *rows)]  # fmt: skip


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _pause(pause: dict[str, Any] | None) -> str:
    return "-" if not pause else f"{pause.get('by', '?')}: {pause.get('reason', '')}"


def provider_records(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return list(doc["providers"])


def provider_table(doc: dict[str, Any]) -> list[str]:
    rows = []
    for p in provider_records(doc):
        minute = p.get("last_minute") or {}
        breaker = p["breaker"]["state"] + (
            f" ({p['breaker']['reason']})" if p["breaker"].get("reason") else ""
        )
        rows.append((p["name"], p["kind"], "paused" if p["paused"] else "running", breaker,
                     _cell(p["in_flight"]), _cell(p["workers"]), _cell(minute.get("calls_per_s")),
                     _cell(minute.get("errors")), _cell(minute.get("p99_ms")),
                     _pause(p.get("pause"))))  # fmt: skip
    return table(PROVIDER_HEAD, rows)


def pause_table(doc: dict[str, Any]) -> list[str]:
    """The answer of a pause or a resume: one row."""
    row = (doc["provider"], _cell(doc["paused"]), _cell(doc["changed"]), _cell(doc["in_flight"]),
           _pause(doc.get("pause")), doc["request_id"])  # fmt: skip
    return table(PAUSE_HEAD, [row])


def lag_records(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One object per partition of each group, with its group's name, stage and state.

    A group without partitions (its topics do not exist yet) still gets one, with
    ``partition`` null and its ``missing_topics``: no group goes unseen.
    """
    out = []
    for g in doc["groups"]:
        group = {"group": g["group"], "stage": g["stage"], "state": g["state"]}
        out += [{**group, **p} for p in g["partitions"]] or [
            {**group, **dict.fromkeys(_PARTITION_KEYS), "missing_topics": g["missing_topics"]}
        ]
    return out


_PARTITION_KEYS = ("topic", "partition", "committed", "end", "lag_records", "lag_seconds", "status")


def lag_table(doc: dict[str, Any]) -> list[str]:
    rows = [(r["group"], r["state"], *(_cell(r[k]) for k in _PARTITION_KEYS))
            for r in lag_records(doc)]  # fmt: skip
    lines = table(LAG_HEAD, rows)
    for g in doc["groups"]:
        if g.get("missing_topics"):
            lines.append(f"{g['group']}: missing topics {', '.join(g['missing_topics'])}")
    return lines


def lag_warning(doc: dict[str, Any]) -> str | None:
    """Why the latest sample failed (the answer then holds the last good one, or nothing)."""
    return f"the latest lag sample failed: {doc['error']}" if doc.get("error") else None


def audit_records(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return list(doc["records"])


def audit_table(doc: dict[str, Any]) -> list[str]:
    rows = [(r["time"], r["who"], r["action"], r["target"],
             json.dumps(r["params"], separators=(",", ":")) if r["params"] else "-", r["id"])
            for r in audit_records(doc)]  # fmt: skip
    return table(AUDIT_HEAD, rows)


def blocked_records(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return list(doc["blocked"])


def _key(b: dict[str, Any]) -> str:
    """The key as text, or ``b64:<base64>`` when it is not UTF-8 (``--key-b64`` takes that)."""
    return b["key"] if b["key"] is not None else f"b64:{b['key_b64']}"


def _head(b: dict[str, Any]) -> str:
    return f"{b['src_topic']}/{b['src_partition']}/{b['src_offset']}"


def blocked_table(doc: dict[str, Any]) -> list[str]:
    rows = [(_key(b), _cell(b["partition"]), _head(b), b["since"], _cell(b["age_s"]),
             _cell(b["waiting"]), f"{_cell(b['error_kind'])}: {_cell(b['error_message'])}")
            for b in blocked_records(doc)]  # fmt: skip
    return table(BLOCKED_HEAD, rows)


def release_table(doc: dict[str, Any]) -> list[str]:
    """The answer of a release: one row."""
    b = doc["released"]
    row = (_key(b), _cell(b["partition"]), _head(b), _cell(b["waiting"]), doc["request_id"])
    return table(RELEASE_HEAD, [row])
