"""MongoDB-style run filters and orderings → parameterized DuckDB SQL (pure functions).

W&B's ``api.runs(path, filters={...}, order="-summary_metrics.loss")`` language, over the ``runs``
table aliased ``r``::

    {"$and": [{"state": "finished"}, {"config.lr": {"$lte": 0.01}}]}
    {"tags": {"$in": ["baseline", "sweep"]}, "summary_metrics.acc": {"$gt": 0.9}}

Operators: ``$and $or $nor`` (lists of filters), ``$eq $ne $gt $gte $lt $lte $in $nin $exists
$regex`` (``$options: "i"`` for case-insensitive). A bare value means ``$eq``; several fields in
one map are and-ed. Mongo's semantics: ``$ne`` and ``$nin`` also match runs without the field;
on ``tags`` (a list) ``$eq``/``$in`` mean "contains"/"contains one of", ``$regex`` "one tag
matches", ``$exists`` "has at least one tag".

Fields: ``state``, ``name``/``display_name``, ``id``/``run_id``, ``path``, ``tags``, ``group``,
``job_type``, ``notes``, ``user`` (the run's login name, from its metadata),
``created_at``/``heartbeat_at``/``finished_at`` (ISO text or epoch seconds), ``runtime``,
``last_step``, ``exit_code``, ``config.<key>`` and ``summary_metrics.<key>`` (``summary.<key>``
too; nested keys dotted). A number compares with the stored DOUBLE, text with the value as text,
so ``{"config.optimizer": "adam"}`` and ``{"config.lr": 0.01}`` both work.

Every value travels as a ``?`` parameter; only column names chosen from fixed tables and
operators appear in the SQL text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import QueryError

__all__ = ["FilterError", "Compiled", "compile_filters", "compile_order", "DEFAULT_ORDER"]

DEFAULT_ORDER = "-created_at"


class FilterError(QueryError):
    """A filter or an ordering that is not valid; the message names the part."""


COLUMNS: dict[str, str] = {
    "state": "r.state", "name": "r.name", "display_name": "r.name", "displayName": "r.name",
    "id": "r.run_id", "run_id": "r.run_id", "path": "r.path", "group": 'r."group"',
    "job_type": "r.job_type", "jobType": "r.job_type", "notes": "r.notes", "runtime": "r.runtime",
    "last_step": "r.last_step", "exit_code": "r.exit_code", "entity": "r.entity", "project": "r.project",
    "user": "json_extract_string(r.metadata, '$.username')",
    "username": "json_extract_string(r.metadata, '$.username')",
}
TIME_COLUMNS: dict[str, str] = {
    "created_at": "r.created_at", "createdAt": "r.created_at", "heartbeat_at": "r.heartbeat_at",
    "heartbeatAt": "r.heartbeat_at", "finished_at": "r.finished_at",
}
KEYED_TABLES: dict[str, str] = {"config": "config", "summary_metrics": "summary", "summary": "summary"}
_COMPARE = {"$eq": "=", "$ne": "IS DISTINCT FROM", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_LOGICAL = ("$and", "$or", "$nor")
FIELD_OPS = (*_COMPARE, "$in", "$nin", "$exists", "$regex", "$options")


@dataclass
class Compiled:
    """A SQL boolean expression over ``runs r`` and its positional parameters."""

    sql: str
    params: list[Any] = field(default_factory=list)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float)  # bool included: stored as 1.0 / 0.0


def _time_param(field_name: str, v: Any) -> tuple[str, Any]:
    if isinstance(v, bool) or v is None:
        raise FilterError(f"filter on {field_name!r}: expected ISO time text or epoch seconds, not {v!r}")
    if isinstance(v, int | float):
        return "to_timestamp(?)", float(v)
    if isinstance(v, str):
        try:
            parsed = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError as e:
            raise FilterError(f"filter on {field_name!r}: {v!r} is not an ISO time") from e
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return "to_timestamp(?)", parsed.timestamp()
    raise FilterError(f"filter on {field_name!r}: expected ISO time text or epoch seconds, not {v!r}")


class _Field:
    """How one field reads: the SQL of its value for a given operand, and whether it exists."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.kind = "column"
        self.table = ""
        self.key = ""
        if name in COLUMNS:
            self.expr = COLUMNS[name]
        elif name in TIME_COLUMNS:
            self.kind, self.expr = "time", TIME_COLUMNS[name]
        elif name == "tags":
            self.kind, self.expr = "tags", "r.tags"
        else:
            prefix, _, key = name.partition(".")
            if prefix not in KEYED_TABLES or not key:
                known = ", ".join([*COLUMNS, *TIME_COLUMNS, "tags", "config.<key>", "summary_metrics.<key>"])
                raise FilterError(f"unknown filter field {name!r}; known: {known}")
            self.kind, self.table, self.key = "keyed", KEYED_TABLES[prefix], key
            self.expr = ""

    def value(self, operand: Any) -> tuple[str, list[Any]]:
        """SQL of the field's value to compare with ``operand`` (its type picks the column)."""
        if self.kind != "keyed":
            return self.expr, []
        column = "value" if _is_number(operand) else "value_json ->> '$'"
        sub = f"(SELECT {column} FROM {self.table} x WHERE x.run_uid = r.run_uid AND x.key = ?)"
        return sub, [self.key]

    def operand(self, v: Any) -> tuple[str, Any]:
        if self.kind == "time":
            return _time_param(self.name, v)
        if isinstance(v, bool):
            return "?", float(v) if self.kind == "keyed" else v
        if v is None or isinstance(v, str | int | float):
            return "?", v
        raise FilterError(f"filter on {self.name!r}: cannot compare with {type(v).__name__} {v!r}")

    def exists(self) -> tuple[str, list[Any]]:
        if self.kind == "keyed":
            return f"EXISTS (SELECT 1 FROM {self.table} x WHERE x.run_uid = r.run_uid AND x.key = ?)", [self.key]
        if self.kind == "tags":
            return "coalesce(len(r.tags), 0) > 0", []
        return f"{self.expr} IS NOT NULL", []


