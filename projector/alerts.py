"""Folding alerts, their delivery outcomes and stop requests into side tables (pure).

``alert`` events (from the run's writers) become ``alerts`` rows; ``alert_delivery`` events (from
the server's :mod:`.alerter`) become ``alert_deliveries`` rows, one per (alert, sink), holding the
latest attempt; ``stop_requested`` events become ``stop_requests`` rows. Every row is a function
of its event alone, so a replay writes the same rows, and sends nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runstream.broker.events import Event

    from .fold import Context
    from .state import RunState

__all__ = ["fold_alert", "fold_alert_delivery", "fold_stop_requested", "delivery_status"]


def fold_alert(rs: RunState, ev: Event, ctx: Context) -> None:
    b: Any = ev.body
    ctx.changes.upsert("alerts", ("run_uid", "alert_id"), {
        "run_uid": rs.run_uid, "alert_id": b.id, "title": b.title, "text": b.text, "level": b.level,
        "timestamp": ev.ts, "wait_duration": b.wait_duration, "throttled": b.throttled, "writer": ev.writer,
    })


def delivery_status(ok: bool, final: bool) -> str:
    """``delivered``; ``failed`` after the last attempt; else ``retrying``."""
    return "delivered" if ok else "failed" if final else "retrying"


def fold_alert_delivery(rs: RunState, ev: Event, ctx: Context) -> None:
    b: Any = ev.body
    ctx.changes.upsert("alert_deliveries", ("run_uid", "alert_id", "sink"), {
        "run_uid": rs.run_uid, "alert_id": b.alert_id, "sink": b.sink, "status": delivery_status(b.ok, b.final),
        "attempts": b.attempt, "error": b.error, "attempted_at": ev.ts, "delivered_at": ev.ts if b.ok else None,
    })


def fold_stop_requested(rs: RunState, ev: Event, ctx: Context) -> None:
    b: Any = ev.body
    ctx.changes.append("stop_requests", {
        "run_uid": rs.run_uid, "requested_at": ev.ts, "requested_by": b.requested_by,
        "writers": list(b.writers), "request_writer": ev.writer,
    })
