"""HTTP routes acting on runs beyond reads: stop a live run; list alerts with delivery status."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from .alert_reads import list_alerts
from .http import FRESH_TIMEOUT_S, Core, _fresh, _json, _run
from .stop import stop_run

__all__ = ["StopRequest", "add_control_routes"]


class StopRequest(BaseModel):
    requested_by: str = Field("api", max_length=200, description="who asks (recorded in stop_requests)")
    wait: bool = Field(True, description="answer once the stop_requested event is projected (up to 10 s)")


def add_control_routes(app: FastAPI, dependencies: list[Any]) -> None:
    """Add ``POST …/stop``, ``GET …/alerts`` and ``GET /api/alerts`` to ``app``."""

    @app.post("/api/runs/{entity}/{project}/{run_id}/stop", dependencies=dependencies,
              summary="stop a live run: its processes get a KeyboardInterrupt and it ends killed (409: not alive)")
    async def stop(core: Core, entity: str, project: str, run_id: str,
                   body: StopRequest | None = None) -> JSONResponse:
        body = body or StopRequest(requested_by="api", wait=True)
        row = await _run(core, entity, project, run_id)
        out = await stop_run(core.nc, row, body.requested_by)
        out["projected"] = await core.projector.wait_for_seq(out["stream_seq"], FRESH_TIMEOUT_S) if body.wait else False
        return _json(out)

    @app.get("/api/runs/{entity}/{project}/{run_id}/alerts", dependencies=dependencies,
             summary="the run's alerts, newest first, with each sink's delivery status")
    async def run_alerts(core: Core, entity: str, project: str, run_id: str, fresh: bool = False,
                         limit: Annotated[int, Query(ge=0, le=10_000)] = 1000) -> JSONResponse:
        headers = await _fresh(core, fresh)
        await _run(core, entity, project, run_id)
        rows = await core.read(list_alerts, entity, project, run_id, limit)
        return _json({"alerts": rows}, headers=headers)

    @app.get("/api/alerts", dependencies=dependencies, summary="alerts, newest first, with delivery status")
    async def alerts(core: Core, entity: str | None = None, project: str | None = None, fresh: bool = False,
                     limit: Annotated[int, Query(ge=0, le=10_000)] = 1000) -> JSONResponse:
        headers = await _fresh(core, fresh)
        rows = await core.read(list_alerts, entity, project, None, limit)
        return _json({"alerts": rows}, headers=headers)
