"""The Burrow-style lag status of one partition (pure)."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from services.admin.lag.status import Sample, Status, evaluate, in_window

W = 10.0  # window, seconds


def series(
    rows: list[tuple[int | None, int]], *, owned: bool = True, step: float = 2.0
) -> list[Sample]:
    """Samples ``step`` seconds apart from t=0: (committed, end) per row."""
    return [Sample(i * step, c, e, owned) for i, (c, e) in enumerate(rows)]


def at_end(samples: list[Sample]) -> Status:
    return evaluate(samples, samples[-1].at, W)


# -- each state ------------------------------------------------------------
def test_no_samples_is_unknown_and_no_commit_is_no_commits() -> None:
    assert evaluate([], 0.0, W) is Status.UNKNOWN
    assert at_end(series([(None, 0)])) is Status.NO_COMMITS
    assert at_end(series([(None, 50)] * 8)) is Status.NO_COMMITS
    # offsets deleted after commits: judged by the latest sample
    assert at_end(series([(5, 10)] * 7 + [(None, 10)])) is Status.NO_COMMITS


def test_zero_lag_now_is_ok_whatever_came_before() -> None:
    assert at_end(series([(10, 10)])) is Status.OK
    assert at_end(series([(3, 10)] * 7 + [(10, 10)], owned=False)) is Status.OK
    # committed past the end (a recreated topic): no lag
    assert at_end(series([(12, 10)] * 7)) is Status.OK


def test_only_markers_between_committed_and_end_is_no_lag() -> None:
    # a read_committed consumer that read everything commits the commit marker's offset
    drained = [Sample(i * 2.0, 10, 11, owned=False, drained=True) for i in range(8)]
    assert drained[-1].lag == 0
    assert at_end(drained) is Status.OK


def test_stopped_unmoved_for_the_window_and_nobody_owns_it() -> None:
    assert at_end(series([(5, 20)] * 6, owned=False)) is Status.STOPPED
    # records arrived after the consumer left: caught up in the window, still stopped
    assert at_end(series([(20, 20)] * 3 + [(20, 30)] * 3, owned=False)) is Status.STOPPED


def test_unmoved_with_a_live_owner_is_stalled_not_stopped() -> None:
    assert at_end(series([(5, 20)] * 6, owned=True)) is Status.STALLED
    assert at_end(series([(5, 20), (5, 25), (5, 25), (5, 40), (5, 41), (5, 60)])) is Status.STALLED


def test_stalled_needs_lag_throughout_the_window() -> None:
    # lag was zero at t=2 (inside the 10 s window ending at t=10): ok, not stalled
    assert at_end(series([(5, 5), (5, 5), (5, 9), (5, 9), (5, 9), (5, 9)])) is Status.OK
    # ... and once that sample left the window (anchor at t=2 had lag 0; later ones not)
    s = series([(5, 5), (5, 9), (5, 9), (5, 9), (5, 9), (5, 9), (5, 9)])
    assert at_end(s) is Status.STALLED


def test_growing_when_lag_never_falls_and_ends_higher() -> None:
    assert at_end(series([(0, 10), (2, 20), (4, 24), (6, 26), (8, 38), (9, 40)])) is Status.GROWING
    # level steps count (never falls), as long as it ends higher
    assert at_end(series([(0, 10), (2, 20), (4, 22), (6, 24), (8, 26), (9, 30)])) is Status.GROWING


def test_not_growing_when_lag_falls_once_or_is_flat() -> None:
    falls = series([(0, 10), (2, 20), (14, 24), (16, 36), (18, 48), (20, 60)])
    assert at_end(falls) is Status.OK
    flat = series([(0, 10), (10, 20), (20, 30), (30, 40), (40, 50), (50, 60)])
    assert at_end(flat) is Status.OK
    catching_up = series([(0, 60), (20, 70), (40, 75), (55, 80), (65, 84), (75, 85)])
    assert at_end(catching_up) is Status.OK


def test_an_unfull_window_is_unknown_unless_lag_was_zero() -> None:
    short = series([(5, 20)] * 3, owned=False)  # 4 s of a 10 s window
    assert at_end(short) is Status.UNKNOWN
    assert at_end(series([(0, 0), (0, 5), (0, 9)])) is Status.OK
    # growing-looking but only 4 s of samples: not judged
    assert at_end(series([(0, 10), (2, 20), (4, 30)])) is Status.UNKNOWN


def test_the_window_starts_at_the_first_commit() -> None:
    rows: list[tuple[int | None, int]] = [(None, 20)] * 5 + [(5, 20)] * 3
    assert at_end(series(rows, owned=False)) is Status.UNKNOWN  # committed 4 s ago
    rows += [(5, 20)] * 3  # now 10 s of commits
    assert at_end(series(rows, owned=False)) is Status.STOPPED


def test_the_clock_decides_fullness_not_the_sample_count() -> None:
    s = series([(5, 20)] * 3, owned=False)  # t = 0, 2, 4
    assert evaluate(s, 9.9, W) is Status.UNKNOWN
    assert evaluate(s, 10.0, W) is Status.STOPPED


def test_in_window_keeps_the_anchor_and_later() -> None:
    s = series([(i, 100) for i in range(10)])  # t = 0..18
    kept = in_window(s, 18.0, W)
    assert [x.at for x in kept] == [8.0, 10.0, 12.0, 14.0, 16.0, 18.0]
    assert in_window(s, 5.0, 100.0) == s


# -- properties ------------------------------------------------------------
@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Sample], float, float]:
    n = draw(st.integers(1, 12))
    t = draw(st.integers(-4_000_000, 4_000_000)) / 4  # quarter seconds: exact in binary
    committed: int | None = draw(st.one_of(st.none(), st.integers(0, 50)))
    end = draw(st.integers(0, 50))
    owned = draw(st.booleans())
    out: list[Sample] = []
    for _ in range(n):
        t += draw(st.integers(1, 20)) / 4
        end += draw(st.integers(0, 6))
        step = draw(st.sampled_from(["keep", "keep", "advance", "none"]))
        if step == "advance":
            committed = min(end, (committed or 0) + draw(st.integers(0, 8)))
        elif step == "none":
            committed = None if draw(st.booleans()) else draw(st.integers(0, end))
        owned = draw(st.booleans()) if draw(st.integers(0, 4)) == 0 else owned
        out.append(Sample(t, committed, end, owned, drained=draw(st.integers(0, 9)) == 0))
    now = t + draw(st.integers(0, 32)) / 4
    return out, now, draw(st.sampled_from([1.0, 3.0, 10.0, 30.0]))


@given(histories())
def test_evaluating_the_window_is_evaluating_everything(
    h: tuple[list[Sample], float, float],
) -> None:
    samples, now, window = h
    assert evaluate(in_window(samples, now, window), now, window) is evaluate(samples, now, window)


@given(histories(), st.integers(-100_000, 100_000))
def test_only_time_differences_matter(h: tuple[list[Sample], float, float], shift: int) -> None:
    samples, now, window = h
    moved = [Sample(s.at + shift, s.committed, s.end, s.owned, s.drained) for s in samples]
    assert evaluate(moved, now + shift, window) is evaluate(samples, now, window)


@given(histories())
def test_trouble_states_mean_what_they_say(h: tuple[list[Sample], float, float]) -> None:
    samples, now, window = h
    status = evaluate(samples, now, window)
    latest = samples[-1]
    if latest.committed is None:
        assert status is Status.NO_COMMITS
        return
    if latest.lag == 0:
        assert status is Status.OK
        return
    kept = in_window(samples, now, window)
    if status in (Status.STOPPED, Status.STALLED, Status.GROWING):
        assert kept[0].at <= now - window  # a full window
        assert all(s.committed is not None for s in kept)
    if status is Status.UNKNOWN:  # judged: the samples since the last one without a commit
        nones = [i for i, s in enumerate(kept) if s.committed is None]
        judged = kept[nones[-1] + 1 :] if nones else kept
        assert judged[0].at > now - window
        assert not any(s.lag == 0 for s in judged)
    if status in (Status.STOPPED, Status.STALLED):
        assert {s.committed for s in kept} == {latest.committed}
        assert latest.owned is (status is Status.STALLED)
    if status in (Status.STALLED, Status.GROWING):
        assert all((s.lag or 0) > 0 for s in kept)
    if status is Status.GROWING:
        lags = [s.lag or 0 for s in kept]
        assert lags[-1] > lags[0]
        assert all(b >= a for a, b in pairwise(lags))
        assert len({s.committed for s in kept}) > 1
