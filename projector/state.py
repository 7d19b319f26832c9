"""Per-run fold state: everything the projector must remember between batches (and restarts).

The state of a run is serialised with msgpack into ``projector_state`` in the same transaction as
the rows it produced, so a restarted projector folds on exactly where it left off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import msgpack


def _nan_min(a: float | None, b: float) -> float:
    if a is None or math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return b if b < a else a


def _nan_max(a: float | None, b: float) -> float:
    if a is None or math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return b if b > a else a


@dataclass
class KeyStats:
    """Running aggregates of one history key: what ``define_metric`` summaries need.

    ``count``/``total``/``min``/``max`` cover numeric values only (NaN is skipped by min and max,
    and propagates through the mean, as in W&B); ``first``/``last`` cover every logged value.
    """

    logged: int = 0
    count: int = 0
    total: float = 0.0
    min: float | None = None
    max: float | None = None
    first: Any = None
    last: Any = None

    def merge(self, logged: int, count: int, total: float, lo: float | None, hi: float | None,
              first: Any, last: Any) -> None:
        """Fold the aggregates of one event's column (in stream order) into these."""
        if logged == 0:
            return
        if self.logged == 0:
            self.first = first
        self.logged += logged
        self.last = last
        if count:
            self.count += count
            self.total += total
            if lo is not None:
                self.min = _nan_min(self.min, lo)
            if hi is not None:
                self.max = _nan_max(self.max, hi)

    def to_list(self) -> list[Any]:
        return [self.logged, self.count, self.total, self.min, self.max, self.first, self.last]

    @classmethod
    def from_list(cls, v: list[Any]) -> KeyStats:
        return cls(*v)


class SeqSet:
    """Sequence numbers already applied for one writer, kept as sorted inclusive intervals."""

    __slots__ = ("spans",)

    def __init__(self, spans: list[list[int]] | None = None) -> None:
        self.spans: list[list[int]] = spans if spans is not None else []

    def __contains__(self, seq: int) -> bool:
        lo, hi = 0, len(self.spans)
        while lo < hi:
            mid = (lo + hi) // 2
            a, b = self.spans[mid]
            if seq < a:
                hi = mid
            elif seq > b:
                lo = mid + 1
            else:
                return True
        return False

    def add(self, seq: int) -> None:
        spans = self.spans
        if spans and spans[-1][1] + 1 == seq:  # the common case: the next seq of the writer
            spans[-1][1] = seq
            return
        lo, hi = 0, len(spans)
        while lo < hi:
            mid = (lo + hi) // 2
            if spans[mid][0] <= seq:
                lo = mid + 1
            else:
                hi = mid
        i = lo  # spans[:i] start at or before seq
        if i > 0 and spans[i - 1][0] <= seq <= spans[i - 1][1]:
            return
        join_left = i > 0 and spans[i - 1][1] + 1 == seq
        join_right = i < len(spans) and spans[i][0] - 1 == seq
        if join_left and join_right:
            spans[i - 1][1] = spans[i][1]
            del spans[i]
        elif join_left:
            spans[i - 1][1] = seq
        elif join_right:
            spans[i][0] = seq
        else:
            spans.insert(i, [seq, seq])


@dataclass
class RunState:
    """Everything known about one run after folding its events so far."""

    run_uid: str
    entity: str | None = None
    project: str | None = None
    run_id: str | None = None
    name: str | None = None
    notes: str | None = None
    tags: list[str] = field(default_factory=list)
    group: str | None = None
    job_type: str | None = None
    mode: str | None = None
    state: str = "running"
    created_at: float | None = None
    heartbeat_at: float | None = None
    finished_at: float | None = None
    runtime: float | None = None
    exit_code: int | None = None
    metadata: dict[str, Any] | None = None
    origin_kind: str | None = None
    origin_run_uid: str | None = None
    origin_step: float | None = None
    has_init: bool = False
    crash_until: float | None = None
    """While crashed: SDK events stamped after this time bring the run back to running."""
    max_step: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, KeyStats] = field(default_factory=dict)
    explicit: dict[str, Any] = field(default_factory=dict)
    """Summary keys set by ``summary`` events; they win until the key is logged again."""
    deleted: list[str] = field(default_factory=list)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    applied: dict[str, SeqSet] = field(default_factory=dict)
    branch: int = 0
    """The current branch (a rewind opens the next one); see :mod:`.lineage`."""
    segments: dict[int, list[list[Any]]] = field(default_factory=dict)
    """Branch → its segments ``[line, min_step, max_step]``; empty until the run is first seen."""
    clock: list[list[float]] = field(default_factory=list)
    """Sessions ``[since, runtime_offset]``: ``_runtime`` of a row at time t is t − since +
    offset of the last session started by t (resume, fork and rewind continue it)."""
    session_offset: dict[str, float] = field(default_factory=dict)
    """Writer → the runtime its session started at (its ``finish`` runtime counts from there)."""
    primary: str | None = None
    """The writer of the latest ``init``: its ``finish`` sets the run's state."""
    writers: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Writer → its ``run_writers`` row (shared mode and sessions)."""
    depth: int = 0
    """Fork depth: 0 for a run that is no fork, the parent's + 1 otherwise."""
    console_top: dict[str, int] | None = field(default_factory=dict)
    """Per writer, the highest console line number stored: a higher one is new (appended), a lower
    one may replace a stored row (the rare upsert). None in a state stored before it was kept:
    unknown, so every line of that run is upserted."""
    deleted_at: float | None = None
    """Set by a ``delete`` tombstone: the run's data is purged and its later events are dropped."""

    def to_bytes(self) -> bytes:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["stats"] = {k: s.to_list() for k, s in self.stats.items()}
        d["applied"] = {w: s.spans for w, s in self.applied.items()}
        return msgpack.packb(d, use_bin_type=True)

    @classmethod
    def from_bytes(cls, data: bytes) -> RunState:
        d = msgpack.unpackb(data, raw=False, strict_map_key=False)
        d["stats"] = {k: KeyStats.from_list(v) for k, v in d["stats"].items()}
        d["applied"] = {w: SeqSet(s) for w, s in d["applied"].items()}
        d.setdefault("console_top", None)
        return cls(**d)


@dataclass
class ProjectionState:
    """The fold's whole memory: every run's state and the last stream seq folded."""

    runs: dict[str, RunState] = field(default_factory=dict)
    checkpoint: int = 0
    written: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False, compare=False)
    """``(table, run_uid)`` → the rows last handed to the store, packed (not persisted: a state loaded
    from the store starts empty, so its first changes rewrite every touched run)."""
