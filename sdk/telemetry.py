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
        log = open_output_log(run)
        if log is not None:
            run._closers.append(log.close)  # closers run in reverse: after the tee's last lines
        capture = new_console(run, output_log=log).start(flusher=False)
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


OUTPUT_LOG = "output.log"
"""In the run's folder: the console as the terminal showed it, one final line state per line."""


class OutputLog:
    """The run folder's ``output.log``: each console line once, in its final state, as the terminal
    showed it. A line is written when it is finished: a newer line of its stream began, or the tee
    handed it out as final, or the run ends (:meth:`close`)."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.open: dict[str, tuple[int, str]] = {}
        """Stream → (line number, latest text) of its unfinished line."""

    def feed(self, updates: list[LineUpdate]) -> None:
        if self.fh.closed:
            return
        for u in updates:
            cur = self.open.get(u.stream)
            if cur is not None and cur[0] != u.line:
                self.fh.write(cur[1] + "\n")
            if u.final:
                self.fh.write(u.text + "\n")
                self.open.pop(u.stream, None)
            else:
                self.open[u.stream] = (u.line, u.text)

    def close(self) -> None:
        if self.fh.closed:
            return
        for _, text in sorted(self.open.values()):
            self.fh.write(text + "\n")
        self.open.clear()
        self.fh.close()


def open_output_log(run: Any) -> OutputLog | None:
    """The run folder's ``output.log``, opened for appending (None, with a message, if it cannot be)."""
    try:
        return OutputLog(open(run.dir / OUTPUT_LOG, "a", encoding="utf-8", errors="backslashreplace"))
    except OSError as e:
        sys.stderr.write(f"runstream: run {run.path}: cannot write {run.dir / OUTPUT_LOG}: {e}\n")
        return None


def new_console(run: Any, streams: dict[str, Any] | None = None, output_log: OutputLog | None = None,
                **capture: Any) -> ConsoleCapture:
    """A console tee (not started) spooling each line state into ``run`` (and each finished line
    into ``output_log``, when given)."""

    def sink(updates: list[LineUpdate]) -> None:
        if run._finished:  # finished, or this is a forked child's copy of the run
            return
        if output_log is not None:
            output_log.feed(updates)
        run._append_lines([(u.line, u.stream, u.ts, u.text) for u in updates])

    return ConsoleCapture(sink, streams, **capture)
