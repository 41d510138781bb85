"""Metric names in PromQL expressions and in ``/metrics`` texts (pure).

Used to check that every metric the alert rules and the dashboard name is exported by a
service (tests/integration/test_metric_names.py) and unit-tested on its own
(tests/unit/test_alert_rules.py).

A metric name in PromQL is an identifier that is not: inside a string, a label matcher
``{...}``, a range or subquery ``[...]``, a grouping list (``by``/``without``/``on``/
``ignoring``/``group_left``/``group_right`` ``(...)``); followed by ``(`` (a function or an
aggregation); a keyword (``and``, ``or``, ``unless``, ``offset``, ``bool``, ...); part of a
number or a duration. Grafana's ``$variables`` are dropped with the brackets holding them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}|\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![A-Za-z0-9_:.$])[A-Za-z_:][A-Za-z0-9_:]*(?![A-Za-z0-9_:]|\s*\()")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring",
     "group_left", "group_right", "inf", "nan", "atan2", "start", "end"}
)  # fmt: skip
_LABEL_VALUES = re.compile(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)")

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "unknown": ("",),
}


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects (``up`` and ``ALERTS`` included, if named)."""
    text = _STRINGS.sub(" ", expr)
    while True:  # innermost brackets first: a subquery may hold a selector with labels
        stripped = _BRACES.sub(" ", text)
        if stripped == text:
            break
        text = stripped
    text = _GROUPING.sub(" ", text)
    return {m for m in _IDENT.findall(text) if m not in _KEYWORDS}


def rule_exprs(doc: dict[str, Any]) -> dict[str, str]:
    """``{alert or record name (with its index): expr}`` of a Prometheus rules document."""
    out: dict[str, str] = {}
    for group in doc["groups"]:
        for i, rule in enumerate(group["rules"]):
            name = rule.get("alert") or rule.get("record")
            out[f"{group['name']}/{name}#{i}"] = str(rule["expr"])
    return out


def dashboard_exprs(doc: Any) -> dict[str, str]:
    """``{where: expr}`` of every query of a Grafana dashboard: panels' targets (rows'
    nested panels included) and query variables (``label_values(metric, label)``)."""
    out: dict[str, str] = {}
    for where, value in _walk(doc, "$"):
        if where.endswith(".expr") and isinstance(value, str):
            out[where] = value
        elif where.endswith(".query") and isinstance(value, str) and _LABEL_VALUES.search(value):
            out[where] = " ".join(_LABEL_VALUES.findall(value))
    return out


def _walk(node: Any, where: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, f"{where}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{where}[{i}]")
    else:
        yield where, node


def exported_names(text: str) -> set[str]:
    """Every series name a ``/metrics`` text can hold: each family's samples, and for a
    family without samples (labelled, no child yet) the names its ``# TYPE`` implies."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= {s.name for s in family.samples}
        names |= {family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",))}
    return names
