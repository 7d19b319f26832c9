"""The HTTP API of ``runstream server`` (FastAPI; the OpenAPI schema is at ``/openapi.json``).

::

    GET   /api/health                                         projection position, lag, this process
    GET   /api/projects[?entity=E]                            projects with run counts
    GET   /api/projects/{entity}/{project}/runs               runs: filters, order, per_page, offset
    GET   /api/projects/{entity}/{project}/runs/events        SSE: the project's runs as they change
    GET   /api/runs/{entity}/{project}/{run_id}               one run: row, config, summary
    PATCH /api/runs/{entity}/{project}/{run_id}               edit name/notes/tags/group/job_type (a meta event)
    GET   /api/runs/{entity}/{project}/{run_id}/history       wide history: JSON or Arrow IPC (branch, as_of)
    GET   /api/runs/{entity}/{project}/{run_id}/branches      history branches (rewinds archive them)
    GET   /api/projects/{entity}/{project}/groups/history     a metric's mean/min/max/std per step per group
    GET   /api/runs/{entity}/{project}/{run_id}/history/events  SSE: the run's history as it is logged
    POST  /api/runs/{entity}/{project}/{run_id}/move          move it to another project (see .http_lifecycle)
    DELETE /api/runs/{entity}/{project}/{run_id}              delete it; in bulk: /api/projects/.../runs/delete
    GET   /api/runs/{entity}/{project}/{run_id}/summary       {key: value}
    GET   /api/runs/{entity}/{project}/{run_id}/config        {key: value}
    GET   /api/runs/{entity}/{project}/{run_id}/system        system metrics, one row per sample
    GET   /api/runs/{entity}/{project}/{run_id}/logs          console lines: JSON, or ?format=text
    POST  /api/sql                                            one sandboxed query: JSON or Arrow IPC
    POST  /api/runs/{entity}/{project}/{run_id}/stop          stop a live run (409 when none answers)
    GET   /api/runs/{entity}/{project}/{run_id}/alerts        the run's alerts with delivery status
    GET   /api/alerts[?entity=E&project=P]                    alerts, newest first
    GET   /api/runs/.../files[/{name}], /api/artifacts/...    files and artifacts (see files_http.py)
    GET   /api/runs/.../media[/keys|/histograms|/table]       media: images, tables, histograms (media_http.py)

On a partitioned deployment (``runstream server --entities``) a request about an entity this
server does not project is forwarded over NATS to one that does (:mod:`.forward`); ``POST
/api/sql`` goes to a server holding its ``entity``, or without one to a server holding every entity.

Arrow IPC (stream format) is chosen with ``Accept: application/vnd.apache.arrow.stream`` or
``?format=arrow``. ``?fresh=true`` first waits (briefly) until the projection holds what the log
holds now (read-your-writes). With an API key configured every ``/api`` route needs
``Authorization: Bearer <key>``. Errors are ``{"error": message, "kind": ...}`` with 400 (bad
request or query), 401 (key), 403 (refused by the sandbox), 404, 408 (time limit), 409 (stop of a
run that is not alive; a move or delete refused), 503 (lagging).
"""

from __future__ import annotations

import contextlib
import hmac
import json
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import pyarrow as pa
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from . import protocol
from .core import ServerCore
from .errors import (
    Conflict,
    NoServerForEntity,
    ProjectionLagging,
    QueryError,
    QueryRefused,
    QueryTimeout,
    RunNotAlive,
    TooManyQueries,
)
from .filters import FilterError
from .forward import FORWARDED, EntityRouter, http_handler
from .jsonable import json_value, table_records
from .live import follow_history, follow_runs
from .reads import branches, group_history, history, key_values, list_projects, list_runs, parse_run, run_row

if TYPE_CHECKING:
    from .server import ServerConfig

__all__ = ["ARROW", "create_app"]

ARROW = "application/vnd.apache.arrow.stream"
FRESH_TIMEOUT_S = 10.0
MAX_PER_PAGE = 10_000


