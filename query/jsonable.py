"""Values and Arrow tables as JSON-safe Python objects (pure functions).

JSON has no NaN or infinities: they become the strings ``"NaN"``, ``"Infinity"`` and
``"-Infinity"`` (the same convention as the ``value_json`` columns); times become ISO 8601 text
in UTC; bytes become ``"base64:..."``. Arrow IPC answers carry the exact values instead.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

__all__ = ["dumps", "json_value", "stored_value", "table_records"]


def json_value(v: Any) -> Any:
    """One value → something ``json.dumps(..., allow_nan=False)`` accepts."""
    t = type(v)  # exact types first: a page of runs is ~100k plain values (isinstance of ABCs is slow)
    if t is str or t is int or t is bool or v is None:
        return v
    if t is float:
        return v if math.isfinite(v) else ("NaN" if math.isnan(v) else "Infinity" if v > 0 else "-Infinity")
    if t is dict:
        return {k if type(k) is str else str(k): json_value(x) for k, x in v.items()}
    if isinstance(v, str | bool | int):
        return v
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return v
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.UTC)
        return v.isoformat()
    if isinstance(v, dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    if isinstance(v, decimal.Decimal):
        return json_value(float(v))
    if isinstance(v, bytes | bytearray | memoryview):
        return "base64:" + base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, Mapping):
        return {str(k): json_value(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        if v and all(isinstance(x, tuple) and len(x) == 2 for x in v):  # an Arrow MAP as pairs
            return {str(k): json_value(x) for k, x in v}
        return [json_value(x) for x in v]
    return str(v)


def stored_value(value: float | None, value_json: str | None) -> Any:
    """A ``(value, value_json)`` cell pair of history/summary/config → the Python value."""
    if value_json is None:
        return value
    try:
        return json.loads(value_json)
    except ValueError:
        return value_json


def table_records(table: pa.Table) -> list[dict[str, Any]]:
    """An Arrow table → JSON-safe row dicts."""
    return [{k: json_value(v) for k, v in row.items()} for row in table.to_pylist()]


def dumps(obj: Any) -> str:
    """Compact JSON text of an already JSON-safe object."""
    return json.dumps(obj, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
