"""From spool records to publishable events: the one place rows become columnar ``log`` bodies.

Used by the live worker and by ``runstream sync`` alike, so a spool re-sent after a crash yields
byte-for-byte the events (and message ids) it would have yielded live.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from .broker.codec import encode_event, encode_log_body, envelope, flatten, pack, unpack
from .broker.names import run_subject
from .spool import DATA_START, K_BATCH, K_EVENT, K_KEYS, K_ROW, Spool

EVENT_LIMIT = 900_000
"""Bytes of one event, under the 1 MiB default ``max_payload`` of a NATS server."""
PART_LIMIT = 512 * 1024
"""A single row larger than this is split by keys over several events."""
VALUE_LIMIT = 256 * 1024
"""One non-numeric value may not be larger than this once encoded."""
SEAL_ROWS = 2000
SEAL_BYTES = 256 * 1024

_MAX_EXACT = 2**53


class Outgoing(NamedTuple):
    seq: int
    type: str
    subject: str
    payload: bytes
    columns: dict[str, Any] | None = None
    """For ``log`` events: ``{"step": [...], "cols": {key: values}}``, for the local summary."""


def split_keys(flat: Mapping[str, Any], limit: int = PART_LIMIT) -> list[list[str]]:
    """Deterministic greedy split of one row's keys into parts of at most ``limit`` encoded bytes."""
    parts: list[list[str]] = [[]]
    size = 0
    for k, v in flat.items():
        n = len(pack(k)) + len(pack(v)) + 16
        if parts[-1] and size + n > limit:
            parts.append([])
            size = 0
        parts[-1].append(k)
        size += n
    return parts


def check_row(flat: Mapping[str, Any]) -> None:
    """Raise ValueError naming the key when one value is too large to ever publish."""
    for k, v in flat.items():
        if type(v) in (float, int, bool) or v is None:
            continue
        n = len(pack(v))
        if n > VALUE_LIMIT:
            raise ValueError(
                f"the value logged for {k!r} is {n / 1e6:.1f} MB encoded; one value may be at most "
                f"{VALUE_LIMIT // 1024} KB. Save large data as a file instead."
            )


def _column(vals: Sequence[Any]) -> tuple[dict[str, Any], list[Any]]:
    types = set(map(type, vals))
    if types <= {float, int, bool} and (int not in types or all(
            abs(v) <= _MAX_EXACT for v in vals if type(v) is int)):
        arr = array("d", vals)
        return {"f": arr.tobytes()}, list(arr)
    return {"o": list(vals)}, list(vals)


class Outbox:
    """Reads a spool forward from a cursor and returns events in seq order."""

    def __init__(self, spool: Spool) -> None:
        meta = spool.meta
        self.spool = spool
        self.run_uid: str = meta["run_uid"]
        self.writer: str = meta["writer"]
        self.entity: str = meta["entity"]
        self.keysets: dict[int, list[str]] = {}
        self.cursor = DATA_START
        self.rows: list[tuple[Any, ...]] = []
        self.last_seq = 0
        self.saw_finish = False

    def poll(self, stop: int | None = None, max_events: int = 1_000_000) -> list[Outgoing]:
        out: list[Outgoing] = []
        for rec in self.spool.records(self.cursor, stop):
            kind = rec.kind
            if kind == K_ROW:
                self.rows.append(unpack(rec.body))
            elif kind == K_KEYS:
                kid, keys = unpack(rec.body)
                self.keysets[kid] = keys
            elif kind == K_BATCH:
                seq, parts, ts, _start, _end = unpack(rec.body)
                out.extend(self._log_events(seq, parts, ts, self.rows))
                self.rows = []
                self.last_seq = seq + parts - 1
            elif kind == K_EVENT:
                seq, type_, payload = unpack(rec.body)
                out.append(Outgoing(seq, type_, run_subject(self.entity, self.run_uid, type_), payload))
                self.last_seq = seq
                if type_ == "finish":
                    self.saw_finish = True
            else:
                raise ValueError(f"{self.spool.path}: unknown record kind {kind!r} at offset {rec.offset}")
            self.cursor = rec.end
            if len(out) >= max_events and not self.rows:
                break
        return out

    # -- log events ------------------------------------------------------------------------------

    def _log_events(self, seq: int, parts: int, ts: float, rows: list[tuple[Any, ...]]) -> list[Outgoing]:
        subject = run_subject(self.entity, self.run_uid, "log")
        if parts > 1:
            (step, rts, kid, values) = rows[0]
            flat = flatten(dict(zip(self.keysets[kid], values, strict=True)))
            out = []
            for i, keys in enumerate(split_keys(flat)):
                body = encode_log_body([(step, rts, {k: flat[k] for k in keys})])
                out.append(self._event("log", seq + i, ts, body, subject, {"step": [step], "cols": {}}))
            return out
        body, cols = self._columnar(rows)
        return [self._event("log", seq, ts, body, subject, cols)]

    def _event(self, type_: str, seq: int, ts: float, body: dict[str, Any], subject: str,
               columns: dict[str, Any] | None) -> Outgoing:
        env = envelope(type_, self.run_uid, self.writer, seq, ts, body)
        return Outgoing(seq, type_, subject, encode_event(env), columns)

    def _columnar(self, rows: list[tuple[Any, ...]]) -> tuple[dict[str, Any], dict[str, Any]]:
        n = len(rows)
        kids = {r[2] for r in rows}
        if len(kids) == 1:
            keys = self.keysets[next(iter(kids))]
            steps = [r[0] for r in rows]
            transposed = list(zip(*[r[3] for r in rows], strict=True)) if keys else []
            if not any(dict in set(map(type, col)) for col in transposed):
                cols: dict[str, Any] = {}
                values: dict[str, list[Any]] = {}
                for k, col in zip(keys, transposed, strict=True):
                    cols[k], values[k] = _column(col)
                body = {"n": n, "step": steps, "ts": array("d", (r[1] for r in rows)).tobytes(),
                        "cols": cols}
                return body, {"step": steps, "cols": values}
        # general path: nested dicts, changing key sets
        flat_rows = [(r[0], r[1], flatten(dict(zip(self.keysets[r[2]], r[3], strict=True)))) for r in rows]
        body = encode_log_body(flat_rows)
        values = {}
        for _, _, flat in flat_rows:
            for k, v in flat.items():
                values.setdefault(k, []).append(v)
        return body, {"step": [r[0] for r in flat_rows], "cols": values}