class SqlRequest(BaseModel):
    sql: str = Field(description="one read-only statement (SELECT, WITH, FROM, DESCRIBE, SHOW, ...)")
    max_rows: int = Field(10_000, ge=0, description="row cap; `truncated` says when it cut")
    timeout: float = Field(30.0, gt=0, description="seconds before the query is interrupted")
    format: str | None = Field(None, description="`arrow` for Arrow IPC (or send the Accept header)")
    fresh: bool = Field(False, description="first wait until the projection holds what the log holds")
    entity: str | None = Field(None, description="on a partitioned deployment: run it on a server holding "
                                                 "this entity (default: on one holding every entity)")


class RunUpdate(BaseModel):
    name: str | None = None
    notes: str | None = None
    tags: list[str] | None = None
    group: str | None = None
    job_type: str | None = None
    wait: bool = Field(True, description="answer once the edit is projected (up to 10 s)")


def _json(content: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(json_value(content), status_code=status, headers=headers)


def _wants_arrow(request: Request, fmt: str | None) -> bool:
    if fmt is not None:
        if fmt not in ("json", "arrow"):
            raise HTTPException(400, f"format must be json or arrow, not {fmt!r}")
        return fmt == "arrow"
    return ARROW in request.headers.get("accept", "")


def _arrow(table: pa.Table, headers: dict[str, str] | None = None) -> Response:
    return Response(protocol.table_to_ipc(table), media_type=ARROW, headers=headers)


def _core(request: Request) -> ServerCore:
    core = getattr(request.app.state, "core", None)
    if core is None:
        raise HTTPException(503, "the runstream server is starting or stopping")
    return core  # type: ignore[no-any-return]


def _auth(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    key = request.app.state.api_key
    if not key or request.scope.get(FORWARDED):  # forwarded by a server that checked the key
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key.encode()):
        raise HTTPException(401, "missing or wrong API key: send Authorization: Bearer <key> "
                                 "(RUNSTREAM_API_KEY)", headers={"WWW-Authenticate": "Bearer"})


Core = Annotated[ServerCore, Depends(_core)]


async def _fresh(core: ServerCore, fresh: bool) -> dict[str, str]:
    if not fresh:
        return {}
    lag = await core.catch_up(FRESH_TIMEOUT_S)
    return {"X-Runstream-Lag": str(lag)} if lag else {}


async def _run(core: ServerCore, entity: str, project: str, run_id: str) -> dict[str, Any]:
    run = await core.read(run_row, entity, project, run_id)
    if run is None:
        raise HTTPException(404, f"no run {entity}/{project}/{run_id}; list the project's runs at "
                                 f"/api/projects/{entity}/{project}/runs")
    return run  # type: ignore[no-any-return]


def _keys(keys: str | None) -> list[str] | None:
    if keys is None:
        return None
    return [k for k in (part.strip() for part in keys.split(",")) if k]


def _parse_filters(filters: str | None) -> dict[str, Any] | None:
    if not filters:
        return None
    try:
        parsed = json.loads(filters)
    except ValueError as e:
        raise FilterError(f"filters must be a JSON object: {e}") from e
    if not isinstance(parsed, dict):
        raise FilterError("filters must be a JSON object of field → condition")
    return parsed


def _sse(stream: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _error_status(e: QueryError) -> tuple[int, str]:
    if isinstance(e, QueryRefused):
        return 403, "refused"
    if isinstance(e, QueryTimeout):
        return 408, "timeout"
    if isinstance(e, TooManyQueries):
        return 429, "busy"
    if isinstance(e, ProjectionLagging):
        return 503, "lagging"
    if isinstance(e, FilterError):
        return 400, "filter"
    if isinstance(e, RunNotAlive):
        return 409, "not_alive"
    if isinstance(e, Conflict):
        return 409, "conflict"
    if isinstance(e, NoServerForEntity):
        return 503, "no_server"
    return 400, "error"


def create_app(core: ServerCore | None = None, *, api_key: str | None = None,
               config: ServerConfig | None = None) -> FastAPI:
    """The HTTP API over ``core``.

    Args:
        core: a running core (``runstream server`` passes the one it opened).
        api_key: require ``Authorization: Bearer <api_key>`` on every ``/api`` route.
        config: instead of ``core``: open a core of this configuration in the app's lifespan
            (in-process use, e.g. tests with an ASGI client).
    """
    lifespan = None
    if core is None and config is not None:
        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            from .core import open_core

            async with open_core(config) as opened:
                opened.service.http = http_handler(app, opened.nc)
                app.state.core = opened
                try:
                    yield
                finally:
                    app.state.core = None
                    opened.tg.cancel_scope.cancel()

    app = FastAPI(title="runstream", version=_version(), lifespan=lifespan,
                  description="The read side of runstream: runs, history, summary, config, SQL, live streams.")
    app.state.core = core
    app.state.api_key = api_key
    if core is not None:
        core.service.http = http_handler(app, core.nc)

    @app.exception_handler(QueryError)
    async def query_error(request: Request, e: QueryError) -> JSONResponse:
        status, kind = _error_status(e)
        return _json({"error": str(e), "kind": kind}, status)

    from nats.errors import MaxPayloadError

    @app.exception_handler(MaxPayloadError)
    async def too_large_for_nats(request: Request, e: MaxPayloadError) -> JSONResponse:
        return _json({"error": "refused: the change is larger than the broker carries in one message "
                               f"({e}); send less (shorter notes, fewer tags)", "kind": "too_large"}, 413)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        kind = {401: "unauthorized", 404: "not_found", 503: "unavailable"}.get(e.status_code, "error")
        return _json({"error": str(e.detail), "kind": kind}, e.status_code, headers=e.headers)

    api = [Depends(_auth)]

    @app.get("/api/health", dependencies=api, summary="projection position and lag")
    async def health(core: Core) -> JSONResponse:
        info = await core.service.health({})
        info.pop("ok", None)
        return _json(info)

    @app.get("/api/projects", dependencies=api, summary="projects and their run counts")
    async def projects(core: Core, entity: str | None = None, fresh: bool = False) -> JSONResponse:
        headers = await _fresh(core, fresh)
        table = await core.read(list_projects, entity)
        return _json({"projects": table_records(table)}, headers=headers)

    @app.get("/api/projects/{entity}/{project}/runs", dependencies=api, summary="runs of a project")
    async def runs(core: Core, entity: str, project: str,
                   filters: Annotated[str | None, Query(description="MongoDB-style filter, JSON")] = None,
                   order: Annotated[str | None, Query(description="e.g. -summary_metrics.loss")] = None,
                   per_page: Annotated[int, Query(ge=1, le=MAX_PER_PAGE)] = 50,
                   offset: Annotated[int, Query(ge=0)] = 0, fresh: bool = False) -> JSONResponse:
        headers = await _fresh(core, fresh)
        parsed = _parse_filters(filters)

        def page(cur: Any) -> dict[str, Any]:
            table, total = list_runs(cur, entity, project, filters=parsed, order=order, limit=per_page,
                                     offset=offset)
            rows = [parse_run(r) for r in table.to_pylist()]
            uids = [r["run_uid"] for r in rows]
            summaries, configs = key_values(cur, "summary", uids), key_values(cur, "config", uids)
            for r in rows:
                r["summary"], r["config"] = summaries[r["run_uid"]], configs[r["run_uid"]]
            nxt = offset + len(rows)
            return {"runs": rows, "total": total, "next_offset": nxt if nxt < total else None}

        return _json(await core.read(page), headers=headers)

    @app.get("/api/projects/{entity}/{project}/runs/events", dependencies=api,
             summary="SSE: the project's runs, then each change", response_class=StreamingResponse)
    async def runs_events(core: Core, entity: str, project: str, filters: str | None = None) -> StreamingResponse:
        return _sse(follow_runs(core, entity, project, filters=_parse_filters(filters)))

    @app.get("/api/runs/{entity}/{project}/{run_id}", dependencies=api, summary="one run")
    async def run(core: Core, entity: str, project: str, run_id: str, fresh: bool = False) -> JSONResponse:
        headers = await _fresh(core, fresh)

        def overview(cur: Any) -> dict[str, Any] | None:
            row = run_row(cur, entity, project, run_id)
            if row is not None:
                row["config"] = key_values(cur, "config", [row["run_uid"]])[row["run_uid"]]
                row["summary"] = key_values(cur, "summary", [row["run_uid"]])[row["run_uid"]]
            return row

        row = await core.read(overview)
        if row is None:
            await _run(core, entity, project, run_id)  # raises the 404
        return _json(row, headers=headers)

    @app.patch("/api/runs/{entity}/{project}/{run_id}", dependencies=api,
               summary="edit name, notes, tags, group or job type (published as a meta event)")
    async def update(core: Core, entity: str, project: str, run_id: str, edit: RunUpdate) -> JSONResponse:
        row = await _run(core, entity, project, run_id)
        changes = edit.model_dump(exclude_unset=True, exclude={"wait"})
        if not changes:
            raise HTTPException(400, "nothing to change: send name, notes, tags, group or job_type")
        seq = await core.publish_meta(row, changes)
        projected = await core.projector.wait_for_seq(seq, FRESH_TIMEOUT_S) if edit.wait else False
        return _json({"stream_seq": seq, "projected": projected, "changes": changes})

    @app.get("/api/runs/{entity}/{project}/{run_id}/history", dependencies=api,
             summary="a run's history, one row per step (JSON or Arrow IPC)",
             responses={200: {"content": {"application/json": {}, ARROW: {}}}})
    async def run_history(request: Request, core: Core, entity: str, project: str, run_id: str,
                          keys: Annotated[str | None, Query(description="comma-separated keys")] = None,
                          min_step: int | None = None, max_step: int | None = None,
                          samples: Annotated[int | None, Query(ge=0)] = None,
                          limit: Annotated[int | None, Query(ge=0)] = None,
                          branch: Annotated[int | None, Query(ge=0, description="one branch (rewinds "
                                                              "archive the current one)")] = None,
                          as_of: Annotated[str | None, Query(description="the history as it was at a "
                                                             "stream sequence or time (epoch or ISO 8601)")] = None,
                          format: str | None = None, fresh: bool = False) -> Response:
        arrow = _wants_arrow(request, format)
        headers = await _fresh(core, fresh)
        row = await _run(core, entity, project, run_id)
        kwargs = {"keys": _keys(keys), "min_step": min_step, "max_step": max_step, "samples": samples,
                  "limit": limit, "branch": branch}
        if as_of is not None:
            table = await _history_as_of(core, row["run_uid"], as_of, kwargs)
        else:
            table = await core.read(history, row["run_uid"], **kwargs)
        if arrow:
            return _arrow(table, headers)
        return _json({"rows": table_records(table), "columns": table.column_names}, headers=headers)

    @app.get("/api/runs/{entity}/{project}/{run_id}/history/events", dependencies=api,
             summary="SSE: the run's history as it is logged", response_class=StreamingResponse)
    async def history_events(core: Core, entity: str, project: str, run_id: str, keys: str | None = None,
                             after_step: int = -1,
                             last_event_id: Annotated[str | None, Header()] = None) -> StreamingResponse:
        after = after_step
        if last_event_id and last_event_id.strip().lstrip("-").isdigit():
            after = max(after, int(last_event_id))
        return _sse(follow_history(core, entity, project, run_id, keys=_keys(keys), after=after))

    @app.get("/api/projects/{entity}/{project}/groups/history", dependencies=api,
             summary="metrics aggregated per step across the runs of each group (mean, min, max, std)",
             responses={200: {"content": {"application/json": {}, ARROW: {}}}})
    async def groups_history(request: Request, core: Core, entity: str, project: str,
                             group: str | None = None, job_type: str | None = None,
                             by: Annotated[str, Query(description="group or job_type")] = "group",
                             keys: Annotated[str | None, Query(description="comma-separated keys")] = None,
                             filters: Annotated[str | None, Query(description="runs filter, JSON")] = None,
                             format: str | None = None, fresh: bool = False) -> Response:
        arrow = _wants_arrow(request, format)
        headers = await _fresh(core, fresh)
        table = await core.read(group_history, entity, project, group=group, job_type=job_type,
                                filters=_parse_filters(filters), keys=_keys(keys), by=by)
        if arrow:
            return _arrow(table, headers)
        return _json({"rows": table_records(table), "columns": table.column_names}, headers=headers)

    @app.get("/api/runs/{entity}/{project}/{run_id}/branches", dependencies=api,
             summary="the run's history branches (a rewind archives the current one)")
    async def run_branches(core: Core, entity: str, project: str, run_id: str, fresh: bool = False) -> JSONResponse:
        headers = await _fresh(core, fresh)
        row = await _run(core, entity, project, run_id)
        return _json({"branches": await core.read(branches, row["run_uid"])}, headers=headers)

    for table_name in ("summary", "config"):
        _add_key_values(app, table_name, api)

    from .files_http import add_file_routes

    add_file_routes(app, api)  # files and artifacts

    from .media_http import add_media_routes

    add_media_routes(app, api)  # images, tables, histograms, ...

    from .http_telemetry import add_routes

    add_routes(app, api)  # …/system and …/logs
    from .http_lifecycle import add_lifecycle_routes

    add_lifecycle_routes(app, api)  # move and delete

    @app.post("/api/sql", dependencies=api, summary="one sandboxed read-only query",
              responses={200: {"content": {"application/json": {}, ARROW: {}}}})
    async def sql(request: Request, core: Core, body: SqlRequest) -> Response:
        arrow = _wants_arrow(request, body.format)
        wait_seq = await core.service.stream_last_seq() if body.fresh else None
        peer = request.client.host if request.client is not None else "http"
        result, seq = await core.service.run_sql(body.sql, max_rows=body.max_rows, timeout=body.timeout,
                                                 wait_seq=wait_seq, client=f"http:{peer}")
        if arrow:
            return _arrow(result.table, {"X-Runstream-Truncated": str(result.truncated).lower(),
                                         "X-Runstream-Projected-Seq": str(seq)})
        return _json({"columns": result.table.column_names, "rows": table_records(result.table),
                      "truncated": result.truncated, "projected_seq": seq})

    from .run_control import add_control_routes

    add_control_routes(app, api)
    from .ui import mount_ui  # the web app: pages, static files, security headers (last: its catch-all pages)

    mount_ui(app, api)
    # outermost (added last): it sees the client's own receive, so a client that leaves a forwarded
    # live stream is noticed at once; forwarded responses carry the holder's headers already
    app.add_middleware(EntityRouter)
    from .limits import BodyLimit

    app.add_middleware(BodyLimit)  # outermost of all: no layer ever holds a body over the limit
    return app


async def _history_as_of(core: ServerCore, run_uid: str, as_of: str, kwargs: dict[str, Any]) -> pa.Table:
    """The run's history folded from the log up to ``as_of`` (:mod:`.timetravel`)."""
    from .reads import Reader
    from .timetravel import fold_as_of, lineage_uids, parse_as_of

    moment = parse_as_of(as_of)
    uids = await core.read(lineage_uids, run_uid)
    store = await fold_as_of(core.nc.jetstream(), uids, moment)
    try:
        return await anyio.to_thread.run_sync(lambda: Reader(store.cursor).run(history, run_uid, **kwargs),
                                              limiter=core.service.limiter)
    finally:
        store.close()


def _add_key_values(app: FastAPI, table: str, dependencies: list[Any]) -> None:
    async def endpoint(core: Core, entity: str, project: str, run_id: str, fresh: bool = False) -> JSONResponse:
        headers = await _fresh(core, fresh)
        row = await _run(core, entity, project, run_id)
        values = await core.read(key_values, table, [row["run_uid"]])
        return _json(values[row["run_uid"]], headers=headers)

    app.add_api_route(f"/api/runs/{{entity}}/{{project}}/{{run_id}}/{table}", endpoint, methods=["GET"],
                      dependencies=dependencies, summary=f"a run's {table} as {{key: value}}",
                      name=f"run_{table}")


def _version() -> str:
    from .. import __version__

    return __version__