def _compare(f: _Field, op: str, v: Any) -> Compiled:
    if f.kind == "tags":
        if op in ("$eq", "$ne"):
            if not isinstance(v, str):
                raise FilterError(f"filter on 'tags' with {op}: expected a tag (text), not {v!r}")
            sql = "list_contains(coalesce(r.tags, []), ?)"
            return Compiled(sql if op == "$eq" else f"NOT {sql}", [v])
        raise FilterError(f"filter on 'tags': {op} does not apply to a list of tags; use $eq $ne $in $nin "
                          "$regex $exists")
    if v is None:
        value_sql, params = f.value("")
        return Compiled(f"{value_sql} IS {'NOT ' if op == '$ne' else ''}NULL", params)
    value_sql, params = f.value(v)
    op_sql, param = f.operand(v)
    return Compiled(f"({value_sql} {_COMPARE[op]} {op_sql})", [*params, param])


def _membership(f: _Field, op: str, values: Any) -> Compiled:
    if not isinstance(values, list | tuple):
        raise FilterError(f"filter on {f.name!r}: {op} takes a list, not {values!r}")
    if not values:
        return Compiled("false" if op == "$in" else "true")
    if f.kind == "tags":
        if not all(isinstance(v, str) for v in values):
            raise FilterError(f"filter on 'tags' with {op}: expected a list of tags (text)")
        sql = f"list_has_any(coalesce(r.tags, []), [{', '.join('?' for _ in values)}]::VARCHAR[])"
        return Compiled(sql if op == "$in" else f"NOT {sql}", list(values))
    parts = [_compare(f, "$eq", v) for v in values]
    any_sql = " OR ".join(p.sql for p in parts)
    params = [x for p in parts for x in p.params]
    if op == "$in":
        return Compiled(f"coalesce({any_sql}, false)", params)
    return Compiled(f"NOT coalesce({any_sql}, false)", params)


def _regex(f: _Field, pattern: Any, options: Any) -> Compiled:
    if not isinstance(pattern, str):
        raise FilterError(f"filter on {f.name!r}: $regex takes a pattern (text), not {pattern!r}")
    flags = ""
    if options is not None:
        if not isinstance(options, str) or set(options) - {"i"}:
            raise FilterError(f"filter on {f.name!r}: $options may only be 'i' (case-insensitive), "
                              f"not {options!r}")
        flags = "i" if options else ""
    if f.kind == "tags":
        return Compiled(f"coalesce(len(list_filter(r.tags, lambda t: regexp_matches(t, ?, '{flags}'))), 0) > 0",
                        [pattern])
    value_sql, params = f.value("")
    if f.kind == "time":
        value_sql = f"CAST({value_sql} AS VARCHAR)"
    return Compiled(f"coalesce(regexp_matches(CAST({value_sql} AS VARCHAR), ?, '{flags}'), false)",
                    [*params, pattern])


