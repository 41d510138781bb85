import random
from collections import Counter

import pytest

from services.fakellm.config import FaultMix
from services.fakellm.faults import Fault, UnknownFault, draw_fault, forced_fault, marker_times


def test_forced_by_header_or_marker_header_wins() -> None:
    assert forced_fault("http_502", "") is Fault.HTTP_502
    assert forced_fault(None, "hello [[fault:hang]] there") is Fault.HANG
    assert forced_fault(" HTTP_529 ", "[[fault:hang]]") is Fault.HTTP_529
    assert forced_fault(None, "nothing forced") is None
    assert forced_fault("", "nothing forced") is None


@pytest.mark.parametrize("name", [f.value for f in Fault])
def test_every_fault_name_can_be_forced(name: str) -> None:
    assert forced_fault(None, f"[[fault:{name}]]") == Fault(name)
    assert forced_fault(name, "") == Fault(name)


def test_unknown_fault_names_the_known_ones() -> None:
    with pytest.raises(UnknownFault, match="known faults: hang"):
        forced_fault("explode", "")
    with pytest.raises(UnknownFault):
        forced_fault(None, "[[fault:nope]]")


def test_empty_mix_never_faults() -> None:
    rng = random.Random(1)
    assert all(draw_fault(FaultMix(), rng) is None for _ in range(1000))


def test_certain_fault_always_drawn() -> None:
    rng = random.Random(1)
    assert {draw_fault(FaultMix(http_503=1.0), rng) for _ in range(100)} == {Fault.HTTP_503}


def test_draws_follow_the_probabilities_and_repeat_with_a_seed() -> None:
    mix = FaultMix(hang=0.1, http_500=0.2, invalid_json=0.3)
    first = [draw_fault(mix, random.Random(42)) for _ in range(1)]
    rng_a, rng_b = random.Random(7), random.Random(7)
    seq_a = [draw_fault(mix, rng_a) for _ in range(20_000)]
    seq_b = [draw_fault(mix, rng_b) for _ in range(20_000)]
    assert seq_a == seq_b
    counts = Counter(seq_a)
    assert counts[Fault.HANG] / 20_000 == pytest.approx(0.1, abs=0.01)
    assert counts[Fault.HTTP_500] / 20_000 == pytest.approx(0.2, abs=0.015)
    assert counts[Fault.INVALID_JSON] / 20_000 == pytest.approx(0.3, abs=0.015)
    assert counts[None] / 20_000 == pytest.approx(0.4, abs=0.015)
    assert first == [draw_fault(mix, random.Random(42))]


def test_a_counted_marker_forces_its_fault_on_the_first_n_requests_only() -> None:
    text = "refund me [[fault:bad_request:2]]"
    assert [forced_fault(None, text, earlier) for earlier in range(4)] == [
        Fault.BAD_REQUEST, Fault.BAD_REQUEST, None, None]  # fmt: skip
    assert marker_times(text) == 2 and marker_times("[[fault:hang]]") is None
    assert forced_fault(None, "[[fault:hang:0]]") is None
    assert forced_fault("http_500", text, 5) is Fault.HTTP_500  # the header always wins
    with pytest.raises(UnknownFault, match="whole number"):
        forced_fault(None, "[[fault:hang:twice]]")
    with pytest.raises(UnknownFault, match="known faults"):
        forced_fault(None, "[[fault:nope:1]]")
