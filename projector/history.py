"""A ``log`` body → Arrow record batches of ``history`` rows, vectorised (pure, no DuckDB).

Numeric columns never become Python floats: the float64 bytes of the wire become an Arrow array
as they are (``pa.Array.from_buffers``), the presence mask becomes a filter. Only non-numeric
columns (``"o"``) are walked value by value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .errors import EventRejected
from .values import split_value

HISTORY_SCHEMA = pa.schema([
    ("run_uid", pa.string()),
    ("step", pa.int64()),
    ("key", pa.string()),
    ("value", pa.float64()),
    ("value_json", pa.string()),
    ("timestamp", pa.float64()),
])


@dataclass
class ColumnStats:
    """Aggregates of one key within one event, in row order."""

    logged: int
    count: int
    total: float
    min: float | None
    max: float | None
    first: Any
    last: Any


@dataclass
class LogRows:
    """The history rows of one ``log`` event."""

    batches: list[pa.RecordBatch]
    stats: dict[str, ColumnStats]
    min_step: int | None
    max_step: int | None
    increasing: bool
    """Steps strictly increase within the event, so no (step, key) repeats inside it."""

    @property
    def points(self) -> int:
        return sum(b.num_rows for b in self.batches)


def _f64(raw: bytes, n: int) -> pa.Array:
    return pa.Array.from_buffers(pa.float64(), n, [None, pa.py_buffer(raw)])


def _steps(steps: list[Any]) -> pa.Array:
    try:
        arr = pa.array(steps)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as e:
        raise EventRejected(f"log event: steps are not integers: {e}") from e
    if pa.types.is_integer(arr.type):
        try:
            return arr.cast(pa.int64())
        except pa.ArrowInvalid as e:
            raise EventRejected(f"log event: a step does not fit a 64-bit integer: {e}") from e
    if pa.types.is_floating(arr.type):
        bad = pc.not_equal(pc.trunc(arr), arr)
        if pc.any(bad).as_py():
            first_bad = pc.filter(arr, bad)[0].as_py()
            raise EventRejected(f"log event: step {first_bad!r} is not an integer")
        try:
            return arr.cast(pa.int64())
        except pa.ArrowInvalid as e:
            raise EventRejected(f"log event: a step does not fit a 64-bit integer: {e}") from e
    if len(arr) == 0:
        return pa.array([], pa.int64())
    raise EventRejected(f"log event: steps must be integers, got {arr.type}")


def log_rows(run_uid: str, body: Mapping[str, Any]) -> LogRows:
    """Turn a validated columnar ``log`` body into history record batches.

    Raises:
        EventRejected: a step is not an integer, or the body is inconsistent.
    """
    n: int = body["n"]
    steps = _steps(body["step"])
    if len(steps) != n:
        raise EventRejected(f"log event: {len(steps)} steps for n={n} rows")
    ts = _f64(body["ts"], n)
    run_col = pa.scalar(run_uid, pa.string())
    batches: list[pa.RecordBatch] = []
    stats: dict[str, ColumnStats] = {}
    for key, col in body["cols"].items():
        mask = col.get("m")
        sel = None
        if mask is not None:
            sel = pc.not_equal(pa.Array.from_buffers(pa.uint8(), n, [None, pa.py_buffer(mask)]), 0)
        if "f" in col:
            vals = _f64(col["f"], n)
            k_steps, k_ts = steps, ts
            if sel is not None:
                vals, k_steps, k_ts = pc.filter(vals, sel), pc.filter(steps, sel), pc.filter(ts, sel)
            m = len(vals)
            if m == 0:
                continue
            mm = pc.min_max(vals).as_py()
            first, last = vals[0].as_py(), vals[m - 1].as_py()
            stats[key] = ColumnStats(m, m, pc.sum(vals).as_py(), mm["min"], mm["max"], first, last)
            json_col: pa.Array = pa.nulls(m, pa.string())
        else:
            raw_vals: list[Any] = col["o"]
            idx = [i for i in range(n) if mask is None or mask[i]]
            if not idx:
                continue
            picked = [raw_vals[i] for i in idx]
            split = [split_value(v) for v in picked]
            nums = [x for x, _ in split if x is not None]
            vals = pa.array([x for x, _ in split], pa.float64())
            json_col = pa.array([j for _, j in split], pa.string())
            pos = pa.array(idx, pa.int64())
            k_steps, k_ts = steps.take(pos), ts.take(pos)
            lo = hi = None
            non_nan = [x for x in nums if x == x]
            if non_nan:
                lo, hi = min(non_nan), max(non_nan)
            elif nums:
                lo = hi = float("nan")
            stats[key] = ColumnStats(len(picked), len(nums), float(sum(nums)), lo, hi, picked[0], picked[-1])
            m = len(picked)
        batches.append(pa.RecordBatch.from_arrays(
            [pa.repeat(run_col, m), k_steps, pa.repeat(pa.scalar(key, pa.string()), m), vals, json_col, k_ts],
            schema=HISTORY_SCHEMA,
        ))
    if n == 0:
        return LogRows(batches, stats, None, None, True)
    mm = pc.min_max(steps).as_py()
    increasing = n == 1 or bool(pc.min(pc.pairwise_diff(steps)).as_py() > 0)
    return LogRows(batches, stats, mm["min"], mm["max"], increasing)
