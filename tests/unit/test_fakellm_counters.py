from services.fakellm.counters import Counters, WindowMax, request_hash


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_window_max_is_exact_for_any_window() -> None:
    w = WindowMax(1.0)
    # 3 at t=0.0..0.2, then 4 at 0.9..1.15: the busiest 1 s window is (0.15, 1.15] with 5
    for t in (0.0, 0.1, 0.2, 0.9, 1.0, 1.1, 1.15):
        w.add(t)
    assert w.max == 5
    assert w.current(1.15) == 5
    assert w.current(2.2) == 0
    assert w.max == 5


def test_window_edges_are_half_open() -> None:
    w = WindowMax(1.0)
    w.add(0.0)
    w.add(1.0)  # exactly 1 s later: the first one has left the window
    assert w.max == 1


def test_counters_count_routes_windows_repeats_and_paid_repeats() -> None:
    clock = FakeClock()
    c = Counters(clock)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    same = request_hash("/r", body)
    for i in range(10):
        clock.t = 1000.0 + i * 0.05
        c.request("/r", same if i < 3 else request_hash("/r", {**body, "n": i}))
    clock.t = 1030.0
    c.request("/other", request_hash("/other", body))
    c.success(same, 5, 7)
    c.success(same, 5, 7)
    c.status(429)
    c.status(200)
    c.fault("hang")
    snap = c.snapshot()
    assert snap["requests_total"] == 11
    assert snap["last_request_at"] == 1030.0  # when the latest request arrived
    assert snap["requests_by_route"] == {"/r": 10, "/other": 1}
    assert snap["max_requests_1s"] == 10
    assert snap["max_requests_60s"] == 11
    assert snap["requests_last_1s"] == 1
    assert snap["repeated_requests"] == 2
    assert snap["repeated_paid_requests"] == 1
    assert snap["rate_limited"] == 1
    assert snap["responses_by_status"] == {"200": 1, "429": 1}
    assert snap["faults"] == {"hang": 1}
    assert (snap["tokens_in"], snap["tokens_out"]) == (10, 14)
    c.reset()
    assert c.snapshot()["requests_total"] == 0
    assert c.snapshot()["last_request_at"] is None
    assert c.snapshot()["max_requests_1s"] == 0


def test_request_hash_is_canonical() -> None:
    a = {"model": "m", "messages": [], "temperature": 0}
    b = {"temperature": 0, "messages": [], "model": "m"}
    assert request_hash("/r", a) == request_hash("/r", b)
    assert request_hash("/r", a) != request_hash("/r", {**a, "temperature": 1})
    assert request_hash("/r", a) != request_hash("/s", a)
