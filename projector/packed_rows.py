"""A ``log_rows`` body (rows packed as the SDK spooled them) → history rows, decoded once (pure).

The body is ``{"n": rows, "keys": {kid: [key, ...]}, "rows": <n msgpack arrays back to back>}``,
each row ``[step, timestamp, kid, [value per key of keys[kid]]]``. It means what a ``log`` event
with the same rows means; only the work moved: the SDK ships its spool records untouched and the
projector transposes them here.

The common case stays in C: one ``msgpack.unpackb`` of the whole blob (behind an array header
saying ``n``, so a count mismatch or trailing garbage fails there), ``zip(*...)`` to transpose,
and ``pa.array(column, float64)``, which accepts exactly what a DOUBLE holds faithfully (floats,
bools, ints within ±2**53) and refuses the rest. A column it refuses, one holding dicts (flattened
with dots like :func:`runstream.broker.codec.flatten`), and a key fed by several columns go through
a slower per-value path with the same semantics as ``log``. Validation is part of decoding: a
malformed body raises :class:`EventRejected` naming the first bad row.
"""

from __future__ import annotations

import gc
import math
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import msgpack
import pyarrow as pa
import pyarrow.compute as pc

from runstream.broker.codec import flatten

from .errors import EventRejected
from .history import LogRows, NumericColumn, ObjectColumn, history_rows
from .values import is_numeric

_WHAT = "log_rows event"

_ARROW_REFUSED = (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError)


class _Piece:
    """The points one source gives a key: a keyset's column, or the keys flattened out of its dicts."""

    __slots__ = ("group", "positions", "values", "array")

    def __init__(self, group: int, positions: list[int] | None, values: tuple[Any, ...] | list[Any],
                 array: pa.Array | None) -> None:
        self.group, self.positions, self.values, self.array = group, positions, values, array


def decode_log_rows(run_uid: str, body: Mapping[str, Any]) -> LogRows:
    """Decode a ``log_rows`` body (already checked by ``LogRowsBody``) into history rows.

    Raises:
        EventRejected: the rows are not msgpack, not ``n`` of them, a row is not a 4-array, names
            an unknown keyset or holds the wrong number of values, or a step or timestamp is bad.
    """
    with _gc_paused():
        return _decode(run_uid, body)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Hold the cyclic GC off while a blob becomes ~10 tuples per row and is dropped again: those
    allocations would trigger collections that walk every one of them (1M points: 0.40 s → 0.21 s).
    Nothing decoded here can form a cycle. The previous setting is restored, so a process that
    turned the GC off keeps it off."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _decode(run_uid: str, body: Mapping[str, Any]) -> LogRows:
    n: int = body["n"]
    keysets: Mapping[int, list[str]] = body["keys"]
    rows = _unpack(body["rows"], n)
    if n == 0:
        return history_rows(run_uid, pa.array([], pa.int64()), pa.array([], pa.float64()), [], [])
    if set(map(type, rows)) != {tuple} or set(map(len, rows)) != {4}:
        i = next(i for i, r in enumerate(rows) if type(r) is not tuple or len(r) != 4)
        raise EventRejected(f"{_WHAT}: row {i} is {_short(rows[i])}, not an array [step, timestamp, kid, values]")
    steps, stamps, kids, values = zip(*rows, strict=True)
    step_arr = _steps(steps)
    ts_arr = _timestamps(stamps)

    kid_set = set(kids) if set(map(type, kids)) == {int} else None
    if kid_set is None or not kid_set <= keysets.keys():
        i = next(i for i, k in enumerate(kids) if type(k) is not int or k not in keysets)
        raise EventRejected(f"{_WHAT}: row {i} names keyset {_short(kids[i])}, which is not in 'keys'")
    if len(kid_set) == 1:
        groups: list[tuple[int, list[int] | None, tuple[Any, ...]]] = [(kids[0], None, values)]
    else:
        where: dict[int, list[int]] = {}
        for i, kid in enumerate(kids):
            where.setdefault(kid, []).append(i)
        groups = [(kid, pos, tuple(values[i] for i in pos)) for kid, pos in where.items()]

    pieces: dict[str, list[_Piece]] = {}
    for g, (kid, pos, vals) in enumerate(groups):
        keys = keysets[kid]
        if set(map(type, vals)) != {tuple} or set(map(len, vals)) != {len(keys)}:
            j = next(j for j, v in enumerate(vals) if type(v) is not tuple or len(v) != len(keys))
            i = j if pos is None else pos[j]
            raise EventRejected(f"{_WHAT}: row {i}: values {_short(values[i])} do not match the {len(keys)} keys "
                                f"of keyset {kid}")
        for key, col in zip(keys, zip(*vals, strict=True), strict=True):
            _add_column(pieces, g, key, pos, col)

    numeric: list[NumericColumn] = []
    objects: list[ObjectColumn] = []
    for key, ps in pieces.items():
        _column(key, ps, numeric, objects)
    return history_rows(run_uid, step_arr, ts_arr, numeric, objects)


def _unpack(blob: bytes, n: int) -> tuple[Any, ...]:
    if n > 0xFFFFFFFF:
        raise EventRejected(f"{_WHAT}: 'n' = {n} rows is more than an event can hold")
    try:
        rows = msgpack.unpackb(b"\xdd" + struct.pack(">I", n) + blob, use_list=False, raw=False,
                               strict_map_key=False)
    except Exception as e:  # msgpack raises several unrelated types; say which row is wrong
        raise EventRejected(_unpack_error(blob, n, e)) from e
    return rows  # type: ignore[no-any-return]


