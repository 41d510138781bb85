from services.enrich.aimd import Aimd


def test_pushback_halves_once_per_cooldown_and_success_climbs_back() -> None:
    a = Aimd(max_limit=64)
    assert a.current == 64
    a.on_pushback(now=10.0)
    a.on_pushback(now=10.5)  # same burst: one signal
    assert a.current == 32
    a.on_pushback(now=11.6)
    assert a.current == 16
    for _ in range(200):
        a.on_success()
    assert 16 < a.current <= 64


def test_never_below_minimum_or_above_maximum() -> None:
    a = Aimd(max_limit=4, min_limit=2)
    for t in range(10):
        a.on_pushback(now=float(t * 2))
    assert a.current == 2
    for _ in range(10_000):
        a.on_success()
    assert a.current == 4
