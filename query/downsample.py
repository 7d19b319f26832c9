"""Many runs' metric series in one query, downsampled to a min/max envelope per x bucket.

A chart of 100,000 points per run draws no better than one of a thousand, but a spike hidden by
naive every-n-th sampling is exactly what a reader looks for. So each (run, key) series over an x
range is cut into ``buckets`` equal-width buckets and each bucket keeps its lowest and its highest
point (at their own x, in x order): the drawn line still reaches every extreme. Series with no
more points than buckets come back whole. NaN and infinities are left out (a chart cannot draw
them); the ``history`` table still has them.

A blocking function of a DuckDB cursor, like :mod:`.reads`; every value is a ``?`` parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

__all__ = ["X_AXES", "MAX_BUCKETS", "MAX_RUNS", "SeriesError", "series"]

X_AXES = ("_step", "_runtime", "_timestamp")
MAX_BUCKETS = 5000
MAX_RUNS = 1000


class SeriesError(ValueError):
    """A series request out of bounds; the message says which bound and the allowed values."""


_X = {"_step": "h.step::DOUBLE", "_timestamp": "h.timestamp", "_runtime": "h.timestamp - epoch(r.created_at)"}


def _points_sql(x_axis: str, keys: Sequence[str] | None, x_min: float | None,
                x_max: float | None, branch: int | None = None) -> tuple[str, list[Any]]:
    where = ["h.run_uid IN (SELECT unnest(?::VARCHAR[]))", "h.value IS NOT NULL", "isfinite(h.value)"]
    params: list[Any] = []
    source = "history"
    if branch is not None:  # one branch of a rewound run (archived or current) instead of the visible rows
        source = "history_branches"
        where.append("h.branch = ?")
        params.append(int(branch))
    if keys is not None:
        where.append("h.key IN (SELECT unnest(?::VARCHAR[]))")
        params.append(list(keys))
    x = _X[x_axis]
    if x_min is not None:
        where.append(f"{x} >= ?")
        params.append(float(x_min))
    if x_max is not None:
        where.append(f"{x} <= ?")
        params.append(float(x_max))
    sql = (f"SELECT h.run_uid, h.key, {x} AS x, h.value AS v FROM {source} h JOIN runs r ON r.run_uid = h.run_uid "
           f"WHERE {' AND '.join(where)}")
    return sql, params


def series(cur: duckdb.DuckDBPyConnection, run_uids: Sequence[str], *, keys: Sequence[str] | None = None,
           x_axis: str = "_step", buckets: int = 1000, x_min: float | None = None,
           x_max: float | None = None, branch: int | None = None) -> list[dict[str, Any]]:
    """Every numeric series of these runs (or only ``keys``) as ``{"run_uid", "key", "x", "y", "n",
    "sampled"}``, ``x``/``y`` the envelope in x order, ``n`` how many points the range holds.
    ``branch``: that history branch of each run (see :func:`.reads.branches`) instead of the
    visible history.

    Raises:
        SeriesError: an unknown x axis, too many runs, or a bucket count out of range.
    """
    if x_axis not in X_AXES:
        raise SeriesError(f"x axis must be one of {', '.join(X_AXES)}, not {x_axis!r}")
    if not 1 <= buckets <= MAX_BUCKETS:
        raise SeriesError(f"buckets must be between 1 and {MAX_BUCKETS}, not {buckets}")
    if len(run_uids) > MAX_RUNS:
        raise SeriesError(f"at most {MAX_RUNS} runs per request, not {len(run_uids)}: ask in several requests")
    if not run_uids:
        return []
    points, params = _points_sql(x_axis, keys, x_min, x_max, branch)
    # bucket = the x itself for short series (every point kept), else its equal-width bucket;
    # arg_min/arg_max keep the x where each bucket's extreme sits
    sql = f"""
        WITH p AS ({points}) , p2 AS (SELECT * FROM p WHERE x IS NOT NULL),
        b AS (SELECT run_uid, key, min(x) AS lo, max(x) AS hi, count(*) AS n FROM p2 GROUP BY run_uid, key),
        k AS (SELECT p2.run_uid, p2.key, b.n, p2.x, p2.v,
                     CASE WHEN b.n <= ? OR b.hi = b.lo THEN p2.x
                          ELSE least(floor((p2.x - b.lo) / (b.hi - b.lo) * ?), ? - 1) END AS bucket
              FROM p2 JOIN b ON b.run_uid = p2.run_uid AND b.key = p2.key)
        SELECT run_uid, key, any_value(n) AS n, bucket, min(v) AS vmin, arg_min(x, v) AS xmin,
               max(v) AS vmax, arg_max(x, v) AS xmax
        FROM k GROUP BY run_uid, key, bucket ORDER BY run_uid, key, bucket"""
    rows = cur.execute(sql, [list(run_uids), *params, int(buckets), int(buckets), int(buckets)]).fetchall()
    out: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for uid, key, n, _bucket, vmin, xmin, vmax, xmax in rows:
        if current is None or current["run_uid"] != uid or current["key"] != key:
            current = {"run_uid": uid, "key": key, "x": [], "y": [], "n": int(n), "sampled": int(n) > buckets}
            out.append(current)
        pairs = [(xmin, vmin)] if xmin == xmax else sorted([(xmin, vmin), (xmax, vmax)])
        for x, v in pairs:
            current["x"].append(x)
            current["y"].append(v)
    return out

