"""Fold handlers of ``file`` and ``artifact`` events: the Files list and artifact lineage tables.

Pure like the rest of the fold: each handler reads its event and queues side-table rows
(:meth:`~.fold.Changes.upsert` / :meth:`~.fold.Changes.append`); see :mod:`.schema` for the
tables. Version numbers are not decided here: the logging run took them from the artifact
registry (:mod:`runstream.broker.artifact_kv`) and the event carries them, so a replay, with any
batch boundaries, writes the same rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .values import to_json

if TYPE_CHECKING:
    from runstream.broker.events import Event

    from .fold import Context
    from .state import RunState

FILE_KEYS = ("run_uid", "name")
ARTIFACT_KEYS = ("entity", "project", "name", "version")
ENTRY_KEYS = (*ARTIFACT_KEYS, "path")
USAGE_KEYS = ("run_uid", "entity", "project", "name", "version", "role")


def fold_file(rs: RunState, ev: Event, ctx: Context) -> None:
    """``file`` → the run's ``files`` row of that name (a later upload of the name replaces it)."""
    b: Any = ev.body
    ctx.changes.upsert("files", FILE_KEYS, {
        "run_uid": rs.run_uid, "name": b.name, "size": b.size, "sha256": b.sha256, "mtime": b.mtime,
        "policy": b.policy, "updated_at": ev.ts})


def fold_artifact(rs: RunState, ev: Event, ctx: Context) -> None:
    """``artifact`` → the version's row, its entries, alias moves and the run's usage edge."""
    b: Any = ev.body
    art = {"entity": b.entity, "project": b.project, "name": b.name, "version": b.version}
    ctx.changes.upsert("artifact_usage", USAGE_KEYS, {**art, "run_uid": rs.run_uid, "role": b.role,
                                                      "digest": b.digest, "used_at": ev.ts})
    if b.role != "output":
        return
    if b.part == 0:
        ctx.changes.upsert("artifacts", ARTIFACT_KEYS, {
            **art, "type": b.type, "digest": b.digest, "description": b.description,
            "metadata": to_json(b.metadata), "size": b.size, "file_count": b.file_count,
            "created_by": b.created_by or rs.run_uid, "created_at": b.created_at or ev.ts})
        if b.aliases:
            ctx.changes.append("artifact_alias_moves", *(
                {**art, "alias": alias, "revision": rev, "run_uid": rs.run_uid}
                for alias, rev in sorted(b.aliases.items())))
    if b.entries:
        ctx.changes.upsert("artifact_files", ENTRY_KEYS, *(
            {**art, "path": path, "sha256": sha, "size": size, "ref": ref}
            for path, sha, size, ref in b.entries))
