"""Time travel: a run's history as it was at a past moment, rebuilt from the log.

The projection holds only the present. The log holds every moment: folding a run's events (and
those of the runs it was forked from) up to a stream sequence, or up to a time, into a throwaway
in-memory projection gives the run exactly as it was then — before a rewind, say. That is what
``GET /api/runs/.../history?as_of=...`` and ``Api().run(p).history(as_of=...)`` answer.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import anyio
import pyarrow as pa

from ..broker.names import STREAM, run_subjects
from .errors import QueryError

__all__ = ["AsOf", "fold_as_of", "lineage_uids", "parse_as_of"]

FETCH = 5000


class AsOf:
    """A moment of the log: a stream sequence (``seq``) or an epoch time (``time``)."""

    def __init__(self, seq: int | None = None, time: float | None = None) -> None:
        if (seq is None) == (time is None):
            raise ValueError("give a stream sequence or a time")
        self.seq, self.time = seq, time

    def includes(self, stream_seq: int, stream_time: float | None) -> bool:
        if self.seq is not None:
            return stream_seq <= self.seq
        return stream_time is None or self.time is None or stream_time <= self.time

    def __repr__(self) -> str:
        return f"stream seq {self.seq}" if self.seq is not None else f"time {self.time}"


def parse_as_of(text: str) -> AsOf:
    """``"1234"`` → stream sequence 1234; ``"1732000000.5"`` → that epoch time; an ISO 8601 text
    (``2026-12-01T08:30:00Z``) → that time (UTC unless it says otherwise)."""
    text = text.strip()
    if text.isdigit():
        return AsOf(seq=int(text))
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise QueryError(f"as_of {text!r} is not a finite time")
        return AsOf(time=value)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"as_of {text!r} is neither a stream sequence, an epoch time nor an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return AsOf(time=moment.timestamp())


def lineage_uids(cur: Any, run_uid: str) -> list[str]:
    """The run and every run it was forked from (their events make up its history)."""
    out, seen = [run_uid], {run_uid}
    uid = run_uid
    while True:
        row = cur.execute("SELECT origin_kind, origin_run_uid FROM runs WHERE run_uid = ?", [uid]).fetchone()
        if row is None or row[0] != "fork" or not row[1] or row[1] in seen:
            return out
        uid = row[1]
        seen.add(uid)
        out.append(uid)


async def fold_as_of(js: Any, uids: list[str], as_of: AsOf) -> Any:
    """Fold the events of ``uids`` up to ``as_of`` into a new in-memory :class:`Store`; return it
    (the caller reads it, then closes it)."""
    import nats.errors
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    from ..projector.fold import Record, fold
    from ..projector.state import ProjectionState
    from ..projector.store import Store

    store = await anyio.to_thread.run_sync(Store, ":memory:", "as_of")
    state = ProjectionState()
    cfg = ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, inactive_threshold=30.0,
                         mem_storage=True, filter_subjects=[run_subjects(u) for u in uids])
    sub = await js.pull_subscribe("", durable=None, stream=STREAM, config=cfg)
    try:
        done = False
        while not done:
            try:
                msgs = await sub.fetch(FETCH, timeout=0.5)
            except nats.errors.TimeoutError:
                break  # nothing more of these runs
            records = []
            for m in msgs:
                meta = m.metadata
                when = meta.timestamp.timestamp()
                if not as_of.includes(meta.sequence.stream, when):
                    done = True
                    break
                records.append(Record(meta.sequence.stream, m.subject, m.data, when))
                if meta.num_pending == 0:
                    done = True
            if records:
                changes = fold(state, records)
                await anyio.to_thread.run_sync(store.apply, changes)
    finally:
        try:
            await sub.unsubscribe()
        except Exception:  # the consumer expires on its own
            pass
    return store


def empty_history() -> pa.Table:
    return pa.table({"_step": pa.array([], pa.int64()), "_timestamp": pa.array([], pa.float64()),
                     "_runtime": pa.array([], pa.float64())})
