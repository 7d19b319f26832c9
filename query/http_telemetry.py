"""HTTP routes of a run's system metrics and console output (added by :func:`.http.create_app`)::

    GET /api/runs/{entity}/{project}/{run_id}/system   wide system metrics: JSON or Arrow IPC
    GET /api/runs/{entity}/{project}/{run_id}/logs     console lines: JSON, or ?format=text (a download)
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import Response

from .http import ARROW, Core, _arrow, _fresh, _json, _keys, _run, _wants_arrow
from .jsonable import table_records
from .reads import run_row
from .telemetry import console_lines, console_text, system_history


def _after(after: str | None) -> dict[str, int] | None:
    if not after:
        return None
    try:
        parsed = json.loads(after)
        if not isinstance(parsed, dict):
            raise ValueError("not an object")
        return {str(w): int(n) for w, n in parsed.items()}
    except (ValueError, TypeError) as e:
        raise HTTPException(400, f"after must be a JSON object of writer → line number: {e}") from e


def add_routes(app: FastAPI, dependencies: list[Any]) -> None:
    """Add the ``…/system`` and ``…/logs`` routes to ``app``."""

    @app.get("/api/runs/{entity}/{project}/{run_id}/system", dependencies=dependencies,
             summary="a run's system metrics, one row per sample (JSON or Arrow IPC)",
             responses={200: {"content": {"application/json": {}, ARROW: {}}}})
    async def run_system(request: Request, core: Core, entity: str, project: str, run_id: str,
                         keys: Annotated[str | None, Query(description="comma-separated keys")] = None,
                         samples: Annotated[int | None, Query(ge=0)] = None,
                         limit: Annotated[int | None, Query(ge=0)] = None,
                         format: str | None = None, fresh: bool = False) -> Response:
        arrow = _wants_arrow(request, format)
        headers = await _fresh(core, fresh)
        row = await _run(core, entity, project, run_id)
        table = await core.read(system_history, row["run_uid"], keys=_keys(keys), samples=samples, limit=limit)
        if arrow:
            return _arrow(table, headers)
        return _json({"rows": table_records(table), "columns": table.column_names}, headers=headers)

    @app.get("/api/runs/{entity}/{project}/{run_id}/logs", dependencies=dependencies,
             summary="a run's console lines (stdout and stderr): JSON, or plain text with format=text",
             responses={200: {"content": {"application/json": {}, "text/plain": {}}}})
    async def run_logs(core: Core, entity: str, project: str, run_id: str,
                       stream: Annotated[str | None, Query(pattern="^(stdout|stderr)$")] = None,
                       after: Annotated[str | None, Query(description='JSON {"writer": line}: only later lines')]
                       = None,
                       limit: Annotated[int | None, Query(ge=0)] = None,
                       format: Annotated[str | None, Query(pattern="^(json|text)$")] = None,
                       fresh: bool = False) -> Response:
        headers = await _fresh(core, fresh)
        cursors = _after(after)

        def read(cur: Any) -> tuple[dict[str, Any] | None, Any]:
            run = run_row(cur, entity, project, run_id)
            if run is None:
                return None, None
            return run, console_lines(cur, run["run_uid"], stream=stream, after=cursors, limit=limit)

        run, table = await core.read(read)
        if run is None:
            await _run(core, entity, project, run_id)  # raises the 404
        if format == "text":
            name = f"{run_id}-output.log".replace('"', "_")
            return Response(console_text(table), media_type="text/plain; charset=utf-8",
                            headers={**headers, "Content-Disposition": f'attachment; filename="{name}"'})
        return _json({"state": run["state"], "lines": table_records(table)}, headers=headers)
