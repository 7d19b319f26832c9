"""A ``log`` body → Arrow record batches of ``history`` rows, vectorised (pure, no DuckDB).

Numeric columns never become Python floats: the float64 bytes of the wire become an Arrow array
as they are (``pa.Array.from_buffers``), the presence mask becomes row positions. Only non-numeric
columns (``"o"``) are walked value by value. :func:`history_rows` is the shared back half: it
takes columns as ``(key, values, row positions)``, which is also what :mod:`.packed_rows` decodes a
``log_rows`` body into.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .errors import EventRejected
from .values import split_value

NumericColumn = tuple[str, pa.Array, pa.Array | None]
"""``(key, float64 values, row positions)`` of one key's points, in row order; positions ``None``: every row."""
ObjectColumn = tuple[str, list[Any], list[int] | None]
"""``(key, values, row positions)`` of one key's points whose values are not all numbers."""

_DICT = pa.dictionary(pa.int32(), pa.string())

ROWS_SCHEMA = pa.schema([("step", pa.int64()), ("timestamp", pa.float64())])
"""A log event's rows: one step and timestamp each."""

HISTORY_SCHEMA = pa.schema([
    ("run_uid", _DICT),
    ("step", pa.int64()),
    ("key", _DICT),
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
    rows: pa.RecordBatch | None = None
    """The event's rows themselves: ``step`` and ``timestamp``, one per logged row."""

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


def _repeat_index(counts: list[int]) -> pa.Array:
    """int32 array holding ``i`` ``counts[i]`` times (dictionary indices), built from bytes."""
    raw = b"".join(struct.pack("<i", i) * c for i, c in enumerate(counts))
    return pa.Array.from_buffers(pa.int32(), len(raw) // 4, [None, pa.py_buffer(raw)])


def _dict_column(index: pa.Array, values: list[str]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(index, pa.array(values, pa.string()))


def _numeric_batch(run_uid: str, steps: pa.Array, ts: pa.Array,
                   cols: list[NumericColumn], stats: dict[str, ColumnStats]) -> pa.RecordBatch | None:
    """All numeric columns of one event as one batch, laid end to end (key-major: a key's points
    in step order, which DuckDB stores run-length/delta encoded)."""
    cols = [c for c in cols if len(c[1])]
    if not cols:
        return None
    vals = pa.concat_arrays([v for _, v, _ in cols])
    all_steps = pa.concat_arrays([steps if p is None else steps.take(p) for _, _, p in cols])
    all_ts = pa.concat_arrays([ts if p is None else ts.take(p) for _, _, p in cols])
    for key, part, _ in cols:
        m = len(part)
        mm = pc.min_max(part).as_py()
        stats[key] = ColumnStats(m, m, pc.sum(part).as_py(), mm["min"], mm["max"],
                                 part[0].as_py(), part[m - 1].as_py())
    total = len(vals)
    return pa.RecordBatch.from_arrays(
        [_dict_column(_zeros(total), [run_uid]), all_steps,
         _dict_column(_repeat_index([len(v) for _, v, _ in cols]), [key for key, _, _ in cols]), vals,
         pa.nulls(total, pa.string()), all_ts],
        schema=HISTORY_SCHEMA,
    )


def _zeros(n: int) -> pa.Array:
    return pa.Array.from_buffers(pa.int32(), n, [None, pa.py_buffer(bytes(4 * n))])


def _object_batch(run_uid: str, steps: pa.Array, ts: pa.Array,
                  cols: list[ObjectColumn], stats: dict[str, ColumnStats]) -> pa.RecordBatch | None:
    """Non-numeric columns, value by value: numbers among them still go to ``value``."""
    n = len(steps)
    positions: list[int] = []
    values: list[float | None] = []
    jsons: list[str | None] = []
    counts: list[int] = []
    for key, picked, idx in cols:
        counts.append(len(picked))
        if not picked:
            continue
        nums: list[float] = []
        for v in picked:
            x, j = split_value(v)
            values.append(x)
            jsons.append(j)
            if x is not None:
                nums.append(x)
        positions.extend(range(n) if idx is None else idx)
        non_nan = [x for x in nums if x == x]
        lo = hi = None
        if non_nan:
            lo, hi = min(non_nan), max(non_nan)
        elif nums:
            lo = hi = float("nan")
        stats[key] = ColumnStats(len(picked), len(nums), float(sum(nums)), lo, hi, picked[0], picked[-1])
    if not positions:
        return None
    pos = pa.array(positions, pa.int64())
    total = len(positions)
    return pa.RecordBatch.from_arrays(
        [_dict_column(_repeat_index([total]), [run_uid]), steps.take(pos),
         _dict_column(_repeat_index(counts), [key for key, _, _ in cols]), pa.array(values, pa.float64()),
         pa.array(jsons, pa.string()), ts.take(pos)],
        schema=HISTORY_SCHEMA,
    )


def _mask_positions(mask: bytes | None, n: int) -> pa.Array | None:
    if mask is None:
        return None
    return pc.indices_nonzero(pa.Array.from_buffers(pa.uint8(), n, [None, pa.py_buffer(mask)]))


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
    numeric: list[NumericColumn] = []
    objects: list[ObjectColumn] = []
    for key, col in body["cols"].items():
        mask = col.get("m")
        if "f" in col:
            vals = _f64(col["f"], n)
            pos = _mask_positions(mask, n)
            numeric.append((key, vals if pos is None else vals.take(pos), pos))
        elif mask is None:
            objects.append((key, col["o"], None))
        else:
            idx = [i for i in range(n) if mask[i]]
            objects.append((key, [col["o"][i] for i in idx], idx))
    return history_rows(run_uid, steps, ts, numeric, objects)


def history_rows(run_uid: str, steps: pa.Array, ts: pa.Array, numeric: list[NumericColumn],
                 objects: list[ObjectColumn]) -> LogRows:
    """One event's rows (``steps`` int64 and ``ts`` float64, one per row) and its columns →
    history record batches, per-key aggregates and the step range.

    A key appears in one column only, its points in row order (what makes the last row win).
    """
    n = len(steps)
    stats: dict[str, ColumnStats] = {}
    batches: list[pa.RecordBatch] = []
    if n == 0:
        return LogRows(batches, stats, None, None, True)
    if numeric and (nb := _numeric_batch(run_uid, steps, ts, numeric, stats)) is not None:
        batches.append(nb)
    if objects and (ob := _object_batch(run_uid, steps, ts, objects, stats)) is not None:
        batches.append(ob)
    mm = pc.min_max(steps).as_py()
    increasing = n == 1 or bool(pc.min(pc.pairwise_diff(steps)).as_py() > 0)
    rows = pa.RecordBatch.from_arrays([steps, ts], schema=ROWS_SCHEMA)
    return LogRows(batches, stats, mm["min"], mm["max"], increasing, rows)
