"""Wire encoding of events: pure functions on bytes, no pydantic, no NATS.

An event on the wire is a msgpack map (the *envelope*)::

    {"v": schema version, "t": type, "run": run uid, "w": writer id, "s": per-writer seq,
     "ts": wall-clock seconds, "b": body}

The body of a ``log`` event is columnar, so a float costs 8 bytes on the wire::

    {"n": rows, "step": [step, ...], "ts": <float64 LE bytes, one per row>,
     "cols": {key: column, ...}}

    column = {"f": <float64 LE bytes, n values>, "m": <presence mask bytes>|absent}   numeric
           | {"o": [value or None, ...],          "m": <presence mask bytes>|absent}   anything else

``m`` holds one byte per row (1 = the key was logged in that row); it is omitted when every row has
the key. Missing numeric cells hold 0.0 and are masked, so NaN stays a faithful value.

A ``log_rows`` event means the same as a ``log`` event with the same rows, packed as the SDK spools
them (the projector transposes them, off the training process)::

    {"n": rows, "keys": {kid: [key, ...], ...}, "rows": <n msgpack arrays back to back>}

    row = [step, timestamp, kid, [value, ...]]    values in the order of keys[kid]; a dict value
                                                  is flattened with dots like :func:`flatten`
"""

from __future__ import annotations

import math
import struct
from array import array
from collections.abc import Iterable, Mapping
from typing import Any

import msgpack

SCHEMA_VERSION = 1

EVENT_TYPES = (
    "init",
    "log",
    "config",
    "summary",
    "define_metric",
    "heartbeat",
    "metadata",
    "finish",
    "crashed",
    "meta",
    "log_rows",
    "join",
)

_NUMERIC = (int, float, bool)


class DecodeError(ValueError):
    """Bytes that are not a runstream event envelope."""


def _default(obj: Any) -> Any:
    """msgpack fallback for values users hand us: numpy scalars and arrays, tuples, sets, paths."""
    item = getattr(obj, "item", None)
    if item is not None and getattr(obj, "shape", None) == ():
        return item()
    tolist = getattr(obj, "tolist", None)
    if tolist is not None:
        return tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    if isinstance(obj, bytes | bytearray | memoryview):
        return bytes(obj)
    if getattr(obj, "_runstream_media", False) or type(obj).__module__.startswith(("matplotlib", "plotly")):
        # media and figures are stored as files by the SDK (runstream.media), never as their repr
        raise TypeError(f"{type(obj).__name__} is media: it is stored as a file, not packed")
    return str(obj)


def packer() -> msgpack.Packer:
    """A reusable packer with runstream's fallback for foreign types."""
    return msgpack.Packer(default=_default, use_bin_type=True, datetime=False)


_PACKER = packer()


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_default, use_bin_type=True)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def envelope(
    type_: str, run_uid: str, writer: str, seq: int, ts: float, body: Mapping[str, Any]
) -> dict[str, Any]:
    return {"v": SCHEMA_VERSION, "t": type_, "run": run_uid, "w": writer, "s": seq, "ts": ts, "b": body}


def encode_event(env: Mapping[str, Any]) -> bytes:
    return pack(env)


def decode_event(data: bytes) -> dict[str, Any]:
    """Bytes → envelope dict with the mandatory fields checked; raise :class:`DecodeError`."""
    try:
        env = unpack(data)
    except Exception as e:  # msgpack raises several unrelated types
        raise DecodeError(f"not msgpack: {e}") from e
    if not isinstance(env, dict):
        raise DecodeError(f"envelope is a {type(env).__name__}, not a map")
    for field, kind in (("v", int), ("t", str), ("run", str), ("w", str), ("s", int), ("b", dict)):
        if not isinstance(env.get(field), kind):
            raise DecodeError(f"envelope field {field!r} missing or not {kind.__name__}")
    if not isinstance(env.get("ts"), (int, float)):
        raise DecodeError("envelope field 'ts' missing or not a number")
    return env


# ---------------------------------------------------------------------------------------------
# log bodies


