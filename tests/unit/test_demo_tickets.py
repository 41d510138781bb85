"""``sluice tickets`` paces its records: the pure part of the demo's producer."""

from __future__ import annotations

from devtools.runs.produce import due


def test_a_paced_producer_sends_rate_times_elapsed_and_never_more_than_all() -> None:
    assert due(0.0, 50.0, 1000) == 0
    assert due(0.5, 50.0, 1000) == 25
    assert due(2.0, 50.0, 1000) == 100
    assert due(60.0, 50.0, 1000) == 1000
