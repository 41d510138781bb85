"""What ``sluice dlq list|show|replay`` print, from the admin API's JSON (pure).

As in :mod:`services.admin.tables`: ``*_records`` give the JSON objects of
``--json`` (one a line), ``*_table`` the rows a terminal gets.
"""

from __future__ import annotations

import json
from typing import Any

from services.admin.tables import table

Doc = dict[str, Any]

DLQ_HEAD = ("DLQ", "TOPIC", "SIZE", "READ", "<1H", "1H-1D", "1D-7D", ">=7D", "BY KIND")
RECORD_HEAD = ("PART", "OFFSET", "TIME", "KIND", "CLASS", "PROVIDER", "REPLAYS", "SOURCE",
               "KEY", "VALUE")  # fmt: skip
SHOWN_CHARS = 40


def _cut(text: str, width: int = SHOWN_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _bytes(preview: Doc | None) -> str:
    if preview is None:
        return "-"
    shown = _cut(str(preview["value"]))
    return f"base64:{shown}" if preview["encoding"] == "base64" else shown


def dlq_records(doc: Doc) -> list[Doc]:
    return list(doc["dlqs"])


def dlq_table(doc: Doc) -> list[str]:
    rows = []
    for d in dlq_records(doc):
        read = str(d["scanned"]) + ("" if d["complete"] else " (partial)")
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(d["by_kind"].items())) or "-"
        name = d["name"] + (" (read-only)" if d["read_only"] else "")
        rows.append((name, d["topic"], str(d["size"]), read,
                     *(str(d["by_age"].get(b, 0)) for b in ("lt_1h", "1h_1d", "1d_7d", "ge_7d")),
                     kinds))  # fmt: skip
    return table(DLQ_HEAD, rows)


def page_records(doc: Doc) -> list[Doc]:
    return list(doc["records"])


def page_table(doc: Doc) -> list[str]:
    rows = []
    for r in page_records(doc):
        src = r["source"]
        rows.append((str(r["partition"]), str(r["offset"]), r["time"], r["kind"],
                     r["error_class"] or "-", r["provider"] or "-", str(r["replay_count"]),
                     f"{src['topic']}/{src['partition']}@{src['offset']}" if src else "-",
                     _bytes(r["key"]), _bytes(r["value"])))  # fmt: skip
    return table(RECORD_HEAD, rows)


def next_page(doc: Doc) -> str | None:
    """The hint for the next page, or None at the end."""
    return f"more records: --cursor {doc['next_cursor']}" if doc.get("next_cursor") else None


def dry_run_table(doc: Doc) -> list[str]:
    """A dry run's answer: one line a figure."""
    money, drain = doc.get("money"), doc.get("drain")
    rows = [
        ("dlq", f"{doc['dlq']} ({doc['topic']})"),
        ("task / provider / model", f"{doc['task']} / {doc['provider']} / {doc['model']}"
                                    + ("" if doc["provider_available"] else " (unavailable now)")),
        ("records read", str(doc["scanned"]) + ("" if doc["complete"] else " (budget ran out: partial)")),
        ("matched", str(doc["matched"])),
        ("  by kind/class", json.dumps(doc["by_class"], separators=(", ", ": ")) if doc["by_class"] else "-"),
        ("refused by the cap", f"{doc['refused_by_cap']} (replayed {doc['replay_cap']} times already)"),
        ("would replay", str(doc["selected"])),
        ("  fail before a call", str(doc["unrenderable"])),
        ("  cache hits", str(doc["cache_hits"])),
        ("  repeats of a paid request", str(doc["repeats"])),
        ("  paid calls", str(doc["paid_calls"])),
        ("tokens (estimate)", f"{doc['input_tokens']} in, at most {doc['output_tokens']} out"),
        ("money (estimate)", f"{money['amount']:.4f} (input {money['input']:.4f}, output "
                             f"{money['output']:.4f})" if money else "- (no prices configured)"),
        ("time to drain", f"{drain['seconds']:.0f} s (paced by {drain['limited_by']})"
                          if drain else "- (no rate limit configured)"),
    ]  # fmt: skip
    return table(("DRY RUN", ""), rows)
