"""How history is stored: integer-coded point tables behind the ``history`` view.

The fold hands over history rows in the public long form (run_uid, step, key, value, value_json,
timestamp; run_uid and key dictionary-encoded). Storing them that way costs DuckDB a string per
point twice over: ingesting 1M rows with two VARCHAR columns took ~2.5× as long as with integers,
and scanning them back was slower too. And a row's timestamp repeated for each of its keys cost
more than the value itself (real clock readings do not compress). So the projection stores

* ``history_numeric`` (run INTEGER, step BIGINT, key INTEGER, value DOUBLE): every point whose
  value is a number (``value_json`` NULL) — nearly all of them — key-major within each event, so
  run, key and step compress to almost nothing and the value is left;
* ``history_other`` (the same plus ``value_json`` VARCHAR): points with a non-numeric value;
* ``history_steps`` (run, step, timestamp): one row per logged row (the last write per step);
* ``history_run_ids`` (id, run_uid) and ``history_key_ids`` (id, key): the integer codes;

and ``history`` is a view joining them back into the documented columns. Codes are given out here
(the storage's business, not the fold's), in the same transaction as the points that use them;
their cache is dropped whenever a transaction does not commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from .fold import HistoryChunk

NUMERIC_SCHEMA = pa.schema([
    ("run", pa.int32()), ("step", pa.int64()), ("key", pa.int32()), ("value", pa.float64()),
])
OTHER_SCHEMA = pa.schema([
    ("run", pa.int32()), ("step", pa.int64()), ("key", pa.int32()), ("value", pa.float64()),
    ("value_json", pa.string()),
])
STEPS_SCHEMA = pa.schema([("run", pa.int32()), ("step", pa.int64()), ("timestamp", pa.float64())])
_NUMERIC_COLUMNS = list(NUMERIC_SCHEMA.names)


class Codes:
    """Names → small integer codes of one dimension table (``history_run_ids``/``history_key_ids``).

    Loaded lazily from the table; new codes are remembered in ``pending`` until :meth:`flush`
    writes them (inside the caller's transaction). :meth:`forget` drops the cache after a rollback.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, table: str, column: str) -> None:
        self.con, self.table, self.column = con, table, column
        self._codes: dict[str, int] | None = None
        self.pending: list[tuple[int, str]] = []

    def _loaded(self) -> dict[str, int]:
        if self._codes is None:
            rows = self.con.execute(f"SELECT {self.column}, id FROM {self.table}").fetchall()
            self._codes = {name: int(code) for name, code in rows}
        return self._codes

    def codes(self, names: Iterable[str]) -> pa.Array:
        """int32 codes of ``names``, in order; unknown names get the next free codes."""
        known = self._loaded()
        out = []
        for name in names:
            code = known.get(name)
            if code is None:
                code = known[name] = len(known)
                self.pending.append((code, name))
            out.append(code)
        return pa.array(out, pa.int32())

    def flush(self) -> None:
        """Insert the codes given out since the last flush."""
        if not self.pending:
            return
        new = pa.table({"id": pa.array([c for c, _ in self.pending], pa.int32()),
                        self.column: [n for _, n in self.pending]})
        self.con.register("_rs_codes", new)
        try:
            self.con.execute(f"INSERT INTO {self.table} SELECT * FROM _rs_codes")
        finally:
            self.con.unregister("_rs_codes")
        self.pending = []

    def forget(self) -> None:
        self._codes = None
        self.pending = []


def _decode_dict(col: pa.Array, codes: Codes) -> pa.Array:
    """A dictionary-encoded string column → its int32 codes (one lookup per distinct value)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_dictionary(col.type):
        return codes.codes(col.dictionary.to_pylist()).take(col.indices)
    return codes.codes(col.to_pylist())


class PointWriter:
    """Writes history record batches (the fold's long form) into the point tables."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.runs = Codes(con, "history_run_ids", "run_uid")
        self.keys = Codes(con, "history_key_ids", "key")

    def forget(self) -> None:
        """Drop the code caches (after a rollback, or when the tables were recreated)."""
        self.runs.forget()
        self.keys.forget()

    def encode(self, batch: pa.RecordBatch | pa.Table) -> pa.Table:
        """Long-form rows → :data:`OTHER_SCHEMA` rows (run and key as codes, no timestamp)."""
        return pa.Table.from_arrays(
            [_decode_dict(batch.column(0), self.runs), batch.column(1), _decode_dict(batch.column(2), self.keys),
             batch.column(3), batch.column(4)],
            schema=OTHER_SCHEMA)

    def steps(self, chunks: list[HistoryChunk]) -> pa.Table:
        """The chunks' rows → :data:`STEPS_SCHEMA` rows."""
        parts = []
        for c in chunks:
            if c.rows is None or not c.batches:
                continue
            run = self.runs.codes([c.run_uid])
            parts.append(pa.Table.from_arrays(
                [pa.repeat(run[0], c.rows.num_rows).cast(pa.int32()), c.rows.column(0), c.rows.column(1)],
                schema=STEPS_SCHEMA))
        return pa.concat_tables(parts) if parts else STEPS_SCHEMA.empty_table()

    def append(self, chunks: list[HistoryChunk]) -> None:
        """Insert rows that replace nothing (steps above everything stored for their run)."""
        batches = [b for c in chunks for b in c.batches]
        if not batches:
            return
        self._insert(pa.concat_tables([self.encode(b) for b in batches]))
        self._insert_into("history_steps", self.steps(chunks))

    def rewrite(self, chunks: list[HistoryChunk]) -> None:
        """Insert rows that may replace stored ones: the last write per (run, step, key) wins,
        and per (run, step) for the row's timestamp."""
        batches = [b for c in chunks for b in c.batches]
        if not batches:
            return
        rows = last_writes(pa.concat_tables([self.encode(b) for b in batches]), ["run", "step", "key"])
        steps = last_writes(self.steps(chunks), ["run", "step"])
        self._delete("_rs_rewrite", rows.select(["run", "step", "key"]),
                     [("history_numeric", "run", "step", "key"), ("history_other", "run", "step", "key")])
        self._delete("_rs_resteps", steps.select(["run", "step"]), [("history_steps", "run", "step")])
        self._insert(rows)
        self._insert_into("history_steps", steps)

    def _delete(self, name: str, keys: pa.Table, targets: list[tuple[str, ...]]) -> None:
        self.con.register(name, keys)
        try:
            for table, *cols in targets:
                match = " AND ".join(f"{table}.{c} = l.{c}" for c in cols)
                self.con.execute(f"DELETE FROM {table} USING {name} l WHERE {match}")
        finally:
            self.con.unregister(name)

    def flush_codes(self) -> None:
        self.runs.flush()
        self.keys.flush()

    def _insert(self, rows: pa.Table) -> None:
        numeric = rows.column("value_json").null_count == rows.num_rows
        if numeric:
            self._insert_into("history_numeric", rows.select(_NUMERIC_COLUMNS))
            return
        is_numeric = pc.is_null(rows.column("value_json"))
        self._insert_into("history_numeric", rows.filter(is_numeric).select(_NUMERIC_COLUMNS))
        self._insert_into("history_other", rows.filter(pc.invert(is_numeric)))

    def _insert_into(self, table: str, rows: pa.Table) -> None:
        if not rows.num_rows:
            return
        self.con.register("_rs_points", rows)
        try:
            self.con.execute(f"INSERT INTO {table} SELECT * FROM _rs_points")
        finally:
            self.con.unregister("_rs_points")


def last_writes(table: pa.Table, keys: list[str]) -> pa.Table:
    """Keep the last row of every ``keys`` (e.g. run, step, key): later writes win.

    Done in Arrow rather than with a SQL window: DuckDB's ``CREATE TABLE AS ... QUALIFY`` turns
    -0.0 into 0.0 (seen with duckdb 2.0), and -0.0 must survive.
    """
    ordered = table.append_column("_ord", pa.array(range(table.num_rows), pa.int64()))
    last = ordered.group_by(keys, use_threads=False).aggregate([("_ord", "max")])
    keep = pc.sort_indices(last["_ord_max"])
    return table.take(pc.take(last["_ord_max"], keep))