def _unpack_error(blob: bytes, n: int, err: Exception) -> str:
    """The reason an unpack failed, found by reading the rows one by one (only on this error path)."""
    unpacker = msgpack.Unpacker(use_list=False, raw=False, strict_map_key=False, max_buffer_size=len(blob) + 1)
    unpacker.feed(blob)
    count = end = 0
    try:
        for _ in unpacker:
            count, end = count + 1, unpacker.tell()
    except Exception as e:
        return f"{_WHAT}: 'rows' is not msgpack after {count} rows: {str(e) or type(e).__name__}"
    if end != len(blob):
        return f"{_WHAT}: 'rows' ends inside row {count} ({len(blob) - end} bytes left over)"
    if count != n:
        return f"{_WHAT}: 'rows' holds {count} rows, 'n' says {n}"
    return f"{_WHAT}: 'rows' could not be read: {err}"


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _steps(steps: tuple[Any, ...]) -> pa.Array:
    types = set(map(type, steps))
    ok = steps
    if types != {int} and types <= {int, float}:
        ok = tuple(int(s) if type(s) is float and math.isfinite(s) and s == int(s) else s for s in steps)
        types = set(map(type, ok))
    if types != {int} or min(ok) < 0:
        i = next(i for i, s in enumerate(steps) if type(s) not in (int, float) or not _good_step(s))
        raise EventRejected(f"{_WHAT}: row {i}: step {_short(steps[i])} is not a non-negative integer")
    try:
        return pa.array(ok, pa.int64())
    except _ARROW_REFUSED as e:
        raise EventRejected(f"{_WHAT}: a step does not fit a 64-bit integer: {e}") from e


def _good_step(s: int | float) -> bool:
    return s >= 0 and (type(s) is int or (math.isfinite(s) and s == int(s)))


def _timestamps(stamps: tuple[Any, ...]) -> pa.Array:
    if not set(map(type, stamps)) <= {float, int}:
        i = next(i for i, t in enumerate(stamps) if type(t) not in (float, int))
        raise EventRejected(f"{_WHAT}: row {i}: timestamp {_short(stamps[i])} is not a number")
    try:
        return pa.array(stamps, pa.float64())
    except _ARROW_REFUSED as e:
        raise EventRejected(f"{_WHAT}: a timestamp is not a float64: {e}") from e


def _add_column(pieces: dict[str, list[_Piece]], group: int, key: str, pos: list[int] | None,
                col: tuple[Any, ...]) -> None:
    """One keyset column → pieces of the keys it feeds (itself, or the dotted keys of its dicts)."""
    try:
        arr = pa.array(col, pa.float64())
        if arr.null_count == 0:
            pieces.setdefault(key, []).append(_Piece(group, pos, col, arr))
            return
    except _ARROW_REFUSED:
        pass
    if dict not in set(map(type, col)):
        pieces.setdefault(key, []).append(_Piece(group, pos, col, None))
        return
    sparse: dict[str, tuple[list[int], list[Any]]] = {}
    for j, v in enumerate(col):
        i = j if pos is None else pos[j]
        for k, x in (flatten({key: v}) if type(v) is dict else {key: v}).items():
            at, xs = sparse.setdefault(k, ([], []))
            at.append(i)
            xs.append(x)
    for k, (at, xs) in sparse.items():
        pieces.setdefault(k, []).append(_Piece(group, at, xs, None))


def _column(key: str, ps: list[_Piece], numeric: list[NumericColumn], objects: list[ObjectColumn]) -> None:
    """A key's pieces → one numeric or object column, points in row order (the later write wins
    where two pieces of one keyset hit the same row, as ``dict(zip(keys, values))`` would)."""
    if len(ps) == 1:
        p = ps[0]
        if p.array is not None:
            numeric.append((key, p.array, None if p.positions is None else pa.array(p.positions, pa.int64())))
        elif all(map(is_numeric, p.values)):
            numeric.append((key, pa.array(p.values, pa.float64()),
                            None if p.positions is None else pa.array(p.positions, pa.int64())))
        else:
            objects.append((key, list(map(_plain, p.values)), p.positions))
        return
    if all(p.array is not None for p in ps) and len({p.group for p in ps}) == len(ps):
        # disjoint rows (one keyset per row): concatenate, then put the points back in row order
        at = pa.array([i for p in ps for i in p.positions or ()], pa.int64())
        order = pc.sort_indices(at)
        vals = pa.concat_arrays([p.array for p in ps if p.array is not None])
        numeric.append((key, vals.take(order), at.take(order)))
        return
    merged: dict[int, Any] = {}
    for p in ps:
        merged.update(zip(p.positions or range(len(p.values)), p.values, strict=True))
    at_rows = sorted(merged)
    xs = [merged[i] for i in at_rows]
    if all(map(is_numeric, xs)):
        numeric.append((key, pa.array(xs, pa.float64()), pa.array(at_rows, pa.int64())))
    else:
        objects.append((key, list(map(_plain, xs)), at_rows))


def _plain(v: Any) -> Any:
    """msgpack arrays arrive as tuples (``use_list=False``): lists again, as ``log`` has them."""
    if type(v) is tuple:
        return [_plain(x) for x in v]
    if type(v) is dict:
        return {k: _plain(x) for k, x in v.items()}
    return v
