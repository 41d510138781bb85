"""The digest a stuck fleet test puts into its failure message."""

from __future__ import annotations

import json

from devtools.fleet.digest import lag_lines, llm_line, log_warnings

METRICS = """\
# HELP sluice_consumer_lag Records behind
# TYPE sluice_consumer_lag gauge
sluice_consumer_lag{group="p.enrich",partition="0",topic="p.work"} 5.0
sluice_consumer_lag{group="p.enrich",partition="1",topic="p.work"} 7.0
sluice_consumer_lag{group="p.enrich",partition="0",topic="p.retry.1s"} 0.0
sluice_consumer_lag{group="p.router",partition="0",topic="p.results"} 2.0
sluice_records_skipped_total{reason="revoked"} 3.0
"""


def test_lag_is_summed_per_group_and_topic_and_caught_up_topics_are_left_out() -> None:
    assert lag_lines(METRICS) == ["p.enrich p.work: 12", "p.router p.results: 2"]


def test_llm_line_says_how_long_ago_fakellm_last_answered() -> None:
    stats = {"requests_total": 40, "last_request_at": 1000.0, "requests_last_60s": 0,
             "responses_by_status": {"200": 38, "503": 2}}  # fmt: skip
    line = llm_line(stats, now=1090.0)
    assert "40 requests" in line and "last 90s ago" in line and '"503": 2' in line
    assert "last never" in llm_line({"requests_total": 0}, now=5.0)


def test_log_warnings_keeps_the_last_warnings_and_errors_of_json_and_text_logs() -> None:
    lines = [
        json.dumps({"ts": "t1", "level": "info", "logger": "a", "msg": "started"}),
        json.dumps({"ts": "t2", "level": "warning", "logger": "a", "msg": "slow"}),
        json.dumps({"ts": "t3", "level": "error", "logger": "b", "msg": "broken"}),
        "Traceback ERROR in plain text",
        json.dumps({"ts": "t4", "level": "info", "logger": "a", "msg": "an ERROR word at info"}),
    ]
    assert log_warnings(lines, keep=2) == ["t3 error b: broken", "Traceback ERROR in plain text"]
    assert log_warnings(lines, keep=5)[0] == "t2 warning a: slow"
