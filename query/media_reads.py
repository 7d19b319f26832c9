"""The SQL behind the media endpoints (run through :class:`~.reads.Reader`), and the pure paging,
sorting and filtering of a logged ``Table``'s rows.

A run's media are rows of the ``media`` view (see :mod:`runstream.projector.schema`); an image's
or a table's bytes are a run file, read from the object store by the route.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

MEDIA_COLS = ("step, key, type, path, sha256, size, format, caption, width, height, \"rows\", \"columns\", bins, "
              "count, reference")
MAX_TABLE_ROWS = 1000
"""Rows of a logged table in one page, at most."""


def run_media(cur: duckdb.DuckDBPyConnection, run_uid: str, key: str | None = None, type: str | None = None,
              min_step: int | None = None, max_step: int | None = None) -> pa.Table:
    """The run's media rows by key and step (``reference`` as JSON text)."""
    from .reads import _arrow

    where: list[str] = ["run_uid = ?"]
    params: list[Any] = [run_uid]
    for cond, value in (("key = ?", key), ("type = ?", type), ("step >= ?", min_step), ("step <= ?", max_step)):
        if value is not None:
            where.append(cond)
            params.append(value)
    return _arrow(cur, f"SELECT {MEDIA_COLS} FROM media WHERE {' AND '.join(where)} ORDER BY key, step", params)


def media_keys(cur: duckdb.DuckDBPyConnection, run_uid: str) -> list[dict[str, Any]]:
    """Each media key of the run: its type, how many steps hold it, the first and last step."""
    rows = cur.execute("SELECT key, any_value(type), count(*), min(step), max(step) FROM media WHERE run_uid = ? "
                       "GROUP BY key ORDER BY key", [run_uid]).fetchall()
    return [{"key": k, "type": t, "steps": n, "min_step": a, "max_step": b} for k, t, n, a, b in rows]


def histograms(cur: duckdb.DuckDBPyConnection, run_uid: str, key: str) -> list[dict[str, Any]]:
    """A histogram key over steps: ``step``, ``bins`` (edges), ``values`` (counts)."""
    rows = cur.execute("SELECT step, reference FROM media WHERE run_uid = ? AND key = ? AND type = 'histogram' "
                       "ORDER BY step", [run_uid, key]).fetchall()
    out = []
    for step, ref in rows:
        data = json.loads(ref)
        out.append({"step": step, "bins": data.get("bins") or [], "values": data.get("values") or []})
    return out


def table_file(cur: duckdb.DuckDBPyConnection, run_uid: str, key: str, step: int | None) -> dict[str, Any] | None:
    """The stored file of a logged table at ``step`` (default: the last step that logged it)."""
    sql = "SELECT step, path, sha256, \"rows\" FROM media WHERE run_uid = ? AND key = ? AND type = 'table-file'"
    params: list[Any] = [run_uid, key]
    if step is not None:
        sql += " AND step = ?"
        params.append(step)
    row = cur.execute(sql + " ORDER BY step DESC LIMIT 1", params).fetchone()
    if row is None:
        return None
    return {"step": row[0], "path": row[1], "sha256": row[2], "rows": row[3]}


def table_page(table: pa.Table, *, offset: int = 0, limit: int = 100, sort: str | None = None,
               desc: bool = False, filter: str | None = None) -> tuple[pa.Table, int]:
    """One page of a logged table: rows whose text contains ``filter`` (any column, case-insensitive),
    sorted by the column ``sort``; returns the page and the number of matching rows.

    Raises:
        KeyError: ``sort`` is not a column.
    """
    if filter:
        masks = [pc.match_substring(pc.cast(table.column(i), pa.string()), filter, ignore_case=True)
                 for i in range(table.num_columns)
                 if not pa.types.is_nested(table.schema.field(i).type)]
        if masks:
            mask = masks[0]
            for m in masks[1:]:
                mask = pc.or_kleene(mask, m)
            table = table.filter(pc.fill_null(mask, False))
        else:
            table = table.slice(0, 0)
    if sort is not None:
        if sort not in table.column_names:
            raise KeyError(sort)
        table = table.sort_by([(sort, "descending" if desc else "ascending")])
    total = table.num_rows
    return table.slice(max(0, offset), max(0, min(limit, MAX_TABLE_ROWS))), total
