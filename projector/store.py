"""The projection in DuckDB: schema, loading the fold state, and applying :class:`~.fold.Changes`
in one transaction together with the checkpoint. See :mod:`.schema` for every table and column.

Writes are columnar: each kind of row becomes one Arrow table that DuckDB ingests with
``INSERT ... SELECT`` (row-at-a-time ``executemany`` is three orders of magnitude slower).
History goes to integer-coded point tables behind the ``history`` view (:mod:`.points`): appended
as is unless a batch may rewrite (run, step, key) cells that already exist; only then are the
batch's rows of that run deduplicated (last write wins) and the cells they replace deleted first.
Summary, config and metrics rows of a run are rewritten only when they changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from .errors import StoreError
from .fold import Changes, runtime_of
from .points import PointWriter, last_writes
from .schema import STORED_TABLES, TABLES_DDL, VIEWS, VIEWS_DDL
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
    ("origin_step", pa.float64()), ("origin_depth", pa.int32()),
])
_VALUES_SCHEMA = pa.schema([("run_uid", pa.string()), ("key", pa.string()), ("value", pa.float64()),
                            ("value_json", pa.string())])
_METRICS_SCHEMA = pa.schema([("run_uid", pa.string()), ("name", pa.string()), ("step_metric", pa.string()),
                             ("summary", pa.list_(pa.string())), ("goal", pa.string()),
                             ("hidden", pa.bool_())])


def _micros(ts: float | None) -> int | None:
    return None if ts is None else round(ts * 1_000_000)


BLOCK_SIZE = 64 * 1024
"""DuckDB block size of new projection files. Every table with rows takes at least one block
and its segments end on block boundaries: with DuckDB's default 256 KiB a projection of one run
and 1M points took 8.0 MiB, with 64 KiB 4.8 MiB (16 KiB: 11.6, the segments no longer compress
well). Ingest speed is the same. Files that exist keep the block size they were created with."""


def _connect(path: Path) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path), config={"default_block_size": str(BLOCK_SIZE)})
    except duckdb.Error as e:
        if "default_block_size" not in str(e):
            raise
        return duckdb.connect(str(path))  # a DuckDB without the option: its default blocks


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
        "origin_depth": rs.depth,
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


def _columns(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows as an Arrow table with every column any row names (``from_pylist`` would take the
    first row's columns only); a row without a column gets NULL there."""
    names = list(dict.fromkeys(k for r in rows for k in r))
    return pa.table({n: [r.get(n) for r in rows] for n in names})


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
            self.con = _connect(self.path)
            self.points = PointWriter(self.con)
            self._create()
        except duckdb.Error as e:
            raise StoreError(f"cannot open the projection {self.path}: {e}") from e

    def _create(self) -> None:
        if self._old_layout():
            self.reset()  # the projection is a cache of the log: rebuild it in today's layout
            return
        self.con.execute(TABLES_DDL)
        self.con.execute(VIEWS_DDL)

    def _old_layout(self) -> bool:
        """True for files written by an older projector: a table of today's layout missing, or
        one whose columns differ (``history`` a plain table, say). An empty file is not old."""
        here = "database_name = current_database() AND schema_name = 'main'"
        found = self._columns(self.con, here)
        if not found:
            return False
        if "history" in found:  # a plain table in files of the first projectors
            return True
        mem = duckdb.connect()
        try:
            mem.execute(TABLES_DDL)
            wanted = self._columns(mem, "schema_name = 'main'")
        finally:
            mem.close()
        return any(found.get(t) != cols for t, cols in wanted.items())

    @staticmethod
    def _columns(con: duckdb.DuckDBPyConnection, where: str) -> dict[str, list[tuple[str, str]]]:
        rows = con.execute(f"SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE {where} "
                           "AND table_name IN (SELECT table_name FROM duckdb_tables() WHERE "
                           f"{where}) ORDER BY table_name, column_index").fetchall()
        out: dict[str, list[tuple[str, str]]] = {}
        for table, column, dtype in rows:
            out.setdefault(table, []).append((column, dtype))
        return out

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor on the same database, for readers in this process."""
        return self.con.cursor()

    def close(self) -> None:
        self.con.close()

    def reset(self) -> None:
        """Drop and recreate every table and view (a replay starts from here)."""
        self.points.forget()
        with self._transaction():
            here = "database_name = current_database() AND schema_name = 'main'"
            views = {r[0] for r in self.con.execute(f"SELECT view_name FROM duckdb_views() WHERE {here}").fetchall()}
            tables = {r[0] for r in self.con.execute(f"SELECT table_name FROM duckdb_tables() WHERE {here}").fetchall()}
            for v in reversed(VIEWS):
                if v in views:
                    self.con.execute(f"DROP VIEW {v}")
            for t in (*STORED_TABLES, "history"):  # "history": a table in files of older projectors
                if t in tables:
                    self.con.execute(f"DROP TABLE {t}")
            self.con.execute(TABLES_DDL)
            self.con.execute(VIEWS_DDL)

    def compact(self) -> None:
        """Write everything to the file compressed and empty the WAL (DuckDB compresses at
        checkpoint time; rows still in the WAL take several times the space)."""
        self.con.execute("CHECKPOINT")

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
                self._side_tables(changes)
                if changes.dead_letters:
                    dl = pa.table({
                        "stream_seq": pa.array([d.stream_seq for d in changes.dead_letters], pa.int64()),
                        "subject": [d.subject for d in changes.dead_letters],
                        "reason": [d.reason for d in changes.dead_letters],
                        "payload": pa.array([d.payload for d in changes.dead_letters], pa.binary()),
                        "received_at": pa.array([_micros(d.received_at) for d in changes.dead_letters], _TS),
                    })
                    self._insert("dead_letters", dl)
                for uid in changes.purged:
                    self.purge_run(uid)
                if changes.applied:
                    ap = changes.applied
                    self._insert("applied", pa.table({
                        "run_uid": [a.run_uid for a in ap], "writer": [a.writer for a in ap],
                        "seq": pa.array([a.seq for a in ap], pa.int64()),
                        "stream_seq": pa.array([a.stream_seq for a in ap], pa.int64()),
                    }))
                self._move_checkpoint(changes.checkpoint)
        except BaseException as e:
            self.points.forget()  # codes given out in the rolled-back transaction are void
            if not isinstance(e, duckdb.Error):
                raise
            raise StoreError(f"writing the projection {self.path} up to stream seq "
                             f"{changes.checkpoint} failed: {e}") from e

    def _move_checkpoint(self, seq: int) -> None:
        # an UPDATE costs a third of INSERT OR REPLACE on DuckDB's primary key
        updated = self.con.execute("UPDATE projector_checkpoint SET stream_seq = ?, updated_at = now() "
                                   "WHERE name = ?", [seq, self.name]).fetchone()
        if not updated or not updated[0]:
            self.con.execute("INSERT INTO projector_checkpoint VALUES (?, ?, now())", [self.name, seq])

    def _insert(self, table: str, data: pa.Table, columns: str = "*", *, by_name: bool = False) -> None:
        self.con.register("_rs_batch", data)
        try:
            self.con.execute(f"INSERT INTO {table} {'BY NAME ' if by_name else ''}SELECT {columns} FROM _rs_batch")
        finally:
            self.con.unregister("_rs_batch")

    def _side_tables(self, changes: Changes) -> None:
        """Upserts, then appends, of the side tables (by column name: a handler names only the
        columns it knows; the others are NULL)."""
        for table, (keys, rows) in changes.upserts.items():
            if not rows:
                continue
            data = last_writes(_columns(rows), list(keys))
            self.con.register("_rs_upsert", data.select(list(keys)))
            try:
                match = " AND ".join(f'{table}."{k}" IS NOT DISTINCT FROM u."{k}"' for k in keys)
                self.con.execute(f"DELETE FROM {table} USING _rs_upsert u WHERE {match}")
            finally:
                self.con.unregister("_rs_upsert")
            self._insert(table, data, by_name=True)
        for table, rows in changes.appends.items():
            if rows:
                self._insert(table, _columns(rows), by_name=True)

    def _history(self, changes: Changes) -> None:
        if not changes.history:
            return
        dirty_runs = {c.run_uid for c in changes.history if c.dirty}
        clean = [c for c in changes.history if c.run_uid not in dirty_runs]
        if clean:
            self.points.append(clean)
        if dirty_runs:
            self.points.rewrite([c for c in changes.history if c.run_uid in dirty_runs])
        self.points.flush_codes()

    def _replace_runs(self, changes: Changes, touched: list[str]) -> None:
        states = [changes.runs[u] for u in touched]
        # DELETE + INSERT: cheaper in DuckDB than INSERT OR REPLACE on these primary keys
        for table in ("runs", "projector_state"):
            self.con.execute(f"DELETE FROM {table} WHERE run_uid IN (SELECT unnest(?::VARCHAR[]))", [touched])
        self._insert("runs", pa.Table.from_pylist([runs_row(rs) for rs in states], schema=RUNS_SCHEMA))
        self._insert("projector_state", pa.table({
            "run_uid": touched, "state": pa.array([rs.to_bytes() for rs in states], pa.binary())}))
        # summary, config and metrics: every row of the run is replaced, unless unchanged
        for table in ("summary", "config", "metrics"):
            per_run: dict[str, list[Any]] = getattr(changes, table)
            stale = [u for u in touched if (table, u) not in changes.unchanged]
            if not stale:
                continue
            self.con.execute(f"DELETE FROM {table} WHERE run_uid IN (SELECT unnest(?::VARCHAR[]))", [stale])
            if table == "metrics":
                m_rows = [(uid, *row) for uid in stale for row in per_run[uid]]
                if m_rows:
                    self._insert("metrics", pa.Table.from_pylist(
                        [dict(zip(_METRICS_SCHEMA.names, r, strict=True)) for r in m_rows],
                        schema=_METRICS_SCHEMA))
            else:
                values = _value_table({u: per_run[u] for u in stale})
                if values.num_rows:
                    self._insert(table, values)

    KEPT_ON_PURGE = ("projector_state", "history_run_ids")
    """Rows a purge leaves: the run's tombstone fold state (so its later events are dropped) and
    its integer code (codes are handed out by count, so one must never be freed)."""

    def purge_run(self, run_uid: str) -> None:
        """Delete every row of a run (call inside :meth:`apply`'s transaction): every table with a
        ``run_uid`` column (side tables added later included) but :data:`KEPT_ON_PURGE`, its
        history points, and the dead letters of its subjects. :meth:`apply` calls it for each run
        of ``Changes.purged`` before inserting the batch's ``applied`` rows, so the tombstone's own
        row stays (as a replay of the purged stream has it)."""
        tables = [r[0] for r in self.con.execute(
            "SELECT DISTINCT c.table_name FROM duckdb_columns() c JOIN duckdb_tables() t USING "
            "(database_name, schema_name, table_name) WHERE c.database_name = current_database() "
            "AND c.schema_name = 'main' AND c.column_name = 'run_uid' ORDER BY 1").fetchall()]
        for table in tables:
            if table not in self.KEPT_ON_PURGE:
                self.con.execute(f'DELETE FROM "{table}" WHERE run_uid = ?', [run_uid])
        for table in ("history_numeric", "history_other", "history_steps"):  # every line: uid, uid~branch
            self.con.execute(f"DELETE FROM {table} WHERE run IN (SELECT id FROM history_run_ids "
                             "WHERE run_uid = ? OR starts_with(run_uid, ? || '~'))", [run_uid, run_uid])
        self.con.execute("DELETE FROM dead_letters WHERE split_part(subject, '.', 4) = ?", [run_uid])

    def rows(self, table: str, where: str = "", params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows of a table, sorted (a convenience for tests and the CLI)."""
        return self.con.execute(f"SELECT * FROM {table} {where} ORDER BY ALL", list(params)).fetchall()


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
