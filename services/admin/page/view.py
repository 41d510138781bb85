"""What the operator page shows, rendered from the admin API's models (pure: no I/O, no clock).

Every template is autoescaped: a provider name, a pause reason or a key with
HTML in it is shown as text. Times are shown in UTC; ``now`` (unix seconds)
is passed in, so ages ("3 s ago") are testable.

Lag is drawn as a heat strip: one row per group and topic, one cell per
partition, coloured by its :class:`~services.admin.lag.status.Status`, with
the records behind in the cell and the rest in its tooltip.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined

from services.admin import models as m
from services.admin.auth import Principal
from services.admin.blocked.models import BlockedKeys
from services.admin.dlq import models as dm
from services.admin.dlq.filters import Filters
from services.admin.dlq.names import NAMES
from services.admin.dlq.replay_tasks import ReplayView
from services.admin.lag.models import GroupLag, LagReport, PartitionLag
from services.admin.lag.status import Status
from services.admin.tokens import Role
from shared.kinds import FailureKind

HTMX = "htmx-2.0.11.min.js"
"""The vendored htmx (``static/VENDORED.md`` records its source and sha256)."""
REFRESH_S = 5
"""Every fragment of the page is fetched again this often (and after each action) ..."""
SLOW_REFRESH_S = 15
"""... but the audit list, the blocked keys and the DLQ counts (each read opens a consumer)."""
PROGRESS_S = 1
"""A running replay's progress is fetched this often, until the task ends."""

ALERTING = (Status.STALLED, Status.STOPPED, Status.GROWING)
"""Lag statuses the page counts in its lag heading (the ones an operator acts on)."""


@dataclass(frozen=True, slots=True)
class LagCell:
    partition: int
    status: str
    text: str  # what the cell shows: the records behind, or "-" without a commit
    title: str  # the tooltip: everything known about the partition


@dataclass(frozen=True, slots=True)
class LagRow:
    group: str
    stage: str
    state: str  # the broker's group state
    topic: str
    cells: tuple[LagCell, ...]


def lag_cell(p: PartitionLag) -> LagCell:
    parts = [f"{p.topic} [{p.partition}]: {p.status.value}"]
    if p.lag_records is None:
        parts.append("no committed offset")
    else:
        parts.append(f"{p.lag_records} records behind (committed {p.committed}, end {p.end})")
    if p.lag_seconds is not None:
        parts.append(f"oldest unconsumed {p.lag_seconds:.1f} s old")
    text = "-" if p.lag_records is None else str(p.lag_records)
    return LagCell(p.partition, p.status.value, text, "; ".join(parts))


def lag_rows(groups: Sequence[GroupLag]) -> list[LagRow]:
    """One row per group and topic (topics in the order met), cells by partition.

    A group without partitions (its topics do not exist, or none is known) gets
    one row without a topic or cells: no group goes unseen.
    """
    rows: list[LagRow] = []
    for g in groups:
        if not g.partitions:
            rows.append(LagRow(g.group, g.stage, g.state, "", ()))
        topics: dict[str, list[PartitionLag]] = {}
        for p in g.partitions:
            topics.setdefault(p.topic, []).append(p)
        rows += [
            LagRow(g.group, g.stage, g.state, topic,
                   tuple(lag_cell(p) for p in sorted(ps, key=lambda p: p.partition)))
            for topic, ps in topics.items()
        ]  # fmt: skip
    return rows


def alerting(groups: Sequence[GroupLag]) -> list[tuple[str, int]]:
    """How many partitions are in each alerting status, in :data:`ALERTING` order (none: [])."""
    counts = Counter(p.status for g in groups for p in g.partitions)
    return [(s.value, counts[s]) for s in ALERTING if counts[s]]


def segment(value: str) -> str:
    """``value`` as one URL path segment (a ``/`` in it is escaped too)."""
    return quote(value, safe="")


