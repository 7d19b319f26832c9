"""The HTTP routes that move and delete runs (see :mod:`.lifecycle` for what happens)::

    POST   /api/runs/{entity}/{project}/{run_id}/move      {"project": P}: move one run to entity/P
    DELETE /api/runs/{entity}/{project}/{run_id}           delete one run
    POST   /api/projects/{entity}/{project}/runs/move      {"project": P, "run_ids": [...] | "filters": {...}}
    POST   /api/projects/{entity}/{project}/runs/delete    {"run_ids": [...] | "filters": {...}}

A bulk call names its runs by id or by a MongoDB-style filter (``{}``: every run of the project).
Answers list what was done, once it is projected (``wait``, up to 10 s; ``projected`` says).
Errors: 404 (a run is not there), 409 (a path is taken, or a run to delete has forks left; nothing
changed), 400 (bad request).
"""

from __future__ import annotations

from typing import Annotated, Any

import duckdb
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from .core import ServerCore
from .http import _core, _json
from .lifecycle import delete_runs, fork_children, move_runs
from .reads import list_runs, parse_run

__all__ = ["DeleteRequest", "MoveRequest", "add_lifecycle_routes", "select_runs"]

Core = Annotated[ServerCore, Depends(_core)]
WAIT_TIMEOUT_S = 10.0
MAX_RUNS = 100_000


class _Selection(BaseModel):
    run_ids: list[str] | None = Field(default=None, description="these runs of the project")
    filters: dict[str, Any] | None = Field(default=None, description="or the runs matching this filter ({}: all)")
    wait: bool = Field(default=True, description="answer once the change is projected (up to 10 s)")


class MoveRequest(_Selection):
    project: str = Field(description="the project (of the same entity) to move the runs to")


class DeleteRequest(_Selection):
    pass


class _OneMove(BaseModel):
    project: str = Field(description="the project (of the same entity) to move the run to")
    wait: bool = True


def select_runs(cur: duckdb.DuckDBPyConnection, entity: str, project: str, run_ids: list[str] | None,
                filters: dict[str, Any] | None) -> tuple[list[dict[str, Any]], list[str]]:
    """The ``runs`` rows chosen by ids or a filter, and the ids that are not in the project."""
    if run_ids is not None:
        cur.execute("SELECT * FROM runs WHERE entity = ? AND project = ? AND path IS NOT NULL AND "
                    "run_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY created_at, run_id",
                    [entity, project, list(run_ids)])
        cols = [d[0] for d in cur.description or []]
        rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
        found = {r["run_id"] for r in rows}
        return rows, [i for i in dict.fromkeys(run_ids) if i not in found]
    page, _ = list_runs(cur, entity, project, filters=filters or {}, order="+created_at", limit=MAX_RUNS)
    return [parse_run(r) for r in page.to_pylist()], []


def add_lifecycle_routes(app: FastAPI, dependencies: list[Any]) -> None:
    """Add the move and delete routes to ``app`` (the API of :func:`.http.create_app`)."""
    async def chosen(core: ServerCore, entity: str, project: str, body: _Selection) -> list[dict[str, Any]]:
        if body.run_ids is None and body.filters is None:
            raise HTTPException(400, "name the runs: send run_ids (a list) or filters (a JSON object; {} for all)")
        await core.catch_up(WAIT_TIMEOUT_S)  # read-your-writes: choose among the runs the log holds now
        rows, missing = await core.read(select_runs, entity, project, body.run_ids, body.filters)
        if missing:
            raise HTTPException(404, f"no run {', '.join(missing)} in {entity}/{project}; list the project's "
                                     f"runs at /api/projects/{entity}/{project}/runs")
        return rows  # type: ignore[no-any-return]

    async def projected(core: ServerCore, seqs: list[int], wait: bool) -> bool:
        return bool(seqs) and wait and await core.projector.wait_for_seq(max(seqs), WAIT_TIMEOUT_S)

    async def do_move(core: ServerCore, rows: list[dict[str, Any]], to: str, wait: bool) -> JSONResponse:
        moved = await move_runs(core.nc, rows, to)
        done = await projected(core, [m["stream_seq"] for m in moved], wait)
        return _json({"moved": moved, "projected": done})

    async def do_delete(core: ServerCore, rows: list[dict[str, Any]], wait: bool) -> JSONResponse:
        forks = await core.read(fork_children, [r["run_uid"] for r in rows])
        deleted = await delete_runs(core.nc, rows, forks, objects=_Objects(core))
        done = await projected(core, [d["stream_seq"] for d in deleted], wait)
        return _json({"deleted": deleted, "projected": done})

    @app.post("/api/projects/{entity}/{project}/runs/move", dependencies=dependencies,
              summary="move runs (by id or filter) to another project of the entity")
    async def move_many(entity: str, project: str, body: MoveRequest,
                        core: Core) -> JSONResponse:
        return await do_move(core, await chosen(core, entity, project, body), body.project, body.wait)

    @app.post("/api/projects/{entity}/{project}/runs/delete", dependencies=dependencies,
              summary="delete runs (by id or filter): a tombstone, then their data is purged")
    async def delete_many(entity: str, project: str, body: DeleteRequest,
                          core: Core) -> JSONResponse:
        return await do_delete(core, await chosen(core, entity, project, body), body.wait)

    @app.post("/api/runs/{entity}/{project}/{run_id}/move", dependencies=dependencies,
              summary="move one run to another project of the entity")
    async def move_one(entity: str, project: str, run_id: str, body: _OneMove,
                       core: Core) -> JSONResponse:
        rows = await chosen(core, entity, project, _Selection(run_ids=[run_id]))
        return await do_move(core, rows, body.project, body.wait)

    @app.delete("/api/runs/{entity}/{project}/{run_id}", dependencies=dependencies,
                summary="delete one run: a tombstone, then its data is purged")
    async def delete_one(entity: str, project: str, run_id: str, core: Core,
                         wait: bool = True) -> JSONResponse:
        rows = await chosen(core, entity, project, _Selection(run_ids=[run_id]))
        return await do_delete(core, rows, wait)


class _Objects:
    """Deleting runs' objects: which ones only they need (read from the projection), and removing
    them through the SDK's blocking object-store client in a worker thread."""

    def __init__(self, core: ServerCore) -> None:
        self.core = core

    async def plan(self, run_uids: list[str]) -> set[str]:
        from .files_reads import only_needed_by

        return set(await self.core.read(only_needed_by, run_uids))

    async def purge(self, digests: set[str]) -> int:
        import anyio

        return await anyio.to_thread.run_sync(self._purge, sorted(digests))

    def _purge(self, digests: list[str]) -> int:
        from ..broker.miniclient import MiniNats
        from ..broker.objects import ObjectStore

        cfg = self.core.config
        opts = cfg.nats_options()
        client = MiniNats(cfg.nats_url, token=opts.get("token"), user=opts.get("user"),
                          password=opts.get("password"), creds=opts.get("creds"),
                          name="runstream-server-objects").connect()
        try:
            store = ObjectStore(client)
            return sum(1 for d in digests if store.purge(d))
        finally:
            client.close()
