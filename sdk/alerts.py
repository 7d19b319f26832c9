"""``run.alert()``: checking an alert and throttling repeats of a title, in the training process.

The SDK only records an ``alert`` event; the server delivers it (webhook, email) and records each
delivery's outcome, so a slow or dead sink never touches training. As in W&B, a second alert with
the same title within ``wait_duration`` of the last one sent is not delivered: it is still
recorded, with ``throttled`` set, so the log says it happened.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from .errors import UsageError

__all__ = ["LEVELS", "AlertLevel", "AlertThrottle", "alert_body"]

LEVELS = ("INFO", "WARN", "ERROR")


class AlertLevel(StrEnum):
    """W&B's ``wandb.AlertLevel``: ``runstream.alert(..., level=runstream.AlertLevel.WARN)``."""

    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


TITLE_LIMIT = 1024
TEXT_LIMIT = 64 * 1024


def _level(level: Any) -> str:
    value = getattr(level, "value", level)  # an enum such as W&B's AlertLevel
    if isinstance(value, str) and value.upper() in LEVELS:
        return value.upper()
    raise UsageError(f"alert level must be one of {', '.join(LEVELS)}, not {level!r}")


def _seconds(wait_duration: Any) -> float:
    total = getattr(wait_duration, "total_seconds", None)  # datetime.timedelta
    value = total() if callable(total) else wait_duration
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise UsageError(f"alert wait_duration must be non-negative seconds or a timedelta, not {wait_duration!r}")
    return float(value)


class AlertThrottle:
    """Per-title memory of when an alert was last sent (``clock``: epoch seconds, injectable)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._sent: dict[str, float] = {}

    def throttled(self, title: str, wait_duration: float) -> bool:
        """True if an alert titled ``title`` was sent less than ``wait_duration`` s ago; else
        remember this one as sent."""
        now = self.clock()
        last = self._sent.get(title)
        if last is not None and now - last < wait_duration:
            return True
        self._sent[title] = now
        return False


def alert_body(title: Any, text: Any, level: Any, wait_duration: Any, throttle: AlertThrottle) -> dict[str, Any]:
    """The ``alert`` event body for these arguments.

    Raises:
        UsageError: an argument is not what ``run.alert()`` takes.
    """
    if not isinstance(title, str) or not title.strip():
        raise UsageError("alert title must be non-empty text")
    if not isinstance(text, str):
        raise UsageError(f"alert text must be a string, not {type(text).__name__}")
    if len(title) > TITLE_LIMIT or len(text) > TEXT_LIMIT:
        raise UsageError(f"alert title is limited to {TITLE_LIMIT} characters and text to {TEXT_LIMIT}")
    lvl, wait = _level(level), _seconds(wait_duration)
    return {"id": os.urandom(8).hex(), "title": title, "text": text, "level": lvl, "wait_duration": wait,
            "throttled": throttle.throttled(title, wait)}
