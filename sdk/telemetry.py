"""What a run records besides what the user logs: system metrics and console output.

:func:`attach` starts, per the run's settings, the system-metrics :class:`~runstream.system.Sampler`
(``system`` events) and the :class:`~runstream.capture.ConsoleCapture` tee (console lines,
sealed into ``output`` events by the worker), and registers them to be stopped first thing in
``Run.finish()``, so their last samples and lines are spooled before the ``finish`` event. Neither
cuts the user's log batches short.
"""

from __future__ import annotations

import sys
from typing import Any

from .capture import ConsoleCapture
from .output import LineUpdate

FLUSH_SECONDS = 1.0
"""Samples are batched into one ``system`` event per about this many seconds (one per sample at
the default 15 s interval; ten at 0.1 s)."""


def attach(run: Any) -> None:
    """Start the sampler and the console tee of ``run`` as its settings say.

    The tee is in place when this returns (what the script prints next is recorded); the threads
    behind them (the sampler, the console's flusher of unfinished lines) are started by the run's
    metadata thread (``run._deferred``), so ``init()`` does not wait for two more threads to start.
    Both are safe to stop before they started."""
    s = run.settings
    label = getattr(run, "label", None)
    extra = {} if label is None else {"label": label}
    if not s.disable_stats and s.stats_interval > 0:
        sampler = new_sampler(run, s.stats_interval, extra)
        run._closers.append(sampler.stop)
        run._deferred.append(sampler.start_unless_stopped)
    if s.console != "off":
        capture = new_console(run).start(flusher=False)
        run._closers.append(capture.stop)
        run._deferred.append(capture.start_flusher)


def start_sampler(run: Any, interval: float, extra: dict[str, Any], sources: Any = None) -> Any:
    """A started sampler spooling ``system`` events into ``run``; returns its ``stop``."""
    sampler = new_sampler(run, interval, extra, sources)
    sampler.start()
    return sampler.stop


def new_sampler(run: Any, interval: float, extra: dict[str, Any], sources: Any = None) -> Any:
    """A sampler (not started) spooling ``system`` events into ``run``."""
    from .system import Sampler, default_sources

    def emit(samples: list[dict[str, Any]]) -> None:
        if not run._finished:
            run._append_aside("system", {"samples": samples, **extra})

    def warn(message: str) -> None:
        sys.stderr.write(f"runstream: run {run.path}: {message}\n")

    return Sampler(sources or default_sources, emit, interval,
                   flush_every=max(1, round(FLUSH_SECONDS / interval)), on_error=warn)


def start_console(run: Any, streams: dict[str, Any] | None = None, **capture: Any) -> Any:
    """A started console tee spooling each line state into ``run`` as it is written (one cheap
    spool record; the worker seals them into one ``output`` event per flush); returns its ``stop``.
    The writer's label, if any, comes from the spool's meta (``runstream sync`` sees the same).

    Args:
        streams: name → stream object (default ``sys.stdout`` and ``sys.stderr``).
        capture: passed to :class:`~runstream.capture.ConsoleCapture` (``clock``, ``tick``).
    """

    return new_console(run, streams, **capture).start().stop


def new_console(run: Any, streams: dict[str, Any] | None = None, **capture: Any) -> ConsoleCapture:
    """A console tee (not started) spooling each line state into ``run``."""

    def sink(updates: list[LineUpdate]) -> None:
        if not run._finished:
            run._append_lines([(u.line, u.stream, u.ts, u.text) for u in updates])

    return ConsoleCapture(sink, streams, **capture)
