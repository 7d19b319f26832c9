"""JSON-safe values: what the HTTP API turns NaN, times, bytes and maps into (pure)."""

from __future__ import annotations

import datetime as dt
import json
import math
from enum import IntEnum

from runstream.query.jsonable import json_value


class Level(IntEnum):
    HIGH = 2


def test_json_value_conversions() -> None:
    when = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    value = {
        "s": "x", "i": 3, "b": True, "n": None, "f": 0.5, "nan": math.nan, "inf": math.inf, "-inf": -math.inf,
        "nested": {1: [math.nan, (1, 2)], "t": when}, "bytes": b"\x00\xff", "pairs": [("k", 1.0), ("m", math.inf)],
        "enum": Level.HIGH, "tuple": (1, "a"),
    }
    out = json_value(value)
    assert out == {
        "s": "x", "i": 3, "b": True, "n": None, "f": 0.5, "nan": "NaN", "inf": "Infinity", "-inf": "-Infinity",
        "nested": {"1": ["NaN", [1, 2]], "t": "2026-12-01T07:30:00+00:00"}, "bytes": "base64:AP8=",
        "pairs": {"k": 1.0, "m": "Infinity"}, "enum": 2, "tuple": [1, "a"],
    }
    json.dumps(out, allow_nan=False)  # nothing left that JSON cannot hold
    assert json_value(-0.0) == 0.0 and math.copysign(1.0, json_value(-0.0)) == -1.0
