import pytest

from shared.watermark import Watermarks

TP = ("t", 0)


def test_nothing_committable_until_the_first_offset_finishes() -> None:
    w = Watermarks()
    for o in (5, 6, 7):
        w.track(TP, o)
    w.finish(TP, 7)
    w.finish(TP, 6)
    assert w.committable(TP) is None
    w.finish(TP, 5)
    assert w.committable(TP) == 8
    assert w.in_flight(TP) == 0


def test_out_of_order_completion_commits_only_the_finished_prefix() -> None:
    w = Watermarks()
    for o in range(10):
        w.track(TP, o)
    for o in (0, 1, 3, 4, 9):
        w.finish(TP, o)
    assert w.committable(TP) == 2
    w.finish(TP, 2)
    assert w.committable(TP) == 5
    assert w.in_flight(TP) == 4


def test_partitions_are_independent_and_forget_drops_one() -> None:
    w = Watermarks()
    w.track(("t", 0), 1)
    w.track(("t", 1), 1)
    w.finish(("t", 1), 1)
    assert w.committable(("t", 0)) is None
    assert w.committable(("t", 1)) == 2
    w.forget(("t", 0))
    assert w.partitions() == [("t", 1)]
    with pytest.raises(ValueError):
        w.finish(("t", 0), 1)


def test_offsets_must_increase_and_finish_only_once() -> None:
    w = Watermarks()
    w.track(TP, 3)
    with pytest.raises(ValueError):
        w.track(TP, 3)
    w.finish(TP, 3)
    with pytest.raises(ValueError):
        w.finish(TP, 3)
