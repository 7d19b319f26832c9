"""HTTP routes of run files and artifacts (added to the app by :func:`~.http.create_app`)::

    GET /api/runs/{entity}/{project}/{run_id}/files                 the Files list
    GET /api/runs/{entity}/{project}/{run_id}/files/{name}          a file's content (attachment)
    GET /api/runs/{entity}/{project}/{run_id}/artifacts?role=output|input   logged / used versions
    GET /api/projects/{entity}/{project}/artifacts                  every version of the project
    GET /api/artifacts/{entity}/{project}/{name}/{ref}              a version (vN or alias): manifest,
                                                                    aliases, produced_by / used_by
    GET /api/artifacts/{entity}/{project}/{name}/{ref}/files/{path} an entry's content (attachment)

Content is streamed from the object store chunk by chunk, as ``application/octet-stream`` with
``Content-Disposition: attachment`` and ``X-Content-Type-Options: nosniff``, so a browser never
renders a run's file as a page of this origin.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from typing import Any, Literal

import anyio
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse, StreamingResponse

from .core import ServerCore
from .files_reads import artifact_version, project_artifacts, run_artifacts, run_file, run_files
from .http import Core, _fresh, _json, _run

__all__ = ["add_file_routes"]


def _disposition(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in base) or "file"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{urllib.parse.quote(base, safe='')}"


async def _content(core: ServerCore, sha256: str, name: str) -> StreamingResponse:
    from ..broker.miniclient import MiniNats
    from ..broker.objects import ObjectStore

    opts = core.config.nats_options()

    def open_object() -> tuple[Any, dict[str, Any] | None]:
        client = MiniNats(core.config.nats_url, name="runstream-server-files", **opts).connect()
        try:
            return client, ObjectStore(client).info(sha256)
        except BaseException:
            client.close()
            raise

    client, info = await anyio.to_thread.run_sync(open_object)
    if info is None:
        client.close()
        raise HTTPException(404, f"the content of {name!r} (object {sha256}) is not in the object store: "
                                 "it was purged, or its upload has not finished (runstream sync)")

    def chunks() -> Iterator[bytes]:
        try:
            yield from ObjectStore(client).chunks(sha256)
        finally:
            client.close()

    return StreamingResponse(chunks(), media_type="application/octet-stream", headers={
        "Content-Disposition": _disposition(name), "X-Content-Type-Options": "nosniff",
        "Content-Length": str(info.get("size", 0)), "Cache-Control": "private, max-age=0"})


async def _version(core: ServerCore, entity: str, project: str, name: str, ref: str) -> dict[str, Any]:
    found = await core.read(artifact_version, entity, project, name, ref)
    if found is None:
        raise HTTPException(404, f"no artifact {entity}/{project}/{name}:{ref}; list the project's artifacts at "
                                 f"/api/projects/{entity}/{project}/artifacts")
    return found  # type: ignore[no-any-return]


def add_file_routes(app: FastAPI, dependencies: list[Any]) -> None:
    """Register the routes above on ``app`` (with the app's auth dependencies)."""

    @app.get("/api/runs/{entity}/{project}/{run_id}/files", dependencies=dependencies,
             summary="a run's files: name, size, sha256, mtime, policy")
    async def files(core: Core, entity: str, project: str, run_id: str, fresh: bool = False) -> JSONResponse:
        headers = await _fresh(core, fresh)
        row = await _run(core, entity, project, run_id)
        return _json({"files": await core.read(run_files, row["run_uid"])}, headers=headers)

    @app.get("/api/runs/{entity}/{project}/{run_id}/files/{name:path}", dependencies=dependencies,
             summary="a run file's content, as an attachment", response_class=StreamingResponse)
    async def file_content(core: Core, entity: str, project: str, run_id: str, name: str,
                           fresh: bool = False) -> StreamingResponse:
        await _fresh(core, fresh)
        row = await _run(core, entity, project, run_id)
        found = await core.read(run_file, row["run_uid"], name)
        if found is None:
            raise HTTPException(404, f"run {entity}/{project}/{run_id} has no file {name!r}; list them at "
                                     f"/api/runs/{entity}/{project}/{run_id}/files")
        return await _content(core, found["sha256"], name)

    @app.get("/api/runs/{entity}/{project}/{run_id}/artifacts", dependencies=dependencies,
             summary="artifact versions a run logged (role=output) or used (role=input)")
    async def artifacts_of_run(core: Core, entity: str, project: str, run_id: str,
                               role: Literal["output", "input"] = "output", fresh: bool = False) -> JSONResponse:
        headers = await _fresh(core, fresh)
        row = await _run(core, entity, project, run_id)
        return _json({"artifacts": await core.read(run_artifacts, row["run_uid"], role)}, headers=headers)

    @app.get("/api/projects/{entity}/{project}/artifacts", dependencies=dependencies,
             summary="every artifact version of a project, with aliases")
    async def artifacts_of_project(core: Core, entity: str, project: str, fresh: bool = False) -> JSONResponse:
        headers = await _fresh(core, fresh)
        return _json({"artifacts": await core.read(project_artifacts, entity, project)}, headers=headers)

    @app.get("/api/artifacts/{entity}/{project}/{name}/{ref}", dependencies=dependencies,
             summary="one artifact version (vN or an alias): manifest, aliases, lineage")
    async def artifact(core: Core, entity: str, project: str, name: str, ref: str,
                       fresh: bool = False) -> JSONResponse:
        headers = await _fresh(core, fresh)
        return _json(await _version(core, entity, project, name, ref), headers=headers)

    @app.get("/api/artifacts/{entity}/{project}/{name}/{ref}/files/{path:path}", dependencies=dependencies,
             summary="an artifact entry's content, as an attachment", response_class=StreamingResponse)
    async def artifact_file(core: Core, entity: str, project: str, name: str, ref: str, path: str,
                            fresh: bool = False) -> StreamingResponse:
        await _fresh(core, fresh)
        found = await _version(core, entity, project, name, ref)
        entry = next((f for f in found["files"] if f["path"] == path), None)
        if entry is None or entry["sha256"] is None:
            what = "is a reference (not stored)" if entry is not None else "has no such entry"
            raise HTTPException(404, f"artifact {entity}/{project}/{name}:{ref} {what}: {path!r}")
        return await _content(core, entry["sha256"], path)
