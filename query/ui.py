"""The web app of ``runstream server``: HTML pages, their static files, and the few JSON endpoints
only the app needs. Mounted on the HTTP API by :func:`mount_ui`.

::

    GET  /                                    home: entities and projects    (JSON twin /api/projects)
    GET  /{entity}/{project}                  project workspace              (/api/projects/{e}/{p}/runs)
    GET  /{entity}/{project}/runs/{run_id}    run page                       (/api/runs/{e}/{p}/{id})
    GET  /{entity}/{project}/{run_id}         redirect to the run page (the W&B guide's run URL)
    GET  /sql                                 SQL editor                     (POST /api/sql)
    GET  /runs/by-uid/{run_uid}               redirect to the run page of a run uid (lineage links)
    GET  /static/...                          our own JS/CSS; /static/vendor/plotly.min.js from the plotly wheel
    POST /api/ui/projects/{e}/{p}/series      many runs' series, min/max-envelope downsampled
    GET  /api/ui/runs/{e}/{p}/{id}/lineage    the run's origin and the runs forked from it
    POST /api/ui/sql/download                 one sandboxed query as a CSV or Parquet file

Pages are static shells: every value reaches the browser as JSON and is put in the DOM as text by
our scripts, never as markup. Security: every response carries a strict Content-Security-Policy
(scripts from this origin's files only, nothing inline, no eval; styles may be inline because
plotly.js needs it), ``X-Content-Type-Options: nosniff``
and ``Referrer-Policy: same-origin``; a state-changing request (POST, PUT, PATCH, DELETE) that a
browser marks as cross-site (``Sec-Fetch-Site``, or an ``Origin`` other than the server's) is
refused with 403. Clients that are not browsers (the Python Api, curl) send neither header and are
unaffected.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.staticfiles import StaticFiles

from .downsample import MAX_BUCKETS, SeriesError, series
from .http import Core
from .http_client import quote_path
from .jsonable import json_value

__all__ = ["CSP", "mount_ui", "plotly_js"]

# styles may be inline: plotly.js sets style attributes and injects its bundled map CSS as a <style>
# element at load; scripts stay strictly same-origin files (what stops XSS), and no user text ever
# becomes markup, so there is no way to inject a style either
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
       "form-action 'self'")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PAGES = {"home": "home.html", "workspace": "workspace.html", "run": "run.html", "sql": "sql.html"}


def static_dir() -> Path:
    """The folder of the app's own files (package data of ``runstream.query``)."""
    return Path(str(resources.files(__package__ or "runstream.query") / "static"))


def plotly_js() -> Path | None:
    """plotly.js as the ``plotly`` wheel ships it, or None when the wheel is not installed."""
    try:
        import plotly
    except ImportError:
        return None
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


