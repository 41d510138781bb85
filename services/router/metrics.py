"""Prometheus metrics of the router service (lag: ``sluice_consumer_lag``)."""

from prometheus_client import Counter, Gauge, Histogram

ROUTED = Counter(
    "sluice_router_routed_total",
    "Failure records routed, by next hop (rung label, parked, dlq.<suffix>) and kind",
    ["hop", "kind"],
)
FORWARDED = Counter(
    "sluice_router_forwarded_total",
    "Records acknowledged back in P.work, by where they waited (rung label or parked)",
    ["source"],
)
DLQ = Counter(
    "sluice_router_dlq_total",
    "DLQ writes acknowledged (with their dead outcome)",
    ["topic", "kind"],
)
MALFORMED = Counter("sluice_router_malformed_total", "Records that could not be routed")
PARKED_DEPTH = Gauge(
    "sluice_router_parked_depth",
    "Offsets in P.parked not yet drained (records and transaction markers), per assigned partition",
    ["partition"],
)
LATENESS = Histogram(
    "sluice_router_lateness_seconds",
    "How long after its due time a retry was forwarded to P.work",
    ["rung"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 2.0, 5.0, 15.0, 60.0),
)
HOLDS = Counter(
    "sluice_router_holds_total",
    "Partitions paused at a record that may not go yet, by reason (not_due, provider, rate)",
    ["reason"],
)
REBALANCES = Counter("sluice_router_rebalances_total", "Partition assignment changes", ["event"])
COMMITS = Counter(
    "sluice_router_commits_total", "Transactions committed (routed records with their offsets)"
)
TXN_ABORTS = Counter(
    "sluice_router_txn_aborts_total", "Transactions aborted (their records are routed again)"
)
