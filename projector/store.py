"""The projection in DuckDB: schema, loading the fold state, and applying :class:`~.fold.Changes`
in one transaction together with the checkpoint. See :mod:`.schema` for every table and column.

Writes are columnar: each kind of row becomes one Arrow table that DuckDB ingests with
``INSERT ... SELECT`` (row-at-a-time ``executemany`` is three orders of magnitude slower).
History is appended as is unless a batch may rewrite (run, step, key) cells that already exist;
only then are the batch's rows of that run deduplicated (last write wins) and the cells they
replace deleted first.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from .errors import StoreError
from .fold import Changes, runtime_of
from .history import HISTORY_SCHEMA, PLAIN_HISTORY_SCHEMA
from .schema import INTERNAL_TABLES, PUBLIC_TABLES, TABLES_DDL, VIEWS, VIEWS_DDL
from .state import ProjectionState, RunState
from .summary import Row

_TS = pa.timestamp("us", tz="UTC")

RUNS_SCHEMA = pa.schema([
    ("run_uid", pa.string()), ("entity", pa.string()), ("project", pa.string()), ("run_id", pa.string()),
    ("path", pa.string()), ("name", pa.string()), ("state", pa.string()), ("notes", pa.string()),
    ("tags", pa.list_(pa.string())), ("group", pa.string()), ("job_type", pa.string()),
    ("mode", pa.string()), ("created_at", _TS), ("heartbeat_at", _TS), ("finished_at", _TS),
    ("runtime", pa.float64()), ("exit_code", pa.int32()), ("last_step", pa.int64()),
    ("metadata", pa.string()), ("origin_kind", pa.string()), ("origin_run_uid", pa.string()),
    ("origin_step", pa.float64()),
])
_VALUES_SCHEMA = pa.schema([("run_uid", pa.string()), ("key", pa.string()), ("value", pa.float64()),
                            ("value_json", pa.string())])
_METRICS_SCHEMA = pa.schema([("run_uid", pa.string()), ("name", pa.string()), ("step_metric", pa.string()),
                             ("summary", pa.list_(pa.string())), ("goal", pa.string()),
                             ("hidden", pa.bool_())])


def _micros(ts: float | None) -> int | None:
    return None if ts is None else round(ts * 1_000_000)


def runs_row(rs: RunState) -> dict[str, Any]:
    """The ``runs`` row of a run state."""
    from .values import to_json

    path = f"{rs.entity}/{rs.project}/{rs.run_id}" if rs.has_init else None
    return {
        "run_uid": rs.run_uid, "entity": rs.entity, "project": rs.project, "run_id": rs.run_id,
        "path": path, "name": rs.name, "state": rs.state, "notes": rs.notes, "tags": list(rs.tags),
        "group": rs.group, "job_type": rs.job_type, "mode": rs.mode,
        "created_at": _micros(rs.created_at), "heartbeat_at": _micros(rs.heartbeat_at),
        "finished_at": _micros(rs.finished_at), "runtime": runtime_of(rs), "exit_code": rs.exit_code,
        "last_step": rs.max_step, "metadata": None if rs.metadata is None else to_json(rs.metadata),
        "origin_kind": rs.origin_kind, "origin_run_uid": rs.origin_run_uid, "origin_step": rs.origin_step,
    }


def _value_table(per_run: dict[str, list[Row]]) -> pa.Table:
    uids, keys, vals, jsons = [], [], [], []
    for uid, rows in per_run.items():
        for k, v, j in rows:
            uids.append(uid)
            keys.append(k)
            vals.append(v)
            jsons.append(j)
    return pa.table([uids, keys, pa.array(vals, pa.float64()), jsons], schema=_VALUES_SCHEMA)


class Store:
    """One DuckDB file holding the projection.

    Args:
        path: the DuckDB file (created with its schema if missing).
        name: the projection's name in ``projector_checkpoint``.

    Raises:
        StoreError: the file cannot be opened (e.g. another process holds it).
    """

    def __init__(self, path: str | Path, name: str = "main") -> None:
        self.path = Path(path)
        self.name = name
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.con = duckdb.connect(str(self.path))
            self._create()
        except duckdb.Error as e:
            raise StoreError(f"cannot open the projection {self.path}: {e}") from e

    def _create(self) -> None:
        self.con.execute(TABLES_DDL)
        self.con.execute(VIEWS_DDL)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor on the same database, for readers in this process."""
        return self.con.cursor()

    def close(self) -> None:
        self.con.close()

    def reset(self) -> None:
        """Drop and recreate every table and view (a replay starts from here)."""
        with self._transaction():
            for v in VIEWS:
                self.con.execute(f"DROP VIEW IF EXISTS {v}")
            for t in (*PUBLIC_TABLES, *INTERNAL_TABLES):
                self.con.execute(f"DROP TABLE IF EXISTS {t}")
            self._create()

    def checkpoint(self) -> int:
        row = self.con.execute("SELECT stream_seq FROM projector_checkpoint WHERE name = ?",
                               [self.name]).fetchone()
        return int(row[0]) if row else 0

    def load(self) -> ProjectionState:
        """The fold state as of the last commit: every run's state and the checkpoint."""
        runs = {uid: RunState.from_bytes(blob)
                for uid, blob in self.con.execute("SELECT run_uid, state FROM projector_state").fetchall()}
        return ProjectionState(runs=runs, checkpoint=self.checkpoint())

    # -- writing -------------------------------------------------------------------------------

    def _transaction(self) -> _Tx:
        return _Tx(self.con)

    def apply(self, changes: Changes) -> None:
        """Write ``changes`` and move the checkpoint, atomically.

        Raises:
            StoreError: DuckDB refused the write; nothing of it was committed.
        """
        try:
            with self._transaction():
                self._history(changes)
                touched = list(changes.runs)
                if touched:
                    self._replace_runs(changes, touched)
                if changes.dead_letters:
                    dl = pa.table({
                        "stream_seq": pa.array([d.stream_seq for d in changes.dead_letters], pa.int64()),
                        "subject": [d.subject for d in changes.dead_letters],
                        "reason": [d.reason for d in changes.dead_letters],
                        "payload": pa.array([d.payload for d in changes.dead_letters], pa.binary()),
                        "received_at": pa.array([_micros(d.received_at) for d in changes.dead_letters], _TS),
                    })
                    self._insert("dead_letters", dl)
                if changes.applied:
                    ap = changes.applied
                    self._insert("applied", pa.table({
                        "run_uid": [a.run_uid for a in ap], "writer": [a.writer for a in ap],
                        "seq": pa.array([a.seq for a in ap], pa.int64()),
                        "stream_seq": pa.array([a.stream_seq for a in ap], pa.int64()),
                    }))
                self.con.execute(
                    "INSERT OR REPLACE INTO projector_checkpoint VALUES (?, ?, ?)",
                    [self.name, changes.checkpoint, _now()],
                )
        except duckdb.Error as e:
            raise StoreError(f"writing the projection {self.path} up to stream seq "
                             f"{changes.checkpoint} failed: {e}") from e

    def _insert(self, table: str, data: pa.Table, columns: str = "*") -> None:
        self.con.register("_rs_batch", data)
        try:
            self.con.execute(f"INSERT INTO {table} SELECT {columns} FROM _rs_batch")
        finally:
            self.con.unregister("_rs_batch")

    def _history(self, changes: Changes) -> None:
        if not changes.history:
            return
        dirty_runs = {c.run_uid for c in changes.history if c.dirty}
        clean = [b for c in changes.history if c.run_uid not in dirty_runs for b in c.batches]
        if clean:
            self._insert("history", pa.Table.from_batches(clean, HISTORY_SCHEMA)
                         .unify_dictionaries().combine_chunks())
        if not dirty_runs:
            return
        batches = [b for c in changes.history if c.run_uid in dirty_runs for b in c.batches]
        table = pa.Table.from_batches(batches, HISTORY_SCHEMA).cast(PLAIN_HISTORY_SCHEMA)
        table = _last_writes(table)
        self.con.register("_rs_rewrite", table)
        try:
            self.con.execute(
                "DELETE FROM history USING _rs_rewrite l WHERE history.run_uid = l.run_uid "
                "AND history.step = l.step AND history.key = l.key"
            )
            self.con.execute("INSERT INTO history SELECT * FROM _rs_rewrite")
        finally:
            self.con.unregister("_rs_rewrite")

    def _replace_runs(self, changes: Changes, touched: list[str]) -> None:
        states = [changes.runs[u] for u in touched]
        rows = [runs_row(rs) for rs in states]
        runs = pa.Table.from_pylist(rows, schema=RUNS_SCHEMA)
        self.con.register("_rs_touched", pa.table({"run_uid": touched}))
        try:
            for t in ("runs", "summary", "config", "metrics", "projector_state"):
                self.con.execute(f"DELETE FROM {t} WHERE run_uid IN (SELECT run_uid FROM _rs_touched)")
        finally:
            self.con.unregister("_rs_touched")
        self._insert("runs", runs)
        self._insert("summary", _value_table(changes.summary))
        self._insert("config", _value_table(changes.config))
        m_rows = [(uid, *row) for uid, rows in changes.metrics.items() for row in rows]
        if m_rows:
            self._insert("metrics", pa.Table.from_pylist(
                [dict(zip(_METRICS_SCHEMA.names, r, strict=True)) for r in m_rows], schema=_METRICS_SCHEMA))
        self._insert("projector_state", pa.table({
            "run_uid": touched, "state": pa.array([rs.to_bytes() for rs in states], pa.binary())}))

    def rows(self, table: str, where: str = "", params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows of a table, sorted (a convenience for tests and the CLI)."""
        return self.con.execute(f"SELECT * FROM {table} {where} ORDER BY ALL", list(params)).fetchall()


def _last_writes(table: pa.Table) -> pa.Table:
    """Keep the last row of every (run_uid, step, key): later writes win.

    Done in Arrow rather than with a SQL window: DuckDB's ``CREATE TABLE AS ... QUALIFY`` turns
    -0.0 into 0.0 (seen with duckdb 2.0), and -0.0 must survive.
    """
    ordered = table.append_column("_ord", pa.array(range(table.num_rows), pa.int64()))
    last = ordered.group_by(["run_uid", "step", "key"], use_threads=False).aggregate([("_ord", "max")])
    keep = pc.sort_indices(last["_ord_max"])
    return table.take(pc.take(last["_ord_max"], keep))


def _now() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC)


class _Tx:
    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def __enter__(self) -> None:
        self.con.begin()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.con.commit()
        else:
            self.con.rollback()
