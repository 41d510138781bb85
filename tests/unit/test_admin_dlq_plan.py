"""The dry run's arithmetic: refusals, selection, cache hits, paid calls, tokens, money, drain."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from services.admin.dlq.facts import RecordFacts
from services.admin.dlq.plan import Calls, Candidate, Tally, candidate, cost, split
from services.enrich import cache_entry
from services.enrich.providers.base import CallSuccess
from services.enrich.tasks import render, request_hash
from shared.config_file import ProviderConfig, TaskConfig, default_config
from shared.kinds import FailureKind
from shared.outcomes import Failure
from tests.support.dlq import consumed, dead_record

TASK = default_config({}).task()  # the built-in sentiment task


def facts(offset: int, partition: int = 0, **kw: Any) -> RecordFacts:
    return RecordFacts.of(consumed(dead_record(offset, **kw), "p.dlq.error", partition, offset))


def made(f: RecordFacts) -> Callable[[], Candidate]:
    return lambda: Candidate(f.partition, f.offset, f"d{f.offset}", 10)


def test_a_candidate_carries_enrichs_own_cache_key_and_token_estimate() -> None:
    value = json.dumps({"text": "refund please"}).encode()
    c = candidate(TASK, "fakellm", "openai", 1, 5, value)
    req = render(TASK, value, provider="fakellm")
    assert not isinstance(req, Failure)
    assert c == Candidate(1, 5, request_hash("openai", req), req.input_tokens_estimate())
    assert c.input_tokens == req.text_chars() // 4 + 1
    assert candidate(TASK, "fakellm", "anthropic", 1, 5, value).digest != c.digest  # kind counts
    for bad in (b"not json", b"[1]", json.dumps({"other": 1}).encode(), None):
        assert candidate(TASK, "fakellm", "openai", 0, 0, bad) == Candidate(0, 0, None, 0)


def test_the_cap_refuses_records_replayed_that_often_and_selection_is_by_partition_offset() -> None:
    tally = Tally(cap=2)
    for f in (facts(5, 1), facts(3, 0, replay_count=2), facts(9, 0, replay_count=1),
              facts(4, 0, kind=FailureKind.INVALID_OUTPUT, error_class="schema"),
              facts(1, 1, replay_count=7)):  # fmt: skip
        tally.add(f, made(f))
    assert (tally.matched, tally.refused_by_cap) == (5, 2)
    assert tally.by_kind == {"timeout": 4, "invalid_output": 1}
    assert tally.by_class == {"timeout/deadline": 4, "invalid_output/schema": 1}
    assert [(c.partition, c.offset) for c in tally.selected(None)] == [(0, 4), (0, 9), (1, 5)]
    assert [(c.partition, c.offset) for c in tally.selected(2)] == [(0, 4), (0, 9)]


def test_each_selected_record_is_unrenderable_a_hit_a_repeat_or_a_paid_call() -> None:
    chosen = [Candidate(0, i, d, t) for i, (d, t) in
              enumerate([("a", 10), (None, 0), ("b", 20), ("a", 10), ("c", 30), ("b", 20)])]  # fmt: skip
    assert split(chosen, {"b"}) == Calls(selected=6, unrenderable=1, cache_hits=2, repeats=1,
                                        paid_calls=2, input_tokens=40)  # fmt: skip
    assert split([], set()) == Calls(0, 0, 0, 0, 0, 0)


def provider(**kw: object) -> ProviderConfig:
    return ProviderConfig.model_validate({"kind": "openai", "base_url": "http://x/v1", **kw})


def test_money_needs_prices_and_the_drain_follows_the_tightest_bucket() -> None:
    calls = Calls(selected=130, unrenderable=0, cache_hits=10, repeats=0, paid_calls=120,
                  input_tokens=60_000)  # fmt: skip
    bare = cost(calls, 100, provider(), "m")
    assert (bare.input_tokens, bare.output_tokens) == (60_000, 12_000)
    assert bare.money_in is None and bare.drain_s is None and bare.limited_by is None
    priced = cost(calls, 100, provider(input_price_per_mtok=2.0, output_price_per_mtok=10.0), "m")
    assert priced.money_in == pytest.approx(0.12) and priced.money_out == pytest.approx(0.12)
    # 120 calls at 60 rpm: a bucket of 1 call, 1 a second: 119 s; 72k tokens at 1M tpm: ~4 s
    slow = cost(calls, 100, provider(requests_per_minute=60, tokens_per_minute=1_000_000), "m")
    assert slow.limited_by == "rpm" and slow.drain_s == pytest.approx(119, abs=1)
    # the model's own budget replaces the provider's: 72k tokens at 7.2k tpm ≈ 600 s
    own = provider(requests_per_minute=60, models={"m": {"tokens_per_minute": 7200}})
    assert cost(calls, 100, own, "m").limited_by == "tpm:m"
    assert cost(calls, 100, own, "m").drain_s == pytest.approx(600, rel=0.01)
    assert cost(calls, 100, own, "other").limited_by == "rpm"
    nothing = Calls(5, 0, 5, 0, 0, 0)
    assert cost(nothing, 100, own, "m").drain_s == 0


def test_a_cache_entry_is_a_hit_only_when_enrich_would_serve_it() -> None:
    """The dry run counts hits with enrich's own test (cache_entry.usable)."""
    good = CallSuccess('{"sentiment": "negative", "confidence": 0.9, "topics": []}', 5, 7, "m", 1)
    assert cache_entry.usable(TASK, cache_entry.encode(good)) is not None
    off_schema = CallSuccess('{"sentiment": "angry"}', 5, 7, "m", 1)
    assert cache_entry.usable(TASK, cache_entry.encode(off_schema)) is None
    assert cache_entry.usable(TASK, b"{broken") is None
    assert cache_entry.usable(TASK, None) is None
    assert isinstance(TASK, TaskConfig)
