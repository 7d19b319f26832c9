"""How a ``meta`` event folds into a run's state (pure), for ``projector/fold.py`` to call.

``meta`` events (``Api().run(path).update()``) edit a run's name, notes, tags, group or job type;
only the fields present in the body change. Their writer is the editor (``api:<id>``), not the
run: they are no sign of life, so the fold must not treat them as a heartbeat (a meta edit of a
crashed run must leave it crashed).

Wiring (in ``projector/fold.py``, owned by the projector): add ``"meta": apply_meta`` to
``_HANDLERS`` and skip ``_heartbeat`` for ``ev.type == "meta"``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["META_WRITER_PREFIX", "apply_meta"]

META_WRITER_PREFIX = "api:"


def apply_meta(rs: Any, ev: Any) -> None:
    """Apply the fields a ``meta`` event sets to ``rs`` (a ``RunState``)."""
    body = ev.body
    fields = body.model_fields_set if hasattr(body, "model_fields_set") else set(vars(body))
    for name in ("name", "notes", "group", "job_type"):
        if name in fields:
            setattr(rs, name, getattr(body, name))
    if "tags" in fields:
        rs.tags = list(body.tags or [])
