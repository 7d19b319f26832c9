"""The fold of a run's lifecycle edits: ``move`` (a new path) and ``delete`` (a tombstone). Pure.

``move`` changes the run's entity/project/run_id; its events, subjects and uid stay. ``delete``
resets the run's fold state to a tombstone (nothing of the run kept but its uid, entity and the
deletion time), takes the run's rows out of this batch's changes and asks the store to purge what
earlier batches stored (:meth:`~.store.Store.purge_run`). Every later event of a deleted run is
dropped and counted (``Changes.dropped``), not dead-lettered, and listed in ``Changes.late`` so the
server purges it from the stream too. A replay of a purged stream (the tombstone, perhaps late
events) therefore produces the same public tables as the incremental projection: no trace of the
run.
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any

from runstream.broker.names import parse_subject

from .state import ProjectionState, RunState

if TYPE_CHECKING:
    from runstream.broker.events import Event

    from .fold import Changes, Context, Record

__all__ = ["delete_run", "drop_if_deleted", "drop_late", "move_run"]


def move_run(rs: RunState, ev: Event, ctx: Context) -> None:
    """The run's path is now ``body.entity/project/run_id`` (claimed by the server beforehand)."""
    b: Any = ev.body
    rs.entity, rs.project, rs.run_id = b.entity, b.project, b.run_id


def delete_run(rs: RunState, ev: Event, ctx: Context) -> None:
    """Tombstone: forget everything of the run and purge it from this batch and the store."""
    uid = rs.run_uid
    blank = RunState(run_uid=uid, entity=rs.entity, deleted_at=ev.ts)
    for f in fields(RunState):
        setattr(rs, f.name, getattr(blank, f.name))  # in place: the fold holds this object
    ch = ctx.changes
    ch.history = [c for c in ch.history if c.run_uid != uid]
    ch.applied = [a for a in ch.applied if a.run_uid != uid]
    ch.dead_letters = [d for d in ch.dead_letters if _subject_uid(d.subject) != uid]
    for table, rows in ch.appends.items():
        ch.appends[table] = [r for r in rows if r.get("run_uid") != uid]
    for table, (keys, rows) in ch.upserts.items():
        ch.upserts[table] = (keys, [r for r in rows if r.get("run_uid") != uid])
    if uid not in ch.purged:
        ch.purged.append(uid)


def drop_late(run_uid: str, rec: Record, changes: Changes) -> None:
    """An event of a deleted run after its tombstone: count it, and list it for the stream purge."""
    changes.dropped += 1
    changes.late.append((run_uid, rec.stream_seq))


def drop_if_deleted(state: ProjectionState, rec: Record, changes: Changes) -> bool:
    """A record that could not be folded but names a deleted run: drop it too (True)."""
    uid = _subject_uid(rec.subject)
    rs = state.runs.get(uid) if uid is not None else None
    if rs is None or rs.deleted_at is None:
        return False
    drop_late(rs.run_uid, rec, changes)
    return True


def _subject_uid(subject: str) -> str | None:
    try:
        return parse_subject(subject)[1]
    except ValueError:
        return None
