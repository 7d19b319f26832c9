"""Folding ``system`` and ``output`` events into the ``system_metrics`` and ``console`` tables.

Pure handlers of the fold (:mod:`.fold` registers them): they queue side-table rows on the
batch's :class:`~.fold.Changes` and touch no run state, so a replay yields the same rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runstream.broker.events import Event

    from .fold import Context
    from .state import RunState

CONSOLE_KEY = ("run_uid", "writer", "line")
"""A console line is identified by its writer and number: a later state of it (a progress bar
redrawn with ``\\r``, the rest of a line first sent unfinished) replaces the earlier one."""


def fold_system(rs: RunState, ev: Event, ctx: Context) -> None:
    """One ``system_metrics`` row per (sample, key)."""
    b: Any = ev.body
    start = rs.created_at
    rows = [
        {"run_uid": rs.run_uid, "writer": ev.writer, "label": b.label, "timestamp": s.ts,
         "runtime": None if start is None else s.ts - start, "key": key, "value": float(value)}
        for s in b.samples for key, value in s.values.items()
    ]
    if rows:
        ctx.changes.append("system_metrics", *rows)


def fold_output(rs: RunState, ev: Event, ctx: Context) -> None:
    """One ``console`` row per line; a line's later state replaces the earlier."""
    b: Any = ev.body
    rows = [
        {"run_uid": rs.run_uid, "writer": ev.writer, "label": b.label, "stream": ln.stream, "line": ln.line,
         "timestamp": ln.ts, "text": ln.text}
        for ln in b.lines
    ]
    if rows:
        ctx.changes.upsert("console", CONSOLE_KEY, *rows)
