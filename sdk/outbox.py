"""From spool records to publishable events: the one place rows become ``log``/``log_rows`` bodies
and console lines become ``output`` bodies.

Used by the live worker and by ``runstream sync`` alike, so a spool re-sent after a crash yields
byte-for-byte the events (and message ids) it would have yielded live.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from .broker.codec import encode_event, encode_log_body, envelope, flatten, pack, unpack
from .broker.names import run_subject
from .spool import _LEN, DATA_START, K_BATCH, K_EVENT, K_KEYS, K_LINE, K_LINES, K_ROW, K_UPLOAD, Spool

EVENT_LIMIT = 900_000
"""Bytes of one event, under the 1 MiB default ``max_payload`` of a NATS server."""
PART_LIMIT = 512 * 1024
"""A single row larger than this is split by keys over several events."""
VALUE_LIMIT = 256 * 1024
"""One non-numeric value may not be larger than this once encoded."""
SEAL_ROWS = 2000
SEAL_BYTES = 256 * 1024
SEAL_LINES = 2000
"""Console line states per ``output`` event at most (the worker's timer seals sooner)."""
SEAL_LINE_BYTES = 256 * 1024
"""Spooled console bytes after which an ``output`` event is sealed at once: with one line at most
64 Ki characters (~384 KB sanitized, worst case), an event stays under :data:`EVENT_LIMIT`."""


class Outgoing(NamedTuple):
    seq: int
    type: str
    subject: str
    payload: bytes
    columns: dict[str, Any] | None = None
    """For log events: ``{"last": {key: value}, "series": {key: [sample, ...]}, "batch": seq}``."""
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


class Outbox:
    """Reads a spool forward from a cursor and returns events in seq order.

    Batches of rows go out as ``log_rows`` events holding the rows exactly as spooled: the
    projector, in its own process, decodes them, so the trainer's background thread never competes
    with the training loop for the GIL over a million floats. Only a few rows per batch are decoded
    here, for the local summary and the sparklines (:meth:`_mirror`).
    """

    SAMPLED_ROWS = 48
    """Rows per batch decoded for the sparklines (plus the last row of each keyset)."""

    def __init__(self, spool: Spool) -> None:
        meta = spool.meta
        self.spool = spool
        self.run_uid: str = meta["run_uid"]
        self.writer: str = meta["writer"]
        self.entity: str = meta["entity"]
        self.keysets: dict[int, list[str]] = {}
        self.cursor = DATA_START
        self.spans: list[tuple[int, int]] = []
        """Where the rows read since the last batch marker lie in the spool."""
        self.line_spans: list[tuple[int, int]] = []
        """Where the console lines read since the last console marker lie."""
        self.label: str | None = meta.get("label")
        self.last_seq = 0
        self.saw_finish = False

    def poll(self, stop: int | None = None, max_events: int = 1_000_000) -> list[Outgoing]:
        """Events from the records between the cursor and ``stop`` (default: the log's end).

        The hot loop only notes where each row's bytes lie; a batch's rows are copied out in one
        join when its marker is reached.
        """
        out: list[Outgoing] = []
        mm = self.spool.mm
        size = len(mm)
        limit = size if stop is None else min(stop, size)
        read_len = _LEN.unpack_from
        spans = self.spans
        off = self.cursor
        while off + 4 <= limit:
            (n,) = read_len(mm, off)
            end = off + 4 + n
            if n == 0 or end > size:
                break
            kind = mm[off + 4]
            if kind == K_ROW:
                spans.append((off + 5, end))
            elif kind == K_KEYS:
                kid, keys = unpack(mm[off + 5:end])
                self.keysets[kid] = keys
            elif kind == K_BATCH:
                seq, parts, ts, *rest = unpack(mm[off + 5:end])
                kids = rest[2] if len(rest) > 2 else None  # markers older than log_rows carry no kids
                rows = [mm[a:b] for a, b in spans]
                spans.clear()
                out.extend(self._log_events(seq, parts, ts, rows, kids))
                self.last_seq = seq + parts - 1
            elif kind == K_LINE:
                self.line_spans.append((off + 5, end))
            elif kind == K_LINES:
                seq, ts, _count = unpack(mm[off + 5:end])
                lines = [mm[a:b] for a, b in self.line_spans]
                self.line_spans.clear()
                out.append(self._output_event(seq, ts, lines))
                self.last_seq = seq
            elif kind == K_EVENT:
                seq, type_, payload = unpack(mm[off + 5:end])
                out.append(Outgoing(seq, type_, run_subject(self.entity, self.run_uid, type_), payload))
                self.last_seq = seq
                if type_ == "finish":
                    self.saw_finish = True
            elif kind == K_UPLOAD:
                pass  # an upload intent: the uploader's business, not an event (see runstream.uploads)
            else:
                raise ValueError(f"{self.spool.path}: unknown record kind {kind!r} at offset {off}")
            off = end
            self.cursor = off
            if len(out) >= max_events and not spans:
                break
        return out

    # -- log events ------------------------------------------------------------------------------

    def _log_events(self, seq: int, parts: int, ts: float, rows: list[bytes],
                    kids: list[int] | None) -> list[Outgoing]:
        if parts > 1:  # one huge row, split by keys over columnar `log` events
            subject = run_subject(self.entity, self.run_uid, "log")
            (step, rts, kid, values) = unpack(rows[0])
            flat = flatten(dict(zip(self.keysets[kid], values, strict=True)))
            out = []
            for i, keys in enumerate(split_keys(flat)):
                body = encode_log_body([(step, rts, {k: flat[k] for k in keys})])
                out.append(self._event("log", seq + i, ts, body, subject, None))
            out[-1] = out[-1]._replace(columns={"last": flat, "series": {}, "batch": seq})
            return out
        used = self.keysets if kids is None else {k: self.keysets[k] for k in kids if k in self.keysets}
        body = {"n": len(rows), "keys": used, "rows": b"".join(rows)}
        subject = run_subject(self.entity, self.run_uid, "log_rows")
        return [self._event("log_rows", seq, ts, body, subject, self._mirror(rows, used, seq))]

    def _mirror(self, rows: list[bytes], keysets: dict[int, list[str]], seq: int) -> dict[str, Any]:
        """Last values (exact: the last row of each keyset) and a strided sample for sparklines."""
        last: dict[str, Any] = {}
        series: dict[str, list[Any]] = {}
        n = len(rows)
        stride = max(1, n // self.SAMPLED_ROWS)
        for i in range(0, n, stride):
            _step, _ts, kid, values = unpack(rows[i])
            for k, v in _flat_items(keysets.get(kid, ()), values):
                series.setdefault(k, []).append(v)
        pending = set(keysets)
        for raw in reversed(rows):
            if not pending:
                break
            _step, _ts, kid, values = unpack(raw)
            if kid in pending:
                pending.discard(kid)
                for k, v in _flat_items(keysets.get(kid, ()), values):
                    last.setdefault(k, v)
        return {"last": last, "series": series, "batch": seq}

    # -- console lines ---------------------------------------------------------------------------

    def _output_event(self, seq: int, ts: float, raws: list[bytes]) -> Outgoing:
        """One ``output`` event of the sealed console lines: each line once, in its last state
        (a progress bar redrawn within the batch collapses), in the order the lines first appear."""
        lines: dict[int, dict[str, Any]] = {}
        for raw in raws:
            line, stream, lts, text = unpack(raw)
            lines[line] = {"line": line, "stream": stream, "ts": lts, "text": text}
        body: dict[str, Any] = {"lines": list(lines.values())}
        if self.label is not None:
            body["label"] = self.label
        return self._event("output", seq, ts, body, run_subject(self.entity, self.run_uid, "output"), None)

    def _event(self, type_: str, seq: int, ts: float, body: dict[str, Any], subject: str,
               columns: dict[str, Any] | None) -> Outgoing:
        env = envelope(type_, self.run_uid, self.writer, seq, ts, body)
        return Outgoing(seq, type_, subject, encode_event(env), columns)


def _flat_items(keys: Sequence[str], values: Sequence[Any]) -> list[tuple[str, Any]]:
    if not any(type(v) is dict for v in values):
        return list(zip(keys, values, strict=False))
    return list(flatten(dict(zip(keys, values, strict=False))).items())
