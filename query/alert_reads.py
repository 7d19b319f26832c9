"""The alerts as the read side serves them: each alert with its per-sink delivery status.

A blocking function of a DuckDB cursor, run through :class:`~.reads.Reader` like :mod:`.reads`.
"""

from __future__ import annotations

from typing import Any

import duckdb

__all__ = ["alert_status", "list_alerts"]

MAX_ALERTS = 10_000


def list_alerts(cur: duckdb.DuckDBPyConnection, entity: str | None = None, project: str | None = None,
                run_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """Alerts, newest first, optionally of one entity, project or run, each with ``path`` and
    ``deliveries``: ``[{sink, status, attempts, error, attempted_at, delivered_at}]``."""
    where: list[str] = ["TRUE"]
    params: list[Any] = []
    for column, value in (("entity", entity), ("project", project), ("run_id", run_id)):
        if value is not None:
            where.append(f"r.{column} = ?")
            params.append(value)
    params.append(max(0, min(int(limit), MAX_ALERTS)))
    rows = cur.execute(f"""
        SELECT a.run_uid, r.path, a.alert_id, a.title, a.text, a.level, a.timestamp, a.wait_duration,
               a.throttled, a.writer,
               coalesce(list(struct_pack(sink := d.sink, status := d.status, attempts := d.attempts,
                                         error := d.error, attempted_at := d.attempted_at,
                                         delivered_at := d.delivered_at) ORDER BY d.sink)
                        FILTER (WHERE d.sink IS NOT NULL), []) AS deliveries
        FROM alerts a LEFT JOIN runs r ON r.run_uid = a.run_uid
        LEFT JOIN alert_deliveries d ON d.run_uid = a.run_uid AND d.alert_id = a.alert_id
        WHERE {' AND '.join(where)}
        GROUP BY ALL ORDER BY a.timestamp DESC, a.alert_id LIMIT ?""", params)
    names = [c[0] for c in rows.description]
    return [dict(zip(names, r, strict=True)) for r in rows.fetchall()]


def alert_status(alert: dict[str, Any]) -> str:
    """One line for an alert's delivery: ``throttled``, ``not sent (no sink)`` or each sink's
    status, e.g. ``webhook delivered; email failed (2 attempts): ...`` (pure)."""
    if alert.get("throttled"):
        return "throttled"
    parts = []
    for d in alert.get("deliveries") or []:
        text = f"{d['sink']} {d['status']}"
        if d["status"] != "delivered":
            n = int(d.get("attempts") or 0)
            text += f" ({n} attempt{'s' if n != 1 else ''})"
            if d.get("error"):
                text += f": {d['error']}"
        parts.append(text)
    return "; ".join(parts) or "pending (or no sink configured)"
