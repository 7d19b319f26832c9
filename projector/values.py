"""How values land in SQL columns: a DOUBLE when numeric, JSON text otherwise (pure functions)."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from typing import Any

_MAX_EXACT_INT = 2**53


def is_numeric(v: Any) -> bool:
    """int/float/bool that a DOUBLE holds faithfully (ints beyond 2**53 are not)."""
    t = type(v)
    if t is float or t is bool:
        return True
    return t is int and -_MAX_EXACT_INT <= v <= _MAX_EXACT_INT


def split_value(v: Any) -> tuple[float | None, str | None]:
    """A value → ``(value, value_json)``: one of them is set, the other None."""
    if is_numeric(v):
        return float(v), None
    return None, to_json(v)


def _sanitize(v: Any) -> Any:
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return v
    if isinstance(v, bytes | bytearray | memoryview):
        return "base64:" + base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, Mapping):
        return {k if isinstance(k, str) else repr(k): _sanitize(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_sanitize(x) for x in v]
    if v is None or isinstance(v, str | int | bool):
        return v
    return repr(v)


def to_json(v: Any) -> str:
    """JSON text of any decoded msgpack value; never fails.

    Non-finite floats become the strings ``"NaN"``/``"Infinity"``/``"-Infinity"`` (JSON has no
    such numbers), bytes become ``"base64:..."``, anything else unknown its ``repr``.
    """
    try:
        return json.dumps(v, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return json.dumps(_sanitize(v), allow_nan=False, ensure_ascii=False, separators=(",", ":"))


def flatten(data: Mapping[Any, Any], prefix: str = "") -> dict[str, Any]:
    """Nested maps → dotted keys (``{"a": {"b": 1}}`` → ``{"a.b": 1}``), the way W&B shows config."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}" if isinstance(k, str) else f"{prefix}{k!r}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
