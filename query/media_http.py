"""HTTP routes of a run's media (added to the app by :func:`~.http.create_app`)::

    GET /api/runs/{entity}/{project}/{run_id}/media               media rows (key, type, step): JSON or Arrow
    GET /api/runs/{entity}/{project}/{run_id}/media/keys          each media key: type, steps
    GET /api/runs/{entity}/{project}/{run_id}/media/histograms    a histogram key over steps: JSON or Arrow
    GET /api/runs/{entity}/{project}/{run_id}/media/table         a logged Table's rows: paged, sorted,
                                                                  filtered; JSON or Arrow

An image's (audio's, video's...) bytes are a run file: ``…/files/{path}`` with the row's ``path``.
Every route needs what the other ``/api`` routes need (the API key when one is set).
"""

from __future__ import annotations

import io
from typing import Annotated, Any

import anyio
import pyarrow as pa
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import Response

from .core import ServerCore
from .http import ARROW, Core, _arrow, _fresh, _json, _run, _wants_arrow
from .jsonable import table_records
from .media_reads import histograms, media_keys, run_media, table_file, table_page

__all__ = ["add_media_routes"]

MAX_TABLE_BYTES = 256 * 1024 * 1024
"""A logged table's Parquet file larger than this is not read by the server (download it instead)."""


async def _read_object(core: ServerCore, sha256: str) -> bytes:
    from ..broker.miniclient import MiniNats
    from ..broker.objects import ObjectStore

    opts = core.config.nats_options()

    def read() -> bytes | None:
        client = MiniNats(core.config.nats_url, name="runstream-server-media", **opts).connect()
        try:
            store = ObjectStore(client)
            info = store.info(sha256)
            if info is None:
                return None
            if int(info.get("size", 0)) > MAX_TABLE_BYTES:
                raise HTTPException(413, f"the table's file is {int(info['size']) / 1e6:.0f} MB; the server pages "
                                         f"tables up to {MAX_TABLE_BYTES / 1e6:.0f} MB: download it from …/files")
            return b"".join(store.chunks(sha256))
        finally:
            client.close()

    data = await anyio.to_thread.run_sync(read)
    if data is None:
        raise HTTPException(404, f"object {sha256} is not in the object store: it was purged, or its upload has "
                                 "not finished (runstream sync)")
    return data


def add_media_routes(app: FastAPI, dependencies: list[Any]) -> None:
    """Register the routes above on ``app`` (with the app's auth dependencies)."""
    both: dict[int | str, dict[str, Any]] = {200: {"content": {"application/json": {}, ARROW: {}}}}

    @app.get("/api/runs/{entity}/{project}/{run_id}/media", dependencies=dependencies, responses=both,
             summary="a run's media (images, tables, histograms, ...): key, step, type, file, metadata")
    async def media(request: Request, core: Core, entity: str, project: str, run_id: str, key: str | None = None,
                    type: str | None = None, min_step: int | None = None, max_step: int | None = None,
                    format: str | None = None, fresh: bool = False) -> Response:
        arrow = _wants_arrow(request, format)
        headers = await _fresh(core, fresh)
        row = await _run(core, entity, project, run_id)
        table = await core.read(run_media, row["run_uid"], key, type, min_step, max_step)
        if arrow:
            return _arrow(table, headers)
        return _json({"media": table_records(table)}, headers=headers)

    @app.get("/api/runs/{entity}/{project}/{run_id}/media/keys", dependencies=dependencies,
             summary="each media key of a run: type, steps, first and last step")
    async def keys(core: Core, entity: str, project: str, run_id: str, fresh: bool = False) -> Response:
        headers = await _fresh(core, fresh)
        row = await _run(core, entity, project, run_id)
        return _json({"keys": await core.read(media_keys, row["run_uid"])}, headers=headers)

    @app.get("/api/runs/{entity}/{project}/{run_id}/media/histograms", dependencies=dependencies, responses=both,
             summary="a histogram key over steps: bin edges and counts per step")
    async def hist(request: Request, core: Core, entity: str, project: str, run_id: str, key: str,
                   format: str | None = None, fresh: bool = False) -> Response:
        arrow = _wants_arrow(request, format)
        headers = await _fresh(core, fresh)
        row = await _run(core, entity, project, run_id)
        steps = await core.read(histograms, row["run_uid"], key)
        if arrow:
            return _arrow(pa.table({"step": pa.array([s["step"] for s in steps], pa.int64()),
                                    "bins": pa.array([s["bins"] for s in steps], pa.list_(pa.float64())),
                                    "values": pa.array([s["values"] for s in steps], pa.list_(pa.float64()))}),
                          headers)
        return _json({"key": key, "steps": steps}, headers=headers)

    @app.get("/api/runs/{entity}/{project}/{run_id}/media/table", dependencies=dependencies, responses=both,
             summary="the rows of a logged Table (default: its last step), paged, sorted and filtered")
    async def table(request: Request, core: Core, entity: str, project: str, run_id: str, key: str,
                    step: int | None = None, offset: Annotated[int, Query(ge=0)] = 0,
                    limit: Annotated[int, Query(ge=0, le=1000)] = 100, sort: str | None = None, desc: bool = False,
                    filter: str | None = None, format: str | None = None, fresh: bool = False) -> Response:
        arrow = _wants_arrow(request, format)
        headers = await _fresh(core, fresh)
        row = await _run(core, entity, project, run_id)
        found = await core.read(table_file, row["run_uid"], key, step)
        if found is None:
            raise HTTPException(404, f"run {entity}/{project}/{run_id} has no table {key!r}"
                                     f"{'' if step is None else f' at step {step}'}; list its media at "
                                     f"/api/runs/{entity}/{project}/{run_id}/media/keys")
        import pyarrow.parquet as pq

        data = await _read_object(core, found["sha256"])
        try:
            page, total = table_page(pq.read_table(io.BytesIO(data)), offset=offset, limit=limit, sort=sort,
                                     desc=desc, filter=filter)
        except KeyError:
            raise HTTPException(400, f"table {key!r} has no column {sort!r} to sort by") from None
        info = {"X-Runstream-Total-Rows": str(total), "X-Runstream-Step": str(found["step"]), **(headers or {})}
        if arrow:
            return _arrow(page, info)
        return _json({"key": key, "step": found["step"], "columns": page.column_names, "total": total,
                      "offset": offset, "rows": [list(r.values()) for r in table_records(page)]}, headers=headers)