def _cross_site(request: Request) -> str | None:
    """Why a state-changing request is refused as cross-site, or None to let it through."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site is {site!r}"
    origin = request.headers.get("origin")
    if origin is not None:
        host = request.headers.get("host", "")
        if origin == "null" or urlsplit(origin).netloc != host:
            return f"Origin {origin!r} is not this server ({host!r})"
    return None


def _add_security(app: FastAPI) -> None:
    @app.middleware("http")
    async def security(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.method in UNSAFE_METHODS:
            why = _cross_site(request)
            if why is not None:
                return JSONResponse({"error": f"cross-site {request.method} refused: {why}. Send it from the "
                                              "runstream web app itself, or from a client that is not a browser",
                                     "kind": "forbidden"}, status_code=403)
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.url.path.startswith(("/docs", "/redoc")):  # FastAPI's API docs load their own scripts
            response.headers.setdefault("Content-Security-Policy", CSP)
            response.headers.setdefault("X-Frame-Options", "DENY")
        return response


class SeriesRequest(BaseModel):
    runs: list[str] = Field(description="run ids of the project")
    keys: list[str] | None = Field(None, description="metric keys; none: every numeric key")
    x: str = Field("_step", description="x axis: _step, _runtime or _timestamp")
    buckets: int = Field(500, ge=1, le=MAX_BUCKETS, description="x buckets; each keeps its min and max point")
    x_min: float | None = None
    x_max: float | None = None
    branch: int | None = Field(None, ge=0, description="one history branch of a rewound run (GET …/branches)")


class DownloadRequest(BaseModel):
    sql: str
    format: str = Field("csv", description="csv or parquet")
    max_rows: int = Field(1_000_000, ge=0)
    timeout: float = Field(60.0, gt=0)


def _run_uids(cur: Any, entity: str, project: str, run_ids: list[str]) -> dict[str, str]:
    rows = cur.execute("SELECT run_id, run_uid FROM runs WHERE entity = ? AND project = ? AND path IS NOT NULL "
                       "AND run_id IN (SELECT unnest(?::VARCHAR[]))", [entity, project, run_ids]).fetchall()
    return {rid: uid for rid, uid in rows}


def _series(cur: Any, entity: str, project: str, req: SeriesRequest) -> dict[str, Any]:
    uids = _run_uids(cur, entity, project, req.runs)
    by_uid = {uid: rid for rid, uid in uids.items()}
    out = series(cur, list(uids.values()), keys=req.keys, x_axis=req.x, buckets=req.buckets,
                 x_min=req.x_min, x_max=req.x_max, branch=req.branch)
    for s in out:
        s["run_id"] = by_uid[s.pop("run_uid")]
    return {"x": req.x, "series": out, "missing": sorted(set(req.runs) - set(uids))}


def _lineage(cur: Any, entity: str, project: str, run_id: str) -> dict[str, Any] | None:
    row = cur.execute("SELECT run_uid, origin_kind, origin_run_uid, origin_step, origin_depth FROM runs WHERE "
                      "entity = ? AND project = ? AND run_id = ? AND path IS NOT NULL",
                      [entity, project, run_id]).fetchone()
    if row is None:
        return None
    uid, kind, origin_uid, origin_step, depth = row
    origin = None
    if origin_uid:
        found = cur.execute("SELECT path, name FROM runs WHERE run_uid = ?", [origin_uid]).fetchone()
        origin = {"run_uid": origin_uid, "kind": kind, "step": origin_step, "depth": depth,
                  "path": found[0] if found else None, "name": found[1] if found else None}
    children = [{"path": p, "name": n, "kind": k, "step": s} for p, n, k, s in cur.execute(
        "SELECT path, name, origin_kind, origin_step FROM runs WHERE origin_run_uid = ? AND run_uid <> ? AND "
        "path IS NOT NULL ORDER BY created_at", [uid, uid]).fetchall()]
    return {"origin": origin, "children": children}


def _uid_path(cur: Any, run_uid: str) -> str | None:
    row = cur.execute("SELECT path FROM runs WHERE run_uid = ? AND path IS NOT NULL", [run_uid]).fetchone()
    return row[0] if row else None


def _download(table: pa.Table, fmt: str) -> tuple[bytes, str]:
    buf = io.BytesIO()
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, buf)
        return buf.getvalue(), "application/vnd.apache.parquet"
    import pyarrow.csv as pcsv

    safe = table.select([i for i in range(table.num_columns)])
    for i, f in enumerate(safe.schema):  # CSV has no nested types: write those as text
        if pa.types.is_nested(f.type) or pa.types.is_map(f.type):
            import json

            safe = safe.set_column(i, f.name, pa.array([None if v is None else json.dumps(json_value(v))
                                                        for v in safe.column(i).to_pylist()], pa.string()))
    pcsv.write_csv(safe, buf)
    return buf.getvalue(), "text/csv; charset=utf-8"


def mount_ui(app: FastAPI, dependencies: list[Any]) -> None:
    """Add the web app's pages, static files, JSON endpoints and security headers to ``app``.

    Args:
        dependencies: what every ``/api`` route depends on (the API-key check).
    """
    _add_security(app)
    folder = static_dir()

    def page(name: str) -> Callable[..., Awaitable[FileResponse]]:
        async def serve(request: Request) -> FileResponse:
            if request.path_params.get("entity") in ("api", "static"):
                raise HTTPException(404, f"no such page or API route: {request.url.path}")
            return FileResponse(folder / PAGES[name], media_type="text/html; charset=utf-8",
                                headers={"Cache-Control": "no-cache"})
        return serve

    vendor = plotly_js()

    @app.get("/static/vendor/plotly.min.js", include_in_schema=False)
    async def plotly() -> FileResponse:
        if vendor is None:
            raise HTTPException(404, "plotly.js is not installed: pip install plotly (a runstream dependency)")
        return FileResponse(vendor, media_type="text/javascript; charset=utf-8",
                            headers={"Cache-Control": "max-age=86400"})

    app.mount("/static", StaticFiles(directory=folder), name="static")
    app.add_api_route("/", page("home"), methods=["GET"], include_in_schema=False)
    app.add_api_route("/sql", page("sql"), methods=["GET"], include_in_schema=False)

    @app.get("/runs/by-uid/{run_uid}", include_in_schema=False)
    async def by_uid(core: Core, run_uid: str) -> RedirectResponse:
        path = await core.read(_uid_path, run_uid)
        if path is None:
            raise HTTPException(404, f"no run with uid {run_uid} (deleted, or not projected yet)")
        e, p, rid = path.split("/", 2)
        return RedirectResponse(f"/{quote_path(e, p)}/runs/{quote_path(rid)}", status_code=307)

    @app.post("/api/ui/projects/{entity}/{project}/series", dependencies=dependencies,
              summary="many runs' metric series, downsampled to a min/max envelope per x bucket")
    async def project_series(core: Core, entity: str, project: str, body: SeriesRequest) -> JSONResponse:
        try:
            result = await core.read(_series, entity, project, body)
        except SeriesError as e:
            raise HTTPException(400, str(e)) from e
        return JSONResponse(json_value(result))

    @app.get("/api/ui/runs/{entity}/{project}/{run_id}/lineage", dependencies=dependencies,
             summary="a run's fork/rewind origin and the runs that came from it")
    async def lineage(core: Core, entity: str, project: str, run_id: str) -> JSONResponse:
        found = await core.read(_lineage, entity, project, run_id)
        if found is None:
            raise HTTPException(404, f"no run {entity}/{project}/{run_id}")
        return JSONResponse(json_value(found))

    @app.post("/api/ui/sql/download", dependencies=dependencies, summary="one sandboxed query as CSV or Parquet")
    async def download(request: Request, core: Core, body: DownloadRequest) -> Response:
        if body.format not in ("csv", "parquet"):
            raise HTTPException(400, f"format must be csv or parquet, not {body.format!r}")
        peer = request.client.host if request.client is not None else "http"
        result, _ = await core.service.run_sql(body.sql, max_rows=body.max_rows, timeout=body.timeout,
                                               client=f"http:{peer}")
        data, media = _download(result.table, body.format)
        return Response(data, media_type=media, headers={
            "Content-Disposition": f'attachment; filename="query.{body.format}"',
            "X-Runstream-Truncated": str(result.truncated).lower()})

    # the catch-all project and run pages last, so /api, /static, /sql, /docs win
    app.add_api_route("/{entity}/{project}", page("workspace"), methods=["GET"], include_in_schema=False)
    app.add_api_route("/{entity}/{project}/runs/{run_id}", page("run"), methods=["GET"], include_in_schema=False)

    @app.get("/{entity}/{project}/{run_id}", include_in_schema=False)
    async def run_short(entity: str, project: str, run_id: str) -> RedirectResponse:
        """The guide's run URL ``/<entity>/<project>/<run-id>``: a redirect to the run page. It reads
        nothing (the run page asks the API, with its key), so it needs no key itself."""
        if entity in ("api", "static", "runs"):
            raise HTTPException(404, f"no such page or API route: /{entity}/{project}/{run_id}")
        return RedirectResponse(f"/{quote_path(entity, project)}/runs/{quote_path(run_id)}", status_code=307)
