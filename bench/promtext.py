"""Quantiles of Prometheus histograms and sums of counters scraped from several processes (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client.parser import text_string_to_metric_families


def merged_buckets(
    texts: Iterable[str], metric: str, match: Mapping[str, str] | None = None
) -> list[tuple[float, float]]:
    """``(le, cumulative count)`` of ``metric``, summed over processes and label sets
    that carry every label of ``match``; sorted by ``le``."""
    sums: dict[float, float] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.name != metric:
                continue
            for sample in family.samples:
                if sample.name != f"{metric}_bucket":
                    continue
                if any(sample.labels.get(k) != v for k, v in (match or {}).items()):
                    continue
                le = float(sample.labels["le"])
                sums[le] = sums.get(le, 0.0) + sample.value
    return sorted(sums.items())


def quantile_le(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` (``inf`` past the last
    finite bound; ``None`` without observations)."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    want = q * buckets[-1][1]
    for le, count in buckets:
        if count >= want:
            return le
    return buckets[-1][0]


def counter_by_label(texts: Iterable[str], metric: str, label: str) -> dict[str, float]:
    """``{value of label: count}`` of the counter ``metric`` (its ``_total`` sample name),
    summed over processes and over its other labels."""
    out: dict[str, float] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == metric and label in sample.labels:
                    key = sample.labels[label]
                    out[key] = out.get(key, 0.0) + sample.value
    return out