def _field_filter(name: str, cond: Any) -> Compiled:
    f = _Field(name)
    if not isinstance(cond, Mapping) or not any(isinstance(k, str) and k.startswith("$") for k in cond):
        return _compare(f, "$eq", cond)
    unknown = [k for k in cond if k not in FIELD_OPS]
    if unknown:
        raise FilterError(f"filter on {name!r}: unknown operator {unknown[0]!r}; known: "
                          f"{', '.join(o for o in FIELD_OPS if o != '$options')}")
    parts: list[Compiled] = []
    for op, v in cond.items():
        if op in _COMPARE:
            parts.append(_compare(f, op, v))
        elif op in ("$in", "$nin"):
            parts.append(_membership(f, op, v))
        elif op == "$exists":
            sql, params = f.exists()
            parts.append(Compiled(sql if v else f"NOT ({sql})", params))
        elif op == "$regex":
            parts.append(_regex(f, v, cond.get("$options")))
        elif op == "$options" and "$regex" not in cond:
            raise FilterError(f"filter on {name!r}: $options goes with $regex")
    return _join(parts, "AND")


def _join(parts: Sequence[Compiled], op: str) -> Compiled:
    if not parts:
        return Compiled("true")
    if len(parts) == 1:
        return parts[0]
    return Compiled("(" + f" {op} ".join(p.sql for p in parts) + ")", [x for p in parts for x in p.params])


def compile_filters(filters: Mapping[str, Any] | None) -> Compiled:
    """A filter document → a SQL boolean over ``runs r`` (``true`` for no filter).

    Raises:
        FilterError: an unknown field or operator, or an operand of the wrong type.
    """
    if filters is None:
        return Compiled("true")
    if not isinstance(filters, Mapping):
        raise FilterError(f"filters must be a map of field → condition, not {type(filters).__name__}")
    parts: list[Compiled] = []
    for key, cond in filters.items():
        if key in _LOGICAL:
            if not isinstance(cond, list | tuple) or not cond:
                raise FilterError(f"{key} takes a non-empty list of filters")
            subs = [compile_filters(c) for c in cond]
            if key == "$and":
                parts.append(_join(subs, "AND"))
            elif key == "$or":
                parts.append(_join(subs, "OR"))
            else:
                parts.append(Compiled(f"NOT coalesce({_join(subs, 'OR').sql}, false)",
                                      _join(subs, "OR").params))
        elif isinstance(key, str) and key.startswith("$"):
            raise FilterError(f"unknown logical operator {key!r}; known: {', '.join(_LOGICAL)}")
        else:
            parts.append(_field_filter(key, cond))
    return _join(parts, "AND")


def compile_order(order: str | None) -> Compiled:
    """``"-summary_metrics.loss,+created_at"`` → ``ORDER BY`` terms (without the keywords).

    ``-`` sorts descending, ``+`` or nothing ascending; runs without the value come last; ties are
    broken by path. Keyed fields sort numbers first (by value), then text.

    Raises:
        FilterError: an unknown field.
    """
    terms: list[str] = []
    params: list[Any] = []
    for raw in (order or DEFAULT_ORDER).split(","):
        item = raw.strip()
        if not item:
            continue
        desc = item.startswith("-")
        name = item.lstrip("+-").strip()
        direction = "DESC" if desc else "ASC"
        f = _Field(name)
        if f.kind == "keyed":
            num, p1 = f.value(0.0)
            text, p2 = f.value("")
            terms += [f"{num} {direction} NULLS LAST", f"{text} {direction} NULLS LAST"]
            params += [*p1, *p2]
        elif f.kind == "tags":
            terms.append(f"array_to_string(list_sort(r.tags), ',') {direction} NULLS LAST")
        else:
            terms.append(f"{f.expr} {direction} NULLS LAST")
    terms.append("r.path ASC")
    return Compiled(", ".join(terms), params)
