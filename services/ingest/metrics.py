"""Prometheus metrics of the ingest service."""

from prometheus_client import Counter

RECORDS_IN = Counter("sluice_ingest_records_in_total", "Source records consumed")
RECORDS_OUT = Counter("sluice_ingest_records_out_total", "Work records acknowledged by the broker")
POISON = Counter("sluice_ingest_poison_total", "Records sent to the poison DLQ", ["reason"])
COMMITS = Counter("sluice_ingest_commits_total", "Offset commits")
HEADERS_STRIPPED = Counter(
    "sluice_ingest_headers_stripped_total",
    "sluice.* headers dropped from source records (only sluice sets them)",
)
