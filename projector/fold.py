"""The fold: stream records → changes to the projection. Pure: no NATS, no DuckDB.

``fold(state, records)`` decodes and validates each record, skips what was already applied
(by stream seq, and by ``(run_uid, writer, seq)`` since the server's dedup window is finite),
updates the per-run :class:`~.state.RunState` in place and returns the :class:`Changes` a store
writes in one transaction. Folding the same log with any batch boundaries, redeliveries or
restarts (state reloaded from its serialised form) yields the same tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgpack
import pyarrow as pa

from runstream.broker.codec import DecodeError, decode_event
from runstream.broker.events import Event, EventError, parse_event
from runstream.broker.names import parse_subject

from .alerts import fold_alert, fold_alert_delivery, fold_stop_requested
from .errors import EventRejected
from .files_fold import fold_artifact, fold_file
from .history import LogRows, log_rows
from .lifecycle import delete_run, drop_if_deleted, drop_late, move_run
from .lineage import (
    CLOCK_KEYS,
    MAX_STEP,
    MIN_STEP,
    SEGMENT_KEYS,
    clock_until,
    continued,
    line_name,
    segment_rows,
)
from .packed_rows import decode_log_rows
from .state import KeyStats, ProjectionState, RunState, SeqSet
from .summary import Row, config_rows, metric_rows, summary_rows
from .telemetry import fold_output, fold_system
from .values import flatten

REAPER_WRITER = "reaper"
"""Writer id of crash decisions; its events do not count as heartbeats."""

TERMINAL_STATES = frozenset({"finished", "failed", "killed"})
NOT_SIGNS_OF_LIFE = frozenset({"meta", "stop_requested", "alert_delivery", "move", "delete"})
"""Event types written by others than the run (the Api, the server): no heartbeat of the run."""
_AGGS = ("min", "max", "mean", "first")


class Record(NamedTuple):
    """One stream message: its stream sequence, subject, payload and stream time (epoch s).

    ``data`` may be the raw msgpack bytes or an already decoded envelope dict.
    """

    stream_seq: int
    subject: str
    data: bytes | dict[str, Any]
    time: float | None = None


class DeadLetter(NamedTuple):
    stream_seq: int
    subject: str
    reason: str
    payload: bytes
    received_at: float | None


class Applied(NamedTuple):
    run_uid: str
    writer: str
    seq: int
    stream_seq: int


@dataclass
class HistoryChunk:
    """History rows of one log event, on one stored line (``run_uid``: the run's uid, or
    ``<uid>~<branch>`` after a rewind; see :mod:`.lineage`). ``dirty``: they may replace rows already stored (a step at
    or below the run's previous max step, or repeated steps within the event)."""

    run_uid: str
    batches: list[pa.RecordBatch]
    dirty: bool
    rows: pa.RecordBatch | None = None
    """The event's rows (``step``, ``timestamp``): a store may keep timestamps per row."""


@dataclass
class Changes:
    """What one fold produced; a store applies it atomically with ``checkpoint``."""

    checkpoint: int
    history: list[HistoryChunk] = field(default_factory=list)
    runs: dict[str, RunState] = field(default_factory=dict)
    """Touched runs' states (their ``runs`` row and ``projector_state`` blob are rewritten)."""
    summary: dict[str, list[Row]] = field(default_factory=dict)
    config: dict[str, list[Row]] = field(default_factory=dict)
    metrics: dict[str, list[tuple[str, str | None, list[str] | None, str | None, bool]]] = field(
        default_factory=dict)
    unchanged: set[tuple[str, str]] = field(default_factory=set)
    """``(table, run_uid)`` of summary/config/metrics rows equal to the ones this state last
    handed out: a store need not rewrite them."""
    dead_letters: list[DeadLetter] = field(default_factory=list)
    applied: list[Applied] = field(default_factory=list)
    skipped: int = 0
    """Events already applied (redeliveries) that were skipped."""
    appends: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Rows for side tables (console, system_metrics, alerts, files, ...), by table, in stream
    order; a store inserts them by column name. Add with :meth:`append`."""
    upserts: dict[str, tuple[tuple[str, ...], list[dict[str, Any]]]] = field(default_factory=dict)
    """``table → (key columns, rows)``: each row replaces the stored rows with the same key values
    (a later row of the same key in this batch wins). Add with :meth:`upsert`; a store runs upserts
    before appends, so a key must not be queued both ways in one batch."""
    keyed: dict[str, dict[tuple[Any, ...], int]] = field(default_factory=dict)
    """``table → key → index in appends[table]`` of rows queued with :meth:`append_once`."""
    purged: list[str] = field(default_factory=list)
    """Runs deleted in this batch (a ``delete`` tombstone): the store purges every row they have
    (:meth:`~.store.Store.purge_run`)."""
    dropped: int = 0
    """Events of deleted runs that arrived after their tombstone, dropped (not dead-lettered:
    deleted data must go)."""
    late: list[tuple[str, int]] = field(default_factory=list)
    """``(run_uid, stream_seq)`` of those dropped events, for the server to purge from the stream."""

    def append(self, table: str, *rows: dict[str, Any]) -> None:
        """Queue ``rows`` (column name → value) for insertion into the side table ``table``."""
        self.appends.setdefault(table, []).extend(rows)

    def append_once(self, table: str, key: tuple[Any, ...], row: dict[str, Any]) -> None:
        """Queue ``row`` for insertion, replacing a row queued in this batch under the same ``key``
        (for rows known to be new to the table: no DELETE needed)."""
        index = self.keyed.setdefault(table, {})
        rows = self.appends.setdefault(table, [])
        at = index.get(key)
        if at is None:
            index[key] = len(rows)
            rows.append(row)
        else:
            rows[at] = row

    def queued(self, table: str, key: tuple[Any, ...]) -> bool:
        """Whether :meth:`append_once` queued a row under ``key`` in this batch."""
        return key in self.keyed.get(table, ())

    def upsert(self, table: str, keys: tuple[str, ...], *rows: dict[str, Any]) -> None:
        """Queue ``rows`` replacing the rows of ``table`` with equal ``keys`` columns."""
        have = self.upserts.get(table)
        if have is None:
            self.upserts[table] = (tuple(keys), list(rows))
        elif have[0] != tuple(keys):
            raise ValueError(f"upsert into {table}: keys {keys} differ from {have[0]} earlier in the batch")
        else:
            have[1].extend(rows)

    @property
    def points(self) -> int:
        return sum(b.num_rows for c in self.history for b in c.batches)


def fold(state: ProjectionState, records: Iterable[Record | tuple[Any, ...]]) -> Changes:
    """Fold ``records`` (in stream order) into ``state`` and return the resulting changes.

    ``state`` is updated in place: if the caller fails to store the changes it must reload the
    state from the store. Records at or below ``state.checkpoint`` are ignored.
    """
    changes = Changes(checkpoint=state.checkpoint)
    for raw in records:
        rec = raw if isinstance(raw, Record) else Record(*raw)
        if rec.stream_seq <= state.checkpoint:
            continue
        state.checkpoint = rec.stream_seq
        try:
            _fold_one(state, rec, changes)
        except EventRejected as e:
            if drop_if_deleted(state, rec, changes):
                continue
            payload = rec.data if isinstance(rec.data, bytes) else _repack(rec.data)
            changes.dead_letters.append(DeadLetter(rec.stream_seq, rec.subject, str(e), payload, rec.time))
    changes.checkpoint = state.checkpoint
    for uid, rs in changes.runs.items():
        for table, rows in (("summary", summary_rows(rs)), ("config", config_rows(rs)),
                            ("metrics", metric_rows(rs))):
            getattr(changes, table)[uid] = rows
            packed = msgpack.packb(rows)  # bytes compare -0.0 ≠ 0.0 and NaN = NaN, as stored
            if state.written.get((table, uid)) == packed:
                changes.unchanged.add((table, uid))
            else:
                state.written[(table, uid)] = packed
    return changes


def _repack(env: dict[str, Any]) -> bytes:
    from runstream.broker.codec import pack

    return pack(env)


def _decode(rec: Record) -> tuple[str, Event, dict[str, Any]]:
    try:
        entity, uid, kind = parse_subject(rec.subject)
    except ValueError as e:
        raise EventRejected(str(e)) from e
    try:
        env = decode_event(rec.data) if isinstance(rec.data, bytes) else rec.data
        ev = parse_event(env)
    except (DecodeError, EventError) as e:
        raise EventRejected(str(e)) from e
    if ev.run_uid != uid:
        raise EventRejected(f"envelope run {ev.run_uid!r} does not match subject run {uid!r}")
    if ev.type != kind:
        raise EventRejected(f"envelope type {ev.type!r} does not match subject kind {kind!r}")
    return entity, ev, env


def _fold_one(state: ProjectionState, rec: Record, changes: Changes) -> None:
    entity, ev, env = _decode(rec)
    rs = state.runs.get(ev.run_uid) or RunState(run_uid=ev.run_uid, entity=entity)
    if rs.deleted_at is not None and ev.type != "delete":
        drop_late(rs.run_uid, rec, changes)
        return
    seqs = rs.applied.get(ev.writer)
    if seqs is not None and ev.seq in seqs:
        changes.skipped += 1
        return
    line = line_name(rs.run_uid, rs.branch)
    if ev.type == "log":  # may reject: before any other mutation
        _log(rs, line, log_rows(line, env["b"]), changes)
    elif ev.type == "log_rows":
        _log(rs, line, decode_log_rows(line, env["b"]), changes)
    ctx = Context(state, changes, rec)
    if not rs.segments:  # first sight of the run: one line, every step
        _set_branch(rs, 0, [[line, MIN_STEP, MAX_STEP]], ctx)
    handler = _HANDLERS.get(ev.type)
    if handler is not None:  # before the heartbeat: a resume continues from the last sign of life
        handler(rs, ev, ctx)
    if ev.writer != REAPER_WRITER and ev.type not in NOT_SIGNS_OF_LIFE:
        _heartbeat(rs, ev.ts)
    if seqs is None:
        seqs = rs.applied[ev.writer] = SeqSet()
    seqs.add(ev.seq)
    state.runs[ev.run_uid] = rs
    changes.runs[ev.run_uid] = rs
    changes.applied.append(Applied(ev.run_uid, ev.writer, ev.seq, rec.stream_seq))


class Context(NamedTuple):
    """What a handler may need besides its run and event: the whole projection (e.g. another run's
    state), the batch's changes (side-table rows) and the record itself."""

    state: ProjectionState
    changes: Changes
    record: Record


Handler = Callable[[RunState, Event, Context], None]


def _heartbeat(rs: RunState, ts: float) -> None:
    if rs.heartbeat_at is None or ts > rs.heartbeat_at:
        rs.heartbeat_at = ts
    if rs.state == "crashed" and rs.crash_until is not None and ts > rs.crash_until:
        rs.state = "running"
        rs.crash_until = None


def _log(rs: RunState, line: str, rows: LogRows, changes: Changes) -> None:
    """Fold one ``log`` or ``log_rows`` event's decoded rows into the run's current ``line``."""
    if rows.min_step is None or rows.max_step is None:
        return
    dirty = not rows.increasing or (rs.max_step is not None and rows.min_step <= rs.max_step)
    changes.history.append(HistoryChunk(line, rows.batches, dirty, rows.rows))
    if rs.max_step is None or rows.max_step > rs.max_step:
        rs.max_step = rows.max_step
    for key, cs in rows.stats.items():
        st = rs.stats.get(key)
        if st is None:
            st = rs.stats[key] = KeyStats()
        st.merge(cs.logged, cs.count, cs.total, cs.min, cs.max, cs.first, cs.last)
        rs.explicit.pop(key, None)
        if rs.deleted:
            gone = {key, *(f"{key}.{a}" for a in _AGGS)}
            rs.deleted = [k for k in rs.deleted if k not in gone]


def _init(rs: RunState, ev: Event, ctx: Context) -> None:
    """A run starts, or a new session of it starts (``origin``): resume, fork or rewind."""
    b: Any = ev.body
    origin = b.origin
    if not rs.has_init or rs.created_at is None:
        rs.created_at = b.start_time
    rs.has_init = True
    given = b.model_fields_set
    rs.entity, rs.project, rs.run_id = b.entity, b.project, b.run_id
    for name in ("name", "notes", "group", "job_type"):
        if name in given and (getattr(b, name) is not None or origin is None):
            setattr(rs, name, getattr(b, name))
    if "tags" in given or origin is None:
        rs.tags = list(b.tags)
    rs.mode = b.mode
    offset = 0.0
    if origin is not None:
        offset = _origin(rs, ev, origin, ctx)
        rs.origin_kind, rs.origin_run_uid, rs.origin_step = origin.kind, origin.run_uid, origin.step
    rs.config.update(flatten(b.config))
    meta = (b.model_extra or {}).get("metadata")
    if isinstance(meta, dict):
        rs.metadata = {**(rs.metadata or {}), **meta}
    if origin is not None or rs.state not in TERMINAL_STATES:
        rs.state = "running"
    rs.clock.append([b.start_time, offset])
    ctx.changes.upsert("history_clock", CLOCK_KEYS, *_clock_rows(rs))
    rs.session_offset[ev.writer] = offset
    rs.primary = ev.writer
    _writer(rs, ev.writer, ctx, label=b.label, primary=True, joined_at=b.start_time)


def _origin(rs: RunState, ev: Event, origin: Any, ctx: Context) -> float:
    """Apply a resume, fork or rewind; return the runtime the new session continues from."""
    start = ev.body.start_time  # type: ignore[attr-defined]
    before = runtime_of(rs)
    rs.finished_at, rs.exit_code, rs.runtime, rs.crash_until = None, None, None, None
    if origin.kind == "resume":
        return before or 0.0
    if origin.step is None:
        raise EventRejected(f"{origin.kind} of run {rs.run_uid}: the origin has no step")
    try:
        if origin.kind == "fork":
            parent = ctx.state.runs.get(origin.run_uid)
            inherited = parent.segments.get(parent.branch, []) if parent is not None else []
            segments = continued(inherited, origin.step, line_name(rs.run_uid, 0))
            if parent is not None:
                rs.config = {**parent.config, **rs.config}
                rs.metrics = {**parent.metrics, **rs.metrics}
                rs.clock = clock_until(parent.clock, start)
                rs.depth = parent.depth + 1
            else:
                rs.depth = origin.depth or 1
            _set_branch(rs, 0, segments, ctx)
        else:  # rewind: a new branch of the same run
            if origin.run_uid != rs.run_uid:
                raise EventRejected(f"rewind of run {rs.run_uid} names another run {origin.run_uid}")
            segments = continued(rs.segments.get(rs.branch, []), origin.step, "")
            branch = max(rs.segments, default=0) + 1
            segments[-1][0] = line_name(rs.run_uid, branch)
            ctx.changes.upsert("history_segments", SEGMENT_KEYS,
                               *segment_rows(rs.run_uid, rs.branch, rs.segments.get(rs.branch, []), False))
            _set_branch(rs, branch, segments, ctx)
            rs.clock = clock_until(rs.clock, start)
    except ValueError as e:
        raise EventRejected(f"{origin.kind} of run {rs.run_uid}: {e}") from e
    rs.stats = {k: KeyStats.from_list(list(v)) for k, v in (origin.stats or {}).items() if len(v) == 7}
    rs.explicit, rs.deleted = {}, []
    rs.max_step = origin.last_step
    return float(origin.runtime or 0.0)


def _set_branch(rs: RunState, branch: int, segments: list[list[Any]], ctx: Context) -> None:
    rs.branch = branch
    rs.segments[branch] = segments
    ctx.changes.upsert("history_segments", SEGMENT_KEYS, *segment_rows(rs.run_uid, branch, segments, True))


def _clock_rows(rs: RunState) -> list[dict[str, Any]]:
    return [{"run_uid": rs.run_uid, "since": since, "runtime_offset": offset} for since, offset in rs.clock]


def _writer(rs: RunState, writer: str, ctx: Context, **fields: Any) -> None:
    """Update the ``run_writers`` row of ``writer``."""
    row = rs.writers.setdefault(writer, {"run_uid": rs.run_uid, "writer": writer, "label": None,
                                         "primary": False, "joined_at": None, "finished_at": None,
                                         "state": "running", "exit_code": None})
    row.update(fields)
    ctx.changes.upsert("run_writers", ("run_uid", "writer"), dict(row))


def _join(rs: RunState, ev: Event, ctx: Context) -> None:
    """Another process writes into this run (shared mode)."""
    b: Any = ev.body
    rs.session_offset[ev.writer] = 0.0
    _writer(rs, ev.writer, ctx, label=b.label, primary=False, joined_at=b.start_time)


def _config(rs: RunState, ev: Event, ctx: Context) -> None:
    rs.config.update(flatten(ev.body.set))  # type: ignore[attr-defined]


def _summary(rs: RunState, ev: Event, ctx: Context) -> None:
    b: Any = ev.body
    for k, v in b.set.items():
        rs.explicit[k] = v
        if k in rs.deleted:
            rs.deleted.remove(k)
    for k in b.delete:
        rs.explicit.pop(k, None)
        if k not in rs.deleted:
            rs.deleted.append(k)


def _define_metric(rs: RunState, ev: Event, ctx: Context) -> None:
    b: Any = ev.body
    rs.metrics.pop(b.name, None)  # a redefinition counts as the most recent
    rs.metrics[b.name] = {"step_metric": b.step_metric, "summary": list(b.summary) if b.summary else None,
                          "goal": b.goal, "hidden": b.hidden}


def _metadata(rs: RunState, ev: Event, ctx: Context) -> None:
    rs.metadata = {**(rs.metadata or {}), **ev.body.metadata}  # type: ignore[attr-defined]


def _finish(rs: RunState, ev: Event, ctx: Context) -> None:
    """A writer ends. The primary writer's finish (or any, in a run without one) ends the run; a
    shared-mode writer that joined ends only its own part (``run_writers``)."""
    b: Any = ev.body
    joined = rs.writers.get(ev.writer)
    if joined is not None:
        _writer(rs, ev.writer, ctx, state=b.state, exit_code=b.exit_code, finished_at=ev.ts)
        if not joined["primary"] and rs.primary is not None:
            return
    rs.state, rs.exit_code = b.state, b.exit_code
    rs.runtime = rs.session_offset.get(ev.writer, 0.0) + b.runtime
    rs.finished_at = ev.ts
    rs.crash_until = None


def _crashed(rs: RunState, ev: Event, ctx: Context) -> None:
    b: Any = ev.body
    if rs.state in TERMINAL_STATES:
        return
    until = b.last_heartbeat + b.timeout
    if rs.heartbeat_at is not None and rs.heartbeat_at > until:
        return  # the run beat again after the lapse this decision was about
    rs.state = "crashed"
    rs.crash_until = until


def _meta(rs: RunState, ev: Event, ctx: Context) -> None:
    """An edit of descriptive fields (``Api().run(...).update()``): only the fields it sets change."""
    b: Any = ev.body
    for name in ("name", "notes", "group", "job_type"):
        if name in b.model_fields_set:
            setattr(rs, name, getattr(b, name))
    if "tags" in b.model_fields_set:
        rs.tags = list(b.tags or [])


_HANDLERS: dict[str, Handler] = {
    "init": _init,
    "meta": _meta,
    "config": _config,
    "summary": _summary,
    "define_metric": _define_metric,
    "metadata": _metadata,
    "finish": _finish,
    "crashed": _crashed,
    "join": _join,
    "alert": fold_alert,
    "alert_delivery": fold_alert_delivery,
    "stop_requested": fold_stop_requested,
    "file": fold_file,
    "artifact": fold_artifact,
    "system": fold_system,
    "output": fold_output,
    "move": move_run,
    "delete": delete_run,
}


def runtime_of(rs: RunState) -> float | None:
    """Seconds the run ran: the finish event's figure once finished, else the current session's
    runtime offset + (last heartbeat − the session's start). A resumed, forked or rewound run
    continues from where its origin was (see :mod:`.lineage`)."""
    if rs.state in TERMINAL_STATES and rs.runtime is not None:
        return rs.runtime
    if rs.heartbeat_at is None or rs.created_at is None:
        return None
    since, offset = rs.clock[-1] if rs.clock else (rs.created_at, 0.0)
    return offset + max(0.0, rs.heartbeat_at - since)
