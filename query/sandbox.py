"""Read-only, time- and row-limited SQL over the projection.

Three layers, each enough on its own for the cases it covers:

1. **Statement check** (:func:`check_sql`): DuckDB's own parser splits the text; exactly one
   statement of a read type is accepted (SELECT / WITH / FROM / VALUES / DESCRIBE / SHOW /
   SUMMARIZE / PIVOT / UNPIVOT, and EXPLAIN of one of those). COPY, ATTACH, INSTALL/LOAD,
   SET/RESET/USE, PRAGMA, CALL and every write are refused by name before anything runs.
2. **Database settings** (:func:`harden`): external access (files, network, extensions) off,
   Python replacement scans off, then the configuration locked so no query can turn them back on.
   The projector's own Arrow inserts keep working: they go through registered relations, not
   files.
3. **A read-only transaction** around every query, rolled back afterwards.

The time limit interrupts the query's cursor from a timer thread; the caller (the server) runs
:meth:`Sandbox.query` in a worker thread so it stays responsive meanwhile.

**Memory.** DuckDB's ``memory_limit`` is database-wide: setting it would cap the projector's
writes too. Its ``operator_memory_limit`` (DuckDB ≥ 2.0) is per connection and bounds a query's
intermediates (hash tables, sorts), which spill or fail beyond it; but it can only be set before
the configuration is locked and cursors do not inherit it. So with a limit the sandbox opens a
fixed pool of cursors, sets the limit on each, then locks, and every query borrows one. The
result itself is bounded by the row cap (read in Arrow batches, never whole).
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from .errors import QueryError, QueryRefused, QueryTimeout

__all__ = ["HARDENING", "QueryResult", "Sandbox", "check_sql", "harden"]

HARDENING: tuple[tuple[str, str], ...] = (
    ("enable_external_access", "false"),
    ("autoinstall_known_extensions", "false"),
    ("autoload_known_extensions", "false"),
    ("allow_community_extensions", "false"),
    ("python_enable_replacements", "false"),
    ("lock_configuration", "true"),
)
"""Database-wide settings applied by :func:`harden`, in order (the lock comes last)."""

_READ_TYPES = {duckdb.StatementType.SELECT}
_REFUSED: dict[str, str] = {
    "COPY": "COPY (reading or writing files)",
    "COPY_DATABASE": "COPY FROM DATABASE (writing databases)",
    "EXPORT": "EXPORT DATABASE (writing files)",
    "ATTACH": "ATTACH (opening other database files)",
    "DETACH": "DETACH (changing attached databases)",
    "LOAD": "INSTALL/LOAD (extensions)",
    "EXTENSION": "extension statements",
    "SET": "SET/RESET/USE/PRAGMA (changing settings)",
    "VARIABLE_SET": "SET VARIABLE (changing session state)",
    "PRAGMA": "PRAGMA (settings and pragmas)",
    "CALL": "CALL (table functions with side effects; use SELECT * FROM fn() instead)",
    "TRANSACTION": "transaction control (BEGIN/COMMIT/ROLLBACK)",
    "PREPARE": "PREPARE", "EXECUTE": "EXECUTE",
    "INSERT": "INSERT (writing)", "UPDATE": "UPDATE (writing)", "DELETE": "DELETE (writing)",
    "MERGE_INTO": "MERGE (writing)", "CREATE": "CREATE (writing)", "CREATE_FUNC": "CREATE FUNCTION",
    "ALTER": "ALTER (writing)", "DROP": "DROP (writing)", "VACUUM": "VACUUM", "ANALYZE": "ANALYZE",
}
_ALLOWED_TEXT = "SELECT, WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE, PIVOT, UNPIVOT or EXPLAIN"
_EXPLAIN_PREFIX = re.compile(r"^\s*EXPLAIN\s+(?:ANALY[SZ]E\s+)?(?:\([^)]*\)\s*)?", re.IGNORECASE)
_SIZE = re.compile(r"^\d+(\.\d+)?\s*[KMGT]i?B$", re.IGNORECASE)
_FIRST_WORD = re.compile(r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*([A-Za-z]+)", re.DOTALL)


def _refused(kind: str) -> QueryRefused:
    what = _REFUSED.get(kind, f"{kind} statements")
    return QueryRefused(
        f"refused: {what} is not allowed; runstream SQL is read-only: one {_ALLOWED_TEXT} statement"
    )


def _statements(sql: str) -> list[Any]:
    try:
        return list(duckdb.extract_statements(sql))
    except duckdb.Error as e:
        raise QueryError(f"SQL syntax error: {_first_line(e)}") from e


def check_sql(sql: str) -> str:
    """Accept exactly one read statement; return its text.

    Raises:
        QueryRefused: several statements, or a statement type that is not a read.
        QueryError: the text does not parse.
    """
    statements = _statements(sql)
    if not statements:
        raise QueryRefused("refused: the query is empty; send one SELECT statement")
    if len(statements) > 1:
        raise QueryRefused(f"refused: {len(statements)} statements; send exactly one read statement")
    stmt = statements[0]
    kind = stmt.type.name
    text = str(stmt.query).strip().rstrip(";")
    if stmt.type in _READ_TYPES:
        return text
    if kind == "MULTI":  # PIVOT/UNPIVOT without an IN list compiles to several statements
        m = _FIRST_WORD.match(text)
        if m and m.group(1).upper() in ("PIVOT", "UNPIVOT"):
            return text
        raise _refused("MULTI")
    if kind == "EXPLAIN":
        inner = _EXPLAIN_PREFIX.sub("", text, count=1)
        inner_stmts = _statements(inner)
        if len(inner_stmts) != 1 or inner_stmts[0].type not in _READ_TYPES:
            inner_kind = inner_stmts[0].type.name if inner_stmts else "empty"
            raise QueryRefused(f"refused: EXPLAIN of {_REFUSED.get(inner_kind, inner_kind)} is not allowed; "
                               "EXPLAIN only read statements")
        return text
    raise _refused(kind)


def harden(con: duckdb.DuckDBPyConnection) -> None:
    """Apply :data:`HARDENING` to ``con``'s database (all its connections), then lock it.

    Idempotent: on a database that is already locked it only verifies the settings.

    Raises:
        RuntimeError: the database is locked with a setting that differs from the hardening.
    """
    current = dict(con.execute(
        "SELECT name, lower(value) FROM duckdb_settings() WHERE name IN ("
        + ", ".join("?" for _ in HARDENING) + ")", [name for name, _ in HARDENING]).fetchall())
    if current.get("lock_configuration") == "true":
        wrong = [n for n, v in HARDENING if current.get(n) != v]
        if wrong:
            raise RuntimeError(f"database configuration is locked with unsafe settings: {', '.join(wrong)}")
        return
    for name, value in HARDENING:
        con.execute(f"SET {name} = {value}")


@dataclass(frozen=True)
class QueryResult:
    """An Arrow table of at most ``max_rows`` rows; ``truncated`` when the query had more."""

    table: pa.Table
    truncated: bool


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def translate(e: duckdb.Error, timeout: float) -> QueryError:
    """Turn a DuckDB error raised by a sandboxed query into a clear :class:`QueryError`."""
    msg = _first_line(e)
    if isinstance(e, duckdb.InterruptException):
        return QueryTimeout(f"query interrupted: it ran past its time limit of {timeout:g}s")
    if isinstance(e, duckdb.PermissionException):
        return QueryRefused(
            f"refused: file, network and extension access is disabled in runstream SQL ({msg})")
    if "configuration has been locked" in msg:
        return QueryRefused(f"refused: settings cannot be changed in runstream SQL ({msg})")
    if isinstance(e, duckdb.TransactionException) and "read-only" in msg:
        return QueryRefused(f"refused: runstream SQL is read-only ({msg})")
    if isinstance(e, duckdb.OutOfMemoryException):
        return QueryError(f"query ran out of memory; select fewer rows or aggregate ({msg})")
    if isinstance(e, duckdb.CatalogException) and "does not exist" in msg:
        return QueryError(f"{msg} (runstream SQL sees only the projection's tables and views: "
                          "runs, history, summary, config, metrics, dead_letters, history_wide, runs_overview; "
                          "never Python objects of the server)")
    return QueryError(msg)


class Sandbox:
    """Runs checked queries on fresh cursors of one (hardened) DuckDB connection.

    Args:
        con: a connection to the projection; :meth:`harden` is applied to its database.
        batch_size: rows per Arrow batch while reading results.
        operator_memory_limit: DuckDB size text (``"1GB"``) bounding each query's intermediates;
            None: no per-query limit (the database-wide one still holds).
        pool_size: cursors prepared with that limit (queries running at once).

    Raises:
        RuntimeError: a memory limit was asked for on a database already locked, or a DuckDB
            without ``operator_memory_limit``.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, *, batch_size: int = 8192,
                 operator_memory_limit: str | None = None, pool_size: int = 8) -> None:
        self._con = con
        self._batch_size = batch_size
        self._active: set[duckdb.DuckDBPyConnection] = set()
        self._lock = threading.Lock()
        self._pool: queue.SimpleQueue[duckdb.DuckDBPyConnection] | None = None
        self.memory_limit = operator_memory_limit
        if operator_memory_limit:
            if not _SIZE.match(operator_memory_limit):
                raise ValueError(f"memory limit must look like 512MB or 2GiB, not {operator_memory_limit!r}")
            self._pool = queue.SimpleQueue()
            try:
                for _ in range(pool_size):
                    cur = con.cursor()
                    cur.execute(f"SET operator_memory_limit = '{operator_memory_limit}'")  # checked by _SIZE
                    self._pool.put(cur)
            except duckdb.Error as e:
                raise RuntimeError(f"cannot set a per-query memory limit of {operator_memory_limit!r}: "
                                   f"{_first_line(e)}") from e
        harden(con)

    def _borrow(self, timeout: float) -> duckdb.DuckDBPyConnection:
        if self._pool is None:
            return self._con.cursor()
        try:
            return self._pool.get(timeout=timeout)
        except queue.Empty:
            raise QueryTimeout(f"query not started: every SQL slot stayed busy for {timeout:g}s") from None

    def _give_back(self, cur: duckdb.DuckDBPyConnection) -> None:
        if self._pool is None:
            cur.close()
        else:
            self._pool.put(cur)

    def query(self, sql: str, *, max_rows: int = 10_000, timeout: float = 30.0) -> QueryResult:
        """Run one read statement; blocking, so call it from a worker thread in async code.

        Args:
            sql: the query text (one statement).
            max_rows: the most rows returned; more make ``truncated`` true.
            timeout: seconds before the query is interrupted.

        Raises:
            QueryRefused: not a read statement, or it touched files, settings or extensions.
            QueryTimeout: interrupted at ``timeout``.
            QueryError: any other failure (syntax, unknown table…), with DuckDB's message.
        """
        text = check_sql(sql)
        if max_rows < 0:
            raise QueryError(f"max_rows must be >= 0, not {max_rows}")
        if timeout <= 0:
            raise QueryError(f"timeout must be positive seconds, not {timeout}")
        cur = self._borrow(timeout)
        timer = threading.Timer(timeout, cur.interrupt)
        timer.daemon = True
        with self._lock:
            self._active.add(cur)
        timer.start()
        try:
            cur.execute("BEGIN TRANSACTION READ ONLY")
            try:
                return self._fetch(cur, text, max_rows)
            finally:
                cur.execute("ROLLBACK")
        except duckdb.Error as e:
            raise translate(e, timeout) from e
        finally:
            timer.cancel()
            with self._lock:
                self._active.discard(cur)
            self._give_back(cur)

    def _fetch(self, cur: duckdb.DuckDBPyConnection, text: str, max_rows: int) -> QueryResult:
        rel = cur.sql(text)
        if rel is None:
            raise QueryRefused("refused: the statement returns no result")
        to_reader = getattr(rel, "to_arrow_reader", None) or rel.fetch_arrow_reader  # duckdb < 1.4
        reader = to_reader(self._batch_size)
        try:
            batches, rows, truncated = [], 0, False
            for batch in _batches(reader):
                if rows + batch.num_rows > max_rows:
                    batches.append(batch.slice(0, max_rows - rows))
                    truncated = True
                    break
                batches.append(batch)
                rows += batch.num_rows
            return QueryResult(pa.Table.from_batches(batches, schema=reader.schema), truncated)
        finally:
            reader.close()

    def interrupt_all(self) -> None:
        """Interrupt every running query (server shutdown)."""
        with self._lock:
            for cur in list(self._active):
                cur.interrupt()


def _batches(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return
