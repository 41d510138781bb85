"""A small JSON-schema validator for the subset an ``output_schema`` may use (pure).

Supported: ``type`` (object, string, number, integer, boolean, array, null),
``enum``, ``required``, ``properties``, ``additionalProperties: false``,
``items``, ``minimum``, ``maximum``. ``description`` and ``title`` are ignored.
Booleans are neither numbers nor integers; ``2.0`` is an integer, as in
JSON schema. :func:`errors` lists every problem as ``$.path: what``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "string": (str,),
    "number": (int, float),
    "integer": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "null": (type(None),),
}


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _type_ok(value: Any, expected: str) -> bool:
    if expected in ("number", "integer") and isinstance(value, bool):
        return False
    if not isinstance(value, _TYPES[expected]):
        return False
    return (
        expected != "integer"
        or isinstance(value, int)
        or (isinstance(value, float) and value.is_integer())
    )


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "string", "object", "array"):
        if _type_ok(value, name):
            return name
    return "integer" if _type_ok(value, "integer") else "number"


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``1 == 1.0`` but ``True != 1``."""
    if _type_ok(a, "number") and _type_ok(b, "number"):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


def _check_object(value: dict[str, Any], schema: Mapping[str, Any], path: str) -> list[str]:
    out = [f"{path}: missing required field {name!r}" for name in schema.get("required", []) if name not in value]  # fmt: skip
    props: Mapping[str, Any] = schema.get("properties", {})
    for name, sub in props.items():
        if name in value:
            out += errors(value[name], sub, f"{path}.{name}")
    if schema.get("additionalProperties") is False:
        out += [f"{path}: unexpected field {name!r}" for name in value if name not in props]
    return out


def _check_range(value: float, schema: Mapping[str, Any], path: str) -> list[str]:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if lo is not None and value < lo:
        return [f"{path}: {value:g} is below the minimum {lo:g}"]
    if hi is not None and value > hi:
        return [f"{path}: {value:g} is above the maximum {hi:g}"]
    return []


def errors(value: Any, schema: Mapping[str, Any], path: str = "$") -> list[str]:
    """Every way ``value`` breaks ``schema`` (empty when it conforms)."""
    expected = schema.get("type")
    if expected is not None and not _type_ok(value, expected):
        return [f"{path}: expected {expected}, got {_json_type(value)}"]
    enum = schema.get("enum")
    if enum is not None and not any(_same(value, e) for e in enum):
        choices = ", ".join(_short(e) for e in enum)
        return [f"{path}: {_short(value)} is not one of {choices}"]
    if isinstance(value, dict):
        return _check_object(value, schema, path)
    if isinstance(value, list) and "items" in schema:
        return [e for i, item in enumerate(value) for e in errors(item, schema["items"], f"{path}[{i}]")]  # fmt: skip
    if _type_ok(value, "number"):
        return _check_range(float(value), schema, path)
    return []


def first_error(value: Any, schema: Mapping[str, Any] | None) -> str | None:
    """The problems joined in one line (at most three), or ``None`` when ``value`` conforms."""
    if schema is None:
        return None
    found = errors(value, schema)
    if not found:
        return None
    more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
    return "; ".join(found[:3]) + more