def utc(value: datetime | None) -> str:
    """``2024-05-01 14:03:22 UTC``; ``-`` for none."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(seconds: float) -> str:
    """An age for people: ``4 s``, ``12 min``, ``3 h``, ``2 d``."""
    s = max(0.0, seconds)
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if s >= 2 * size:
            return f"{int(s // size)} {unit}"
    return f"{int(s)} s"


def since(value: datetime | None, now: float) -> str:
    """``3 min ago``; ``-`` for none."""
    return "-" if value is None else f"{ago(now - value.timestamp())} ago"


def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("services.admin", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(segment=segment, utc=utc, ago=ago)
    env.globals.update(since=since, HTMX=HTMX, REFRESH_S=REFRESH_S, SLOW_REFRESH_S=SLOW_REFRESH_S,
                       PROGRESS_S=PROGRESS_S, DLQ_NAMES=NAMES,
                       KINDS=[k.value for k in FailureKind])  # fmt: skip
    return env


ENV = _env()


def _render(template: str, **context: Any) -> str:
    return ENV.get_template(template).render(**context)


def shell(insecure_dev: bool) -> str:
    """The page itself: no data, no token; it asks for the token and loads the fragments."""
    return _render("page.html", insecure_dev=insecure_dev)


def session(who: Principal, pipeline: str) -> str:
    return _render("session.html", who=who.who, viewer=who.role is Role.VIEWER, pipeline=pipeline)


def providers(doc: m.Providers, who: Principal, now: float) -> str:
    return _render("providers.html", providers=doc.providers,
                   read_only=who.role is Role.VIEWER, now=now)  # fmt: skip


def lag(report: LagReport | None, now: float) -> str:
    if report is None:
        return _render("lag.html", report=None, rows=[], alerting=[], missing=[], now=now)
    missing = [(g.group, g.missing_topics) for g in report.groups if g.missing_topics]
    return _render("lag.html", report=report, rows=lag_rows(report.groups),
                   alerting=alerting(report.groups), missing=missing, now=now)  # fmt: skip


def blocked(doc: BlockedKeys, who: Principal) -> str:
    return _render("blocked.html", keys=doc.blocked, read_only=who.role is Role.VIEWER)


def audit(doc: m.AuditRecords, now: float) -> str:
    return _render("audit.html", records=doc.records, now=now)


def plural(n: int, one: str, many: str | None = None) -> str:
    """``1 record``, ``3 records``."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def estimate_summary(dry: dm.DryRun) -> str:
    """The dry run in one sentence, as the replay's confirmation shows it."""
    parts = [f"{plural(dry.matched, 'record')} matched in {dry.dlq}"]
    if dry.refused_by_cap:
        parts.append(f"{dry.refused_by_cap} refused by the replay cap ({dry.replay_cap})")
    parts.append(f"{dry.selected} to send: {plural(dry.cache_hits, 'cache hit')}, "
                 f"{plural(dry.paid_calls, 'paid call')} to {dry.provider} ({dry.model})")  # fmt: skip
    parts.append(f"about {dry.input_tokens} input and at most {dry.output_tokens} output tokens")
    if dry.money is not None:
        parts.append(f"about {dry.money.amount:.4f} in money")
    if dry.drain is not None:
        parts.append(f"drains in about {ago(dry.drain.seconds)} ({dry.drain.limited_by})")
    if not dry.complete:
        parts.append(f"counts of the first {dry.scanned} records only (read budget)")
    return "; ".join(parts)


def replay_request(dry: dm.DryRun, filters: Filters) -> dict[str, Any]:
    """The body of the ``POST /v1/replays`` the dry run estimated (without its replay_id)."""
    return {"dlq": dry.dlq, **filters.model_dump(mode="json", exclude_defaults=True)}


def header_text(value: dm.Preview) -> str:
    """A decoded header or key as text: base64 and a cut are said."""
    text = str(value.value)
    if value.encoding == "base64":
        text += " (base64)"
    return text + (f" … ({value.bytes} bytes)" if value.truncated else "")


def dlq_counts(doc: dm.DlqSummary) -> str:
    kinds = sorted({k for d in doc.dlqs for k in d.by_kind})
    return _render("dlq_counts.html", dlqs=doc.dlqs, kinds=kinds)


def dlq_records(page: dm.DlqPage) -> str:
    return _render("dlq_records.html", page=page, shown=header_text)


def dlq_estimate(dry: dm.DryRun, filters: Filters, who: Principal) -> str:
    return _render("dlq_estimate.html", dry=dry, summary=estimate_summary(dry),
                   request=replay_request(dry, filters),
                   read_only=who.role is Role.VIEWER)  # fmt: skip


def replay_progress(task: ReplayView, who: Principal) -> str:
    return _render("replay_progress.html", task=task, read_only=who.role is Role.VIEWER)
