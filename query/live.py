"""Live streams as server-sent events: a run's history as it is logged, a project's runs as they change.

The server polls the projection after each committed batch (``Projector.wait_for_seq``), so a
stream costs nothing while nothing is written. A history stream sends every step once, in step
order (``id:`` is the step, so a reconnect with ``Last-Event-ID`` resumes after it), a ``state``
event when the run's state changes, and ``end`` once the run is finished, failed or killed and
its history has been sent. Comments (``: keepalive``) keep idle connections open.

Event format (``text/event-stream``)::

    event: history        id: <step>      data: {"_step": 3, "_timestamp": ..., "loss": 0.1}
    event: state                          data: {"state": "running", "path": "e/p/id"}
    event: end                            data: {"state": "finished", "path": "e/p/id", "last_step": 9}
    event: run                            data: {<the runs row>, "summary": {...}}
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import duckdb

from .core import ServerCore
from .jsonable import dumps, json_value, table_records
from .reads import history, key_values, list_runs, parse_run, run_row

__all__ = ["TERMINAL", "follow_history", "follow_runs", "sse"]

TERMINAL = frozenset({"finished", "failed", "killed"})
KEEPALIVE_S = 10.0
PAGE = 1000


def sse(event: str, data: Any, id: Any = None) -> str:
    """One server-sent event (``data`` as JSON on one line)."""
    head = f"id: {id}\n" if id is not None else ""
    return f"{head}event: {event}\ndata: {dumps(json_value(data))}\n\n"


def _history_since(cur: duckdb.DuckDBPyConnection, entity: str, project: str, run_id: str,
                   keys: Sequence[str] | None, after: int) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    run = run_row(cur, entity, project, run_id)
    if run is None:
        return None, []
    table = history(cur, run["run_uid"], keys=keys, min_step=after + 1, limit=PAGE)
    return run, table_records(table)


async def follow_history(core: ServerCore, entity: str, project: str, run_id: str, *,
                         keys: Sequence[str] | None = None, after: int = -1,
                         keepalive: float = KEEPALIVE_S) -> AsyncIterator[str]:
    """SSE text of a run's history after step ``after``, following it until the run ends."""
    state: str | None = None
    path = f"{entity}/{project}/{run_id}"
    while not core.stopping.is_set():
        seq = core.projected_seq
        run, rows = await core.read(_history_since, entity, project, run_id, keys, after)
        if run is not None:
            if run["state"] != state:
                state = run["state"]
                yield sse("state", {"state": state, "path": path})
            for row in rows:
                after = int(row["_step"])
                yield sse("history", row, id=after)
            if len(rows) == PAGE:
                continue
            if state in TERMINAL:
                yield sse("end", {"state": state, "path": path, "last_step": run.get("last_step")})
                return
        if not await core.wait_advance(seq, keepalive) and not core.stopping.is_set():
            yield ": keepalive\n\n"


def _runs_snapshot(cur: duckdb.DuckDBPyConnection, entity: str, project: str,
                   filters: dict[str, Any] | None) -> list[dict[str, Any]]:
    table, _ = list_runs(cur, entity, project, filters=filters, order="+created_at", limit=100_000)
    runs = [parse_run(r) for r in table.to_pylist()]
    summaries = key_values(cur, "summary", [r["run_uid"] for r in runs])
    for r in runs:
        r["summary"] = summaries.get(r["run_uid"], {})
    return runs


async def follow_runs(core: ServerCore, entity: str, project: str, *, filters: dict[str, Any] | None = None,
                      keepalive: float = KEEPALIVE_S) -> AsyncIterator[str]:
    """SSE text of a project's runs: every run once at the start, then each run whenever its row or
    summary changes (a ``run`` event with the whole row)."""
    seen: dict[str, str] = {}
    while not core.stopping.is_set():
        seq = core.projected_seq
        for run in await core.read(_runs_snapshot, entity, project, filters):
            text = dumps(json_value(run))
            if seen.get(run["run_uid"]) != text:
                seen[run["run_uid"]] = text
                yield f"event: run\ndata: {text}\n\n"
        if not await core.wait_advance(seq, keepalive) and not core.stopping.is_set():
            yield ": keepalive\n\n"
