"""What ``sluice dlq list|show|replay`` print on a terminal (pure)."""

from __future__ import annotations

from typing import Any

from services.admin.dlq import tables

DRY: dict[str, Any] = {
    "dry_run": True, "dlq": "error", "topic": "p.dlq.error", "task": "sentiment",
    "provider": "primary", "model": "m", "provider_available": False, "scanned": 15,
    "complete": False, "matched": 15, "by_kind": {"timeout": 15},
    "by_class": {"timeout/deadline": 15}, "replay_cap": 3, "refused_by_cap": 2, "selected": 13,
    "unrenderable": 1, "cache_hits": 6, "repeats": 2, "paid_calls": 4, "input_tokens": 400,
    "output_tokens": 512, "money": {"amount": 0.0025, "input": 0.0004, "output": 0.0021, "note": ""},
    "drain": None,
}  # fmt: skip


def test_a_dry_run_reads_as_one_line_a_figure() -> None:
    text = "\n".join(tables.dry_run_table(DRY))
    assert "sentiment / primary / m (unavailable now)" in text
    assert "15 (budget ran out: partial)" in text
    assert "2 (replayed 3 times already)" in text
    assert "400 in, at most 512 out" in text and "0.0025 (input 0.0004, output 0.0021)" in text
    assert "- (no rate limit configured)" in text
    no_prices = "\n".join(tables.dry_run_table({**DRY, "money": None,
                                                "drain": {"seconds": 61.2, "limited_by": "rpm"}}))  # fmt: skip
    assert "- (no prices configured)" in no_prices and "61 s (paced by rpm)" in no_prices


def test_a_page_shows_previews_cut_and_marks_base64() -> None:
    record = {"partition": 1, "offset": 9, "time": "2023-11-14T22:13:20Z", "kind": "timeout",
              "error_class": None, "provider": None, "replay_count": 0, "source": None,
              "key": {"encoding": "base64", "value": "/w==", "bytes": 1, "truncated": False},
              "value": {"encoding": "utf-8", "value": "x\ny " * 40, "bytes": 160, "truncated": True}}  # fmt: skip
    head, row = tables.page_table({"records": [record], "next_cursor": None})
    assert head.split()[:4] == ["PART", "OFFSET", "TIME", "KIND"]
    assert "base64:/w==" in row and "\n" not in row and row.endswith("…")
    assert tables.next_page({"next_cursor": None}) is None
    assert tables.next_page({"next_cursor": "abc"}) == "more records: --cursor abc"


def test_the_list_names_read_only_and_partial_reads() -> None:
    doc = {"dlqs": [{"name": "parked", "topic": "p.parked", "read_only": True, "size": 9,
                     "scanned": 4, "complete": False, "by_kind": {"outage": 4},
                     "by_age": {"lt_1h": 4}}]}  # fmt: skip
    _head, row = tables.dlq_table(doc)
    assert row.split()[:6] == ["parked", "(read-only)", "p.parked", "9", "4", "(partial)"]
    assert row.endswith("outage 4") and tables.dlq_records(doc) == doc["dlqs"]
