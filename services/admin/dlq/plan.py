"""What a replay would do and cost (pure): the dry run's arithmetic.

    tally = Tally(cap)                           # while the DLQ is read
    tally.add(facts, lambda: candidate(...))     # each record the filters match
    chosen = tally.selected(max_records)         # first by (partition, offset)
    calls = split(chosen, cached_digests)        # cache hits, repeats, paid calls
    cost(calls, task.max_tokens, provider, model) # tokens, money, drain time

A matched record replayed ``cap`` times already is refused. Each other one
is rendered as enrich renders it, for the provider enrich would ask first,
and keyed with enrich's own result-cache key
(:func:`services.enrich.tasks.request_hash`), so "cache hit" here is what
enrich will serve from its cache. A record whose prompt cannot be rendered
fails again before any call. Token counts are estimates: input is prompt
characters / 4 (enrich's own estimate, ``ProviderRequest.input_tokens_estimate``),
output is ``max_tokens`` per call (an upper bound). The drain time is how
long the provider's configured buckets (the ones enrich takes from, with
their burst) need to let the paid calls through, with nothing else running.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from services.admin.dlq.facts import RecordFacts
from services.enrich.tasks import render, request_hash
from shared.config_file import ProviderConfig, TaskConfig
from shared.outcomes import Failure
from shared.redis.bucket import dims_for
from shared.redis.provider_config import bucket_limits


@dataclass(frozen=True, slots=True)
class Candidate:
    """A record the replay would send."""

    partition: int
    offset: int
    digest: str | None  # enrich's result-cache key; None: the prompt does not render
    input_tokens: int  # estimate (0 when it does not render)


def candidate(task: TaskConfig, provider: str, kind: str, partition: int, offset: int,
              value: bytes | None) -> Candidate:  # fmt: skip
    req = render(task, value, provider=provider)
    if isinstance(req, Failure):
        return Candidate(partition, offset, None, 0)
    return Candidate(partition, offset, request_hash(kind, req), req.input_tokens_estimate())


@dataclass
class Tally:
    cap: int
    matched: int = 0
    refused_by_cap: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    by_class: Counter[str] = field(default_factory=Counter)
    candidates: list[Candidate] = field(default_factory=list)

    def add(self, facts: RecordFacts, make: Callable[[], Candidate]) -> None:
        self.matched += 1
        self.by_kind[facts.kind] += 1
        self.by_class[f"{facts.kind}/{facts.error_class}"] += 1
        if facts.replay_count >= self.cap:
            self.refused_by_cap += 1
        else:
            self.candidates.append(make())

    def selected(self, max_records: int | None) -> list[Candidate]:
        """What the replay sends: the first ``max_records`` by (partition, offset)."""
        ordered = sorted(self.candidates, key=lambda c: (c.partition, c.offset))
        return ordered if max_records is None else ordered[:max_records]


@dataclass(frozen=True, slots=True)
class Calls:
    selected: int
    unrenderable: int
    cache_hits: int
    repeats: int
    paid_calls: int
    input_tokens: int  # of the paid calls


def split(selected: Sequence[Candidate], cached: Iterable[str]) -> Calls:
    """Each selected record is unrenderable, a cache hit, a repeat of an earlier
    request, or a paid call."""
    hits = set(cached)
    seen: set[str] = set()
    unrenderable = cache_hits = repeats = tokens = 0
    for c in selected:
        if c.digest is None:
            unrenderable += 1
        elif c.digest in hits:
            cache_hits += 1
        elif c.digest in seen:
            repeats += 1
        else:
            seen.add(c.digest)
            tokens += c.input_tokens
    return Calls(len(selected), unrenderable, cache_hits, repeats, len(seen), tokens)


@dataclass(frozen=True, slots=True)
class Cost:
    input_tokens: int
    output_tokens: int
    money_in: float | None  # None: no prices configured
    money_out: float | None
    drain_s: float | None  # None: no rate limit configured
    limited_by: str | None  # the bucket that sets the pace


def cost(calls: Calls, max_tokens: int, provider: ProviderConfig, model: str) -> Cost:
    out_tokens = calls.paid_calls * max_tokens
    money_in = money_out = None
    if provider.input_price_per_mtok is not None and provider.output_price_per_mtok is not None:
        money_in = calls.input_tokens * provider.input_price_per_mtok / 1e6
        money_out = out_tokens * provider.output_price_per_mtok / 1e6
    drain_s, limited_by = None, None
    for dim in dims_for(bucket_limits(provider), model):
        # what enrich reserves per call: 1 request; input estimate + max_tokens
        need = calls.paid_calls if dim.kind == "requests" else calls.input_tokens + out_tokens
        seconds = max(0.0, need - dim.spec.capacity) / dim.spec.rate_per_s if need else 0.0
        if drain_s is None or seconds > drain_s:
            drain_s, limited_by = seconds, dim.name
    return Cost(calls.input_tokens, out_tokens, money_in, money_out, drain_s, limited_by)
