"""Reads of the ``system_metrics`` and ``console`` tables (blocking functions of a cursor, like
:mod:`.reads`): a run's system metrics wide, one row per sample, and its console lines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import pyarrow as pa

from .reads import _arrow, _ident

__all__ = ["console_lines", "console_text", "system_history"]

CONSOLE_COLUMNS = ("writer", "label", "stream", "line", "timestamp", "text")


def system_history(cur: duckdb.DuckDBPyConnection, run_uid: str, *, keys: Sequence[str] | None = None,
                   samples: int | None = None, limit: int | None = None) -> pa.Table:
    """A run's system metrics, wide: one row per (writer, sample time) with ``_timestamp``,
    ``_runtime``, ``_writer``, ``_label`` and a DOUBLE column per key, ordered by time.

    Args:
        keys: only these keys (and only samples holding one of them); None: every key.
        samples: at most this many rows, evenly spaced (first row included).
        limit: at most this many rows from the start (after sampling).
    """
    known = [r[0] for r in cur.execute("SELECT DISTINCT key FROM system_metrics WHERE run_uid = ? ORDER BY key",
                                       [run_uid]).fetchall()]
    if keys is not None:
        wanted = set(keys)
        known = [k for k in known if k in wanted]
    cols = [f"any_value(value) FILTER (WHERE key = ?) AS {_ident(k)}" for k in known]
    where = "run_uid = ?" + (f" AND key IN ({', '.join('?' for _ in known)})" if keys is not None and known else "")
    if keys is not None and not known:
        where += " AND false"
    select = ", ".join(["timestamp AS _timestamp", "any_value(runtime) AS _runtime", "writer AS _writer",
                        "any_value(label) AS _label", *cols])
    sql = f"SELECT {select} FROM system_metrics WHERE {where} GROUP BY writer, timestamp"
    params: list[Any] = [*known, run_uid, *(known if keys is not None else [])]
    if samples is not None:
        s = max(int(samples), 0)
        sql = (f"SELECT * EXCLUDE (_rn, _n) FROM (SELECT *, row_number() OVER (ORDER BY _timestamp, _writer) - 1 "
               f"AS _rn, count(*) OVER () AS _n FROM ({sql})) WHERE _n <= ? OR "
               "floor(_rn * ? / _n) > floor((_rn - 1) * ? / _n)")
        params += [s, s, s]
    sql += " ORDER BY _timestamp, _writer"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return _arrow(cur, sql, params)


def console_lines(cur: duckdb.DuckDBPyConnection, run_uid: str, *, stream: str | None = None,
                  after: Mapping[str, int] | None = None, limit: int | None = None) -> pa.Table:
    """A run's console lines in the order they began (``timestamp``, then writer and line number).

    Args:
        stream: ``stdout`` or ``stderr`` only (None: both).
        after: ``{writer: line}``: only lines numbered above it for that writer (to follow a run).
        limit: at most this many lines.
    """
    where: list[str] = ["c.run_uid = ?"]
    params: list[Any] = [run_uid]
    if stream is not None:
        where.append("c.stream = ?")
        params.append(stream)
    join = ""
    if after:
        values = ", ".join("(?, ?)" for _ in after)
        join = f"LEFT JOIN (VALUES {values}) a(writer, after) ON a.writer = c.writer"
        params = [x for w, n in after.items() for x in (w, int(n))] + params
        where.append("c.line > coalesce(a.after, -1)")
    sql = (f"SELECT {', '.join('c.' + c for c in CONSOLE_COLUMNS)} FROM console c {join} "
           f"WHERE {' AND '.join(where)} ORDER BY c.timestamp, c.writer, c.line")
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return _arrow(cur, sql, params)


def console_text(table: pa.Table) -> str:
    """Console lines as the text a terminal would have shown (one line each, newline-ended)."""
    return "".join(f"{t}\n" for t in table.column("text").to_pylist())
