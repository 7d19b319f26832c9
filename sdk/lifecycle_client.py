"""The client side of moving and deleting runs: the HTTP calls behind ``Api.move_runs`` /
``Api.delete_runs`` (and ``Runs.move``/``delete``), and the CLI's plan, confirmation and progress.

Bulk calls go to the server in chunks of :data:`CHUNK` runs, forks before their parents (a run's
forks must be gone, or go in the same call, before it may be deleted).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["CHUNK", "bulk", "forks_first"]

CHUNK = 50
"""Runs per request when a CLI call names many (one progress step per chunk)."""


def bulk(api: Any, verb: str, path: str | None, run_ids: Sequence[str] | None, filters: dict[str, Any] | None,
         extra: dict[str, Any]) -> list[dict[str, Any]]:
    """POST ``/api/projects/{entity}/{project}/runs/{verb}`` naming runs by id or by filter."""
    from .query.http_client import quote_path

    if run_ids is None and filters is None:
        raise ValueError(f"{verb}_runs(): name the runs with run_ids=[...] or filters={{...}} ({{}} for all)")
    entity, project = api._project_path(path)
    body = {**extra, "run_ids": None if run_ids is None else list(run_ids), "filters": filters}
    reply = api.client.json("POST", f"/api/projects/{quote_path(entity, project)}/runs/{verb}", body=body)
    return list(reply["moved" if verb == "move" else "deleted"])


def forks_first(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` (runs) ordered so a fork comes before the run it was forked from (when both are in)."""
    by_uid = {r["run_uid"]: r for r in rows}

    def depth(r: dict[str, Any]) -> int:
        d, seen = 0, {r["run_uid"]}
        while r.get("origin_kind") == "fork" and r.get("origin_run_uid") in by_uid:
            r = by_uid[r["origin_run_uid"]]
            if r["run_uid"] in seen:
                break
            seen.add(r["run_uid"])
            d += 1
        return d

    return sorted(rows, key=lambda r: -depth(r))


def in_chunks(api: Any, verb: str, rows: Sequence[dict[str, Any]], extra: dict[str, Any],
              progress: Callable[[int], None]) -> list[dict[str, Any]]:
    """Run ``verb`` over ``rows`` (grouped by project, :data:`CHUNK` at a time), calling
    ``progress(n)`` after each chunk; return every result."""
    out: list[dict[str, Any]] = []
    order = forks_first(rows) if verb == "delete" else list(rows)
    i = 0
    while i < len(order):
        head = order[i]
        chunk = [head]
        for r in order[i + 1: i + CHUNK]:
            if (r["entity"], r["project"]) != (head["entity"], head["project"]):
                break
            chunk.append(r)
        out += bulk(api, verb, f"{head['entity']}/{head['project']}", [r["run_id"] for r in chunk], None, extra)
        progress(len(chunk))
        i += len(chunk)
    return out
