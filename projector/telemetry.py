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
    """One ``console`` row per line; a line's later state replaces the earlier.

    Lines are numbered upwards per writer, so a line above the highest one stored
    (``rs.console_top``) is new and is appended; a later state of it in the same batch replaces
    the queued row. Only a line at or below the top that is not queued in this batch (one stored
    unfinished and completed in a later event, or written on the other stream while this one was
    open) goes through the upsert, whose DELETE scans the table: the rare path.
    """
    b: Any = ev.body
    changes = ctx.changes
    writer = ev.writer
    known = rs.console_top
    top = -1 if known is None else known.get(writer, -1)
    for ln in b.lines:
        key = (rs.run_uid, writer, ln.line)
        row = {"run_uid": rs.run_uid, "writer": writer, "label": b.label, "stream": ln.stream, "line": ln.line,
               "timestamp": ln.ts, "text": ln.text}
        if known is not None and (ln.line > top or changes.queued("console", key)):
            changes.append_once("console", key, row)
            top = max(top, ln.line)
        else:
            changes.upsert("console", CONSOLE_KEY, row)
    if known is not None and top >= 0:
        known[writer] = top
