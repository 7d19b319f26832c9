"""The read side's questions as SQL over one DuckDB cursor: projects, runs, a run, history.

Blocking functions of a cursor; the HTTP layer runs them in worker threads through
:class:`Reader`, which gives each call a fresh cursor in a read-only transaction (one consistent
snapshot) and interrupts it past a time limit. Every user-supplied value is a ``?`` parameter;
history keys become column names only as quoted identifiers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import duckdb
import pyarrow as pa

from .errors import QueryError, QueryTimeout
from .filters import compile_filters, compile_order
from .jsonable import stored_value

__all__ = ["Reader", "branches", "group_history", "history", "history_keys", "key_values", "list_projects",
           "list_runs", "run_point", "run_row", "RUN_COLUMNS", "RESERVED_HISTORY_COLUMNS"]

T = TypeVar("T")

RUN_COLUMNS = ("run_uid", "entity", "project", "run_id", "path", "name", "state", "notes", "tags", "group",
               "job_type", "mode", "created_at", "heartbeat_at", "finished_at", "runtime", "exit_code",
               "last_step", "metadata", "origin_kind", "origin_run_uid", "origin_step", "origin_depth")
RESERVED_HISTORY_COLUMNS = ("_step", "_timestamp", "_runtime")
_SELECT_RUN = ", ".join(f'r."{c}"' for c in RUN_COLUMNS)


class Reader:
    """Runs read functions on fresh cursors of the projection, each in a read-only snapshot.

    Args:
        cursor: returns a new cursor on the projection (``Projector.cursor``).
        timeout: seconds before a read is interrupted.
    """

    def __init__(self, cursor: Callable[[], duckdb.DuckDBPyConnection], timeout: float = 30.0) -> None:
        self._cursor = cursor
        self.timeout = timeout

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(cursor, *args, **kwargs)`` in a read-only transaction; blocking.

        Raises:
            QueryTimeout: it ran past :attr:`timeout`.
            QueryError: DuckDB failed (the message says why).
        """
        cur = self._cursor()
        timer = threading.Timer(self.timeout, cur.interrupt)
        timer.daemon = True
        timer.start()
        try:
            cur.execute("BEGIN TRANSACTION READ ONLY")
            try:
                return fn(cur, *args, **kwargs)
            finally:
                cur.execute("ROLLBACK")
        except duckdb.InterruptException as e:
            raise QueryTimeout(f"read interrupted: it ran past its time limit of {self.timeout:g}s") from e
        except duckdb.Error as e:
            raise QueryError(f"read failed: {str(e).strip().splitlines()[0]}") from e
        finally:
            timer.cancel()
            cur.close()