def flatten(data: Mapping[str, Any], prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Nested dicts → dotted keys, the way W&B shows them (``{"a": {"b": 1}}`` → ``{"a.b": 1}``).

    A dict with a ``_type`` key is one value, as in W&B (a media reference: an image, a table, a
    histogram), not nested metrics."""
    if out is None:
        out = {}
    for k, v in data.items():
        key = f"{prefix}{k}" if isinstance(k, str) else f"{prefix}{k!r}"
        if isinstance(v, Mapping) and v and "_type" not in v:
            flatten(v, key + ".", out)
        else:
            out[key] = v
    return out


def plain_value(v: Any) -> Any:
    """numpy scalar / 0-d array → Python scalar; anything else unchanged."""
    if type(v) in (float, int, bool, str) or v is None:
        return v
    item = getattr(v, "item", None)
    if item is not None and getattr(v, "shape", None) == ():
        return item()
    return v


def encode_log_body(rows: Iterable[tuple[Any, float, Mapping[str, Any]]]) -> dict[str, Any]:
    """Rows of ``(step, timestamp, flat values)`` → the columnar ``log`` body."""
    rows = list(rows)
    n = len(rows)
    steps = [r[0] for r in rows]
    ts = array("d", (r[1] for r in rows))
    keys: dict[str, None] = {}
    for _, _, values in rows:
        for k in values:
            keys[k] = None
    cols: dict[str, Any] = {}
    for k in keys:
        present = bytearray(n)
        vals: list[Any] = [None] * n
        numeric = True
        for i, (_, _, values) in enumerate(rows):
            if k in values:
                present[i] = 1
                v = plain_value(values[k])
                vals[i] = v
                if numeric and (type(v) not in _NUMERIC or (type(v) is int and abs(v) > 2**53)):
                    numeric = False
        col: dict[str, Any]
        if numeric:
            col = {"f": array("d", (0.0 if v is None else float(v) for v in vals)).tobytes()}
        else:
            col = {"o": vals}
        if 0 in present:
            col["m"] = bytes(present)
        cols[k] = col
    return {"n": n, "step": steps, "ts": ts.tobytes(), "cols": cols}


Columns = dict[str, tuple[list[Any], bytes | None, bool]]

_STEP_TYPES = (int, float)


def check_log_body(body: Mapping[str, Any]) -> int:
    """Check that a columnar ``log`` body is consistent without decoding its values; return ``n``.

    Checks what :func:`decode_log_body` checks (types, and that every column, mask and the
    timestamps hold ``n`` entries) on lengths alone: the float64 bytes are never unpacked.

    Raises:
        ValueError: the body is inconsistent, naming the part that is wrong.
    """
    n = body.get("n")
    steps = body.get("step")
    raw_ts = body.get("ts")
    cols = body.get("cols")
    if type(n) is not int or n < 0:
        raise ValueError("log body: 'n' must be a non-negative integer")
    if not isinstance(steps, list) or len(steps) != n:
        raise ValueError("log body: 'step' must be a list of n steps")
    types = set(map(type, steps))
    if not types <= {int, float}:
        bad = next(s for s in steps if type(s) not in _STEP_TYPES)
        raise ValueError(f"log body: step {bad!r} is not a finite number")
    if float in types:
        for s in steps:
            if type(s) is float and not math.isfinite(s):
                raise ValueError(f"log body: step {s!r} is not a finite number")
    if not isinstance(raw_ts, bytes) or len(raw_ts) != 8 * n:
        raise ValueError("log body: 'ts' must be n float64 values")
    if not isinstance(cols, dict):
        raise ValueError("log body: 'cols' must be a map")
    for key, col in cols.items():
        if not isinstance(key, str) or not isinstance(col, dict):
            raise ValueError(f"log body: column {key!r} is malformed")
        mask = col.get("m")
        if mask is not None and (not isinstance(mask, bytes) or len(mask) != n):
            raise ValueError(f"log body: mask of column {key!r} must be n bytes")
        if "f" in col:
            raw = col["f"]
            if not isinstance(raw, bytes) or len(raw) != 8 * n:
                raise ValueError(f"log body: column {key!r} must hold n float64 values")
        elif "o" in col:
            vals = col["o"]
            if not isinstance(vals, list) or len(vals) != n:
                raise ValueError(f"log body: column {key!r} must hold n values")
        else:
            raise ValueError(f"log body: column {key!r} has neither 'f' nor 'o'")
    return n


def decode_log_body(body: Mapping[str, Any]) -> tuple[list[Any], list[float], Columns]:
    """Columnar ``log`` body → ``(steps, timestamps, {key: (values, mask, numeric)})``.

    Raises ValueError when the body is inconsistent (see :func:`check_log_body`).
    """
    n = check_log_body(body)
    ts = list(struct.unpack(f"<{n}d", body["ts"]))
    out: Columns = {}
    for key, col in body["cols"].items():
        if "f" in col:
            out[key] = (list(struct.unpack(f"<{n}d", col["f"])), col.get("m"), True)
        else:
            out[key] = (col["o"], col.get("m"), False)
    return body["step"], ts, out
