"""A small progress bar for long CLI work (``runstream sync``, ``replay``, exports)::

    sync [########............] 42% 420/1000 · 1.2k/s · eta 3s

On a terminal the line is redrawn in place (``\\r``) at most ten times a second; on anything else
(a pipe, a CI log, a file) only the final line is printed, so logs are not flooded. The file, the
clock and the width are injected so tests compare exact strings.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

REDRAW_INTERVAL = 0.1
"""Seconds between two redraws on a terminal."""


class ProgressBar:
    """Progress of ``total`` units of work.

    Args:
        total: units to do; ``None`` or ``0`` when unknown (the bar then shows a count and a rate).
        label: printed before the bar.
        file: where to draw (default: ``sys.stderr``).
        clock: monotonic seconds (injected in tests).
        width: the terminal width; the bar takes what the text leaves, 10 to 30 characters
            (default: the terminal's width on a TTY, else 80).
        tty: redraw in place; default: ``file.isatty()``.
    """

    def __init__(self, total: int | None, label: str = "", file: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, width: int | None = None,
                 tty: bool | None = None) -> None:
        self.total = total if total and total > 0 else None
        self.label = label
        self.done = 0
        self._file = file if file is not None else sys.stderr
        self._clock = clock
        self._tty = _isatty(self._file) if tty is None else tty
        self._width = width if width else (_terminal_width() if self._tty else 80)
        self._start = clock()
        self._last_draw = -math.inf
        self._drawn_len = 0
        self._closed = False

    # -- counting ----------------------------------------------------------------------------

    def update(self, n: int = 1) -> None:
        """Add ``n`` units of finished work."""
        self.set(self.done + n)

    def set(self, done: int) -> None:
        """Set the finished work to ``done`` units."""
        self.done = done
        if not self._tty or self._closed:
            return
        now = self._clock()
        if now - self._last_draw >= REDRAW_INTERVAL or (self.total is not None and done >= self.total):
            self._draw(self.render(now))
            self._last_draw = now

    def close(self) -> None:
        """Print the final line (with a newline). Idempotent."""
        if self._closed:
            return
        self._closed = True
        line = self.render(self._clock(), final=True)
        if self._tty:
            self._draw(line)
            self._write("\n")
        else:
            self._write(line + "\n")

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- rendering ---------------------------------------------------------------------------

    def render(self, now: float, final: bool = False) -> str:
        """The text of the bar at time ``now`` (no ``\\r``, no newline)."""
        elapsed = max(0.0, now - self._start)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        head = f"{self.label} " if self.label else ""
        rate_text = f"{format_count(rate)}/s"
        if self.total is None:
            tail = f"done in {format_duration(elapsed)}" if final else f"{format_duration(elapsed)}"
            return f"{head}{self.done} · {rate_text} · {tail}"
        frac = min(1.0, max(0.0, self.done / self.total))
        bar_w = max(10, min(30, self._width - len(head) - 45))
        filled = int(bar_w * frac)
        bar = "[" + "#" * filled + "." * (bar_w - filled) + "]"
        if final:
            tail = f"done in {format_duration(elapsed)}"
        elif rate > 0:
            tail = f"eta {format_duration(max(0, self.total - self.done) / rate)}"
        else:
            tail = "eta ?"
        return f"{head}{bar} {int(frac * 100)}% {self.done}/{self.total} · {rate_text} · {tail}"

    def _draw(self, line: str) -> None:
        pad = " " * max(0, self._drawn_len - len(line))  # wipe what a longer previous line left
        self._write("\r" + line + pad)
        self._drawn_len = len(line)

    def _write(self, text: str) -> None:
        try:
            self._file.write(text)
            self._file.flush()
        except (OSError, ValueError):  # closed pipe or stream: progress is not worth a crash
            pass


def format_count(x: float) -> str:
    """``950``, ``9.5``, ``1.2k``, ``3.4M``, ``1.0G``: three significant figures or so."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.1f}{suffix}"
    return f"{x:.1f}" if x < 10 else f"{x:.0f}"


def format_duration(seconds: float) -> str:
    """``0.4s``, ``3s``, ``1m05s``, ``2h03m``."""
    if seconds < 1:
        return f"{seconds:.1f}s"
    s = int(seconds + 0.5)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _isatty(f: TextIO) -> bool:
    try:
        return bool(f.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((80, 24)).columns or 80