def _arrow(cur: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> pa.Table:
    rel = cur.sql(sql, params=list(params))
    fetch = getattr(rel, "to_arrow_table", None) or rel.arrow  # duckdb < 1.4
    return fetch()


def list_projects(cur: duckdb.DuckDBPyConnection, entity: str | None = None) -> pa.Table:
    """``entity, project, runs, running, last_created_at, last_activity`` per project, newest runs first."""
    where, params = ("AND entity = ?", [entity]) if entity is not None else ("", [])
    return _arrow(cur, "SELECT entity, project, count(*) AS runs, count(*) FILTER (WHERE state = 'running') "
                  "AS running, max(created_at) AS last_created_at, max(greatest(created_at, heartbeat_at, finished_at))"
                  " AS last_activity FROM runs WHERE path IS NOT NULL "
                  f"{where} GROUP BY entity, project ORDER BY last_created_at DESC NULLS LAST, entity, project",
                  params)


def list_runs(cur: duckdb.DuckDBPyConnection, entity: str, project: str, *,
              filters: Mapping[str, Any] | None = None, order: str | None = None,
              limit: int = 50, offset: int = 0) -> tuple[pa.Table, int]:
    """One page of a project's runs matching ``filters`` in ``order``, and how many match in all.

    Raises:
        FilterError: a bad filter or ordering.
    """
    cond = compile_filters(filters)
    ordering = compile_order(order)
    base = "FROM runs r WHERE r.path IS NOT NULL AND r.entity = ? AND r.project = ? AND " + cond.sql
    params = [entity, project, *cond.params]
    page = _arrow(cur, f"SELECT {_SELECT_RUN} {base} ORDER BY {ordering.sql} LIMIT ? OFFSET ?",
                  [*params, *ordering.params, int(limit), int(offset)])
    rows = cur.execute(f"SELECT count(*) {base}", params).fetchall()  # fetched whole: the cursor is free again
    return page, int(rows[0][0]) if rows else 0


def run_row(cur: duckdb.DuckDBPyConnection, entity: str, project: str, run_id: str) -> dict[str, Any] | None:
    """The ``runs`` row of ``entity/project/run_id`` (metadata parsed), or None."""
    table = _arrow(cur, f"SELECT {_SELECT_RUN} FROM runs r WHERE r.entity = ? AND r.project = ? AND "
                   "r.run_id = ? AND r.path IS NOT NULL", [entity, project, run_id])
    rows = table.to_pylist()
    return parse_run(rows[0]) if rows else None


def with_metadata(row: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``row`` with its ``metadata`` JSON text parsed (left as is if it is not JSON)."""
    out = dict(row)
    if isinstance(out.get("metadata"), str):
        try:
            out["metadata"] = json.loads(out["metadata"])
        except ValueError:
            pass
    return out


def parse_run(row: dict[str, Any]) -> dict[str, Any]:
    """A ``runs`` row with ``metadata`` parsed from its JSON text and ``tags`` as a list."""
    out = with_metadata(row)
    out["tags"] = list(out.get("tags") or [])
    return out


def key_values(cur: duckdb.DuckDBPyConnection, table: str, run_uids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{run_uid: {key: value}}`` of the ``summary`` or ``config`` table for these runs."""
    if table not in ("summary", "config"):
        raise ValueError(f"not a key/value table: {table!r}")
    out: dict[str, dict[str, Any]] = {uid: {} for uid in run_uids}
    if not run_uids:
        return out
    # one list parameter, not one placeholder per run: a page of thousands of runs stays one cheap plan
    rows = cur.execute(f"SELECT run_uid, key, value, value_json FROM {table} "
                       "WHERE run_uid IN (SELECT unnest(?::VARCHAR[])) ORDER BY run_uid, key",
                       [list(run_uids)]).fetchall()
    for uid, key, value, value_json in rows:
        out[uid][key] = stored_value(value, value_json)
    return out


def _history_source(branch: int | None) -> tuple[str, list[Any]]:
    """The view a history read scans: the visible history, or one branch (archived or current)."""
    if branch is None:
        return "history", []
    return "(SELECT * FROM history_branches WHERE branch = ?)", [int(branch)]


def history_keys(cur: duckdb.DuckDBPyConnection, run_uid: str, branch: int | None = None) -> list[tuple[str, bool]]:
    """``(key, numeric)`` of every history key of a run; numeric when any value is a number."""
    source, params = _history_source(branch)
    rows = cur.execute(f"SELECT key, bool_or(value IS NOT NULL) FROM {source} WHERE run_uid = ? GROUP BY key "
                       "ORDER BY key", [*params, run_uid]).fetchall()
    return [(k, bool(n)) for k, n in rows if k not in RESERVED_HISTORY_COLUMNS]


def branches(cur: duckdb.DuckDBPyConnection, run_uid: str) -> list[dict[str, Any]]:
    """A run's history branches: ``branch``, ``current``, and the step range and row count each
    shows (a rewind archives the current branch and opens the next)."""
    rows = cur.execute(
        "SELECT g.branch, bool_or(g.\"current\"), min(b.step), max(b.step), count(DISTINCT b.step) "
        "FROM history_segments g LEFT JOIN history_branches b ON b.run_uid = g.run_uid AND b.branch = g.branch "
        "WHERE g.run_uid = ? GROUP BY g.branch ORDER BY g.branch", [run_uid]).fetchall()
    return [{"branch": int(b), "current": bool(c), "min_step": lo, "max_step": hi, "steps": int(n)}
            for b, c, lo, hi, n in rows]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def history(cur: duckdb.DuckDBPyConnection, run_uid: str, *, keys: Sequence[str] | None = None,
            min_step: int | None = None, max_step: int | None = None, samples: int | None = None,
            limit: int | None = None, branch: int | None = None) -> pa.Table:
    """A run's history, wide: one row per step, ``_step``, ``_timestamp``, ``_runtime`` and a column
    per key (DOUBLE for numeric keys, JSON text for the others), ordered by step.

    Args:
        keys: only these keys (and only steps that logged at least one of them); None: every key.
        min_step, max_step: inclusive step range.
        samples: at most this many rows, evenly spaced over the range (first row included).
        limit: at most this many rows from the start of the range (after sampling).
        branch: one branch of the run's history (a rewind archives the current one) instead of
            the visible history.
    """
    known = history_keys(cur, run_uid, branch)
    if keys is not None:
        wanted = set(keys)
        known = [(k, n) for k, n in known if k in wanted]
    cols, params = [], []
    for key, numeric in known:
        column = "value" if numeric else "value_json ->> '$'"  # text as is, the rest as JSON text
        cols.append(f"any_value({column}) FILTER (WHERE key = ?) AS {_ident(key)}")
        params.append(key)
    where: list[str] = ["run_uid = ?"]
    where_params: list[Any] = [run_uid]
    if keys is not None:
        if not known:
            where.append("false")
        else:
            where.append(f"key IN ({', '.join('?' for _ in known)})")
            where_params += [k for k, _ in known]
    if min_step is not None:
        where.append("step >= ?")
        where_params.append(int(min_step))
    if max_step is not None:
        where.append("step <= ?")
        where_params.append(int(max_step))
    select = ", ".join(["step AS _step", "max(timestamp) AS _timestamp", *cols])
    source, source_params = _history_source(branch)
    wide = f"SELECT {select} FROM {source} WHERE {' AND '.join(where)} GROUP BY step"
    # _runtime continues across resumes, forks and rewinds: the session each row was logged in
    clock = "(SELECT since, runtime_offset FROM history_clock WHERE run_uid = ?)"
    all_params: list[Any] = [*params, *source_params, *where_params, run_uid]  # in the order the ? appear
    rest = ", w.* EXCLUDE (_step, _timestamp)" if cols else ""
    sql = (f"SELECT w._step, w._timestamp, w._timestamp - c.since + c.runtime_offset AS _runtime{rest} "
           f"FROM ({wide}) w ASOF LEFT JOIN {clock} c ON w._timestamp >= c.since")
    if samples is not None:
        s = max(int(samples), 0)
        sql = (f"SELECT * EXCLUDE (_rn, _n) FROM (SELECT *, row_number() OVER (ORDER BY _step) - 1 AS _rn, "
               f"count(*) OVER () AS _n FROM ({sql})) WHERE _n <= ? OR "
               "floor(_rn * ? / _n) > floor((_rn - 1) * ? / _n)")
        all_params += [s, s, s]  # floor(rn·s/n) steps up exactly s times over rn = 0 … n−1
    sql += " ORDER BY _step"
    if limit is not None:
        sql += " LIMIT ?"
        all_params.append(int(limit))
    return _arrow(cur, sql, all_params)


def run_point(cur: duckdb.DuckDBPyConnection, run_uid: str, step: float | None = None) -> dict[str, Any] | None:
    """What resume, fork and rewind need to know about a run: its row's state, last step, runtime,
    fork depth, and — with ``step`` — the visible history up to ``step``: per key the aggregates
    ``[logged, count, total, min, max, first, last]`` a summary continues from, the highest step
    and the ``_runtime`` at it. None when the run is not in the projection."""
    row = cur.execute("SELECT state, last_step, runtime, origin_depth, path, name FROM runs WHERE run_uid = ?",
                      [run_uid]).fetchone()
    if row is None:
        return None
    out: dict[str, Any] = {"run_uid": run_uid, "state": row[0], "last_step": row[1], "runtime": row[2],
                           "depth": row[3] or 0, "path": row[4], "name": row[5]}
    if step is None:
        return out
    import math

    last = math.floor(step)
    # straight from the point tables (no timestamp join), numbers and the rest apart: one cheap
    # aggregate pass each instead of a struct per point
    seg = ("JOIN history_lines g ON g.line = h.run AND g.\"current\" AND g.run_uid = ? "
           "AND h.step >= g.min_step AND h.step <= g.max_step JOIN history_key_ids k ON k.id = h.key "
           "WHERE h.step <= ? GROUP BY k.key")
    numeric = cur.execute(
        "SELECT k.key, count(*), sum(h.value), min(h.value) FILTER (WHERE NOT isnan(h.value)), "
        "max(h.value) FILTER (WHERE NOT isnan(h.value)), arg_min(h.value, h.step), min(h.step), "
        f"arg_max(h.value, h.step), max(h.step) FROM history_numeric h {seg}", [run_uid, last]).fetchall()
    other = cur.execute(
        "SELECT k.key, count(*), count(h.value), sum(h.value), min(h.value), max(h.value), "
        "arg_min(h.value_json, h.step), min(h.step), arg_max(h.value_json, h.step), max(h.step) "
        f"FROM history_other h {seg}", [run_uid, last]).fetchall()
    stats: dict[str, list[Any]] = {}
    ends: dict[str, tuple[int, int]] = {}
    for key, n, total, lo, hi, first, first_step, final, final_step in numeric:
        stats[key] = [int(n), int(n), float(total), lo, hi, first, final]
        ends[key] = (first_step, final_step)
    for key, n, nums, total, lo, hi, first, first_step, final, final_step in other:
        have = stats.get(key)
        first_v, final_v = _json_value(first), _json_value(final)
        if have is None:
            stats[key] = [int(n), int(nums), float(total or 0.0), lo, hi, first_v, final_v]
            continue
        have[0] += int(n)
        if first_step < ends[key][0]:
            have[5] = first_v
        if final_step > ends[key][1]:
            have[6] = final_v
    out["stats"] = dict(sorted(stats.items()))
    top = max((e[1] for e in ends.values()), default=None)
    for *_row, final_step in other:
        top = final_step if top is None else max(top, final_step)
    out["step_last"] = None if top is None else int(top)
    out["step_runtime"] = None
    if top is not None:
        ts = cur.execute("SELECT max(s.timestamp) FROM history_steps s JOIN history_lines g ON g.line = s.run "
                         "AND g.\"current\" AND g.run_uid = ? AND s.step >= g.min_step AND s.step <= g.max_step "
                         "WHERE s.step = ?", [run_uid, int(top)]).fetchone()
        clock = cur.execute("SELECT since, runtime_offset FROM history_clock WHERE run_uid = ? ORDER BY since",
                            [run_uid]).fetchall()
        when = ts[0] if ts else None
        if when is not None:
            sessions = [c for c in clock if c[0] <= when]
            if sessions:
                out["step_runtime"] = when - sessions[-1][0] + sessions[-1][1]
    return out


def _json_value(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def group_history(cur: duckdb.DuckDBPyConnection, entity: str, project: str, *, group: str | None = None,
                  job_type: str | None = None, filters: Mapping[str, Any] | None = None,
                  keys: Sequence[str] | None = None, by: str = "group") -> pa.Table:
    """A metric aggregated across the runs of a group, per step: ``group`` (the value grouped by),
    ``key``, ``_step``, ``runs`` (how many runs logged it there), ``mean``, ``min``, ``max``,
    ``std``. Runs may be narrowed by ``group``, ``job_type`` and ``filters`` (the runs filter
    language); ``by`` is ``group`` or ``job_type``. Only numeric values count.

    Raises:
        FilterError: a bad filter, or ``by`` is neither group nor job_type.
    """
    from .filters import FilterError

    column = {"group": 'r."group"', "job_type": "r.job_type"}.get(by)
    if column is None:
        raise FilterError(f"group_history groups by 'group' or 'job_type', not {by!r}")
    cond = compile_filters(filters)
    where = ["r.entity = ?", "r.project = ?", "r.path IS NOT NULL", f"{column} IS NOT NULL", cond.sql,
             "h.value IS NOT NULL"]
    params: list[Any] = [entity, project, *cond.params]
    if group is not None:
        where.append('r."group" = ?')
        params.append(group)
    if job_type is not None:
        where.append("r.job_type = ?")
        params.append(job_type)
    if keys is not None:
        where.append("list_contains(?::VARCHAR[], h.key)")
        params.append(list(keys))
    sql = (f"SELECT {column} AS \"group\", h.key, h.step AS _step, count(*) AS runs, avg(h.value) AS mean, "
           "min(h.value) AS min, max(h.value) AS max, stddev_pop(h.value) AS std "
           f"FROM history h JOIN runs r ON r.run_uid = h.run_uid WHERE {' AND '.join(where)} "
           "GROUP BY ALL ORDER BY 1, 2, 3")
    return _arrow(cur, sql, params)
