"""The console tee: stdout and stderr of the training process, recorded as console lines.

``write`` of ``sys.stdout`` and ``sys.stderr`` (and of their binary ``buffer``) is wrapped on the
stream objects themselves, so everything holding a reference to them (a ``logging`` handler made
before ``init()``, tqdm) is recorded too, and ``sys.stdout is sys.__stdout__`` stays true. Each
write is recorded first and then passed on unchanged: the user sees their output as before.

What a ``write`` hands to the tee is in the run's spool before it reaches the terminal, like a
``log()`` row, so a SIGKILL loses none of it; the one exception is bounded on purpose: a line
redrawn with ``\\r`` (a progress bar) is spooled at most every
:data:`~runstream.output.REDRAW` seconds (a small thread spools its latest state), so a kill
loses at most that much of its redraws. Output written to the file
descriptors directly (C extensions, child processes) is not seen.

Recording never breaks printing: if it fails, it is turned off with one message and the stream
keeps working.
"""

from __future__ import annotations

import codecs
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .output import LineAssembler, LineUpdate, sanitize

Sink = Callable[[list[LineUpdate]], None]
TICK = 0.1


class ConsoleCapture:
    """Tee ``streams`` (name → stream object) into ``sink`` until :meth:`stop`.

    Args:
        sink: receives line updates, in order, under the capture's lock.
        clock: the time of a write (epoch seconds).
        tick: how often the flusher thread looks for unfinished lines to hand out (0: no thread;
            call :meth:`flush_due` yourself).
    """

    def __init__(self, sink: Sink, streams: dict[str, Any] | None = None, *, clock: Callable[[], float] = time.time,
                 tick: float = TICK, assembler: LineAssembler | None = None) -> None:
        self.sink = sink
        self.clock = clock
        self.assembler = assembler or LineAssembler()
        self.streams = streams if streams is not None else {"stdout": sys.stdout, "stderr": sys.stderr}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._patched: list[tuple[Any, Any, Any]] = []
        """(stream, our write, what its instance ``write`` was before: None when it had none)."""
        self._decoders: dict[str, Any] = {}
        self._stop = threading.Event()
        self._tick = tick
        self._thread: threading.Thread | None = None
        self.broken: str | None = None
        self.active = False

    # -- starting and stopping -------------------------------------------------------------------

    def start(self, flusher: bool = True) -> ConsoleCapture:
        """Put the tee in place; ``flusher=False`` leaves the thread that hands out unfinished
        lines to :meth:`start_flusher` (called later, from another thread)."""
        for name, stream in self.streams.items():
            self._patch(stream, name, binary=False)
            buffer = getattr(stream, "buffer", None)
            if buffer is not None:
                self._patch(buffer, name, binary=True)
        self.active = True
        if flusher:
            self.start_flusher()
        return self

    def start_flusher(self) -> None:
        """Start the flusher thread, unless there is none to run (``tick`` 0) or it was stopped."""
        with self._lock:
            if self._tick <= 0 or self._thread is not None or not self.active:
                return
            thread = threading.Thread(target=self._flusher, name="runstream-console", daemon=True)
            thread.start()
            self._thread = thread  # only once started: stop() joins what it finds here

    def stop(self) -> None:
        """Hand out every unfinished line as final and put the streams' ``write`` back."""
        if not self.active:
            return
        self.active = False
        self._stop.set()
        for obj, ours, before in reversed(self._patched):
            try:
                if vars(obj).get("write") is not ours:
                    continue  # wrapped again on top of us: left alone (ours now only passes through)
                if before is None:
                    del obj.write
                else:
                    obj.write = before
            except (AttributeError, TypeError):
                pass
        self._patched.clear()
        if self._thread is not None:
            self._thread.join(2.0)
        with self._lock:
            if self.broken is None:
                for name, decoder in self._decoders.items():
                    tail = decoder.decode(b"", final=True)
                    if tail:
                        self._record(name, tail)
                self._hand_out(self.assembler.close(self.clock()))

    def flush_due(self) -> None:
        """Hand out the unfinished lines that are due (the flusher thread calls this)."""
        with self._lock:
            if self.broken is None and self.active:
                self._hand_out(self.assembler.due(self.clock()))

    # -- the tee ---------------------------------------------------------------------------------

    def _patch(self, obj: Any, name: str, *, binary: bool) -> None:
        if any(obj is p[0] for p in self._patched):
            return  # stderr and stdout are one object: record it once
        original = obj.write
        try:
            before = vars(obj).get("write")  # someone else's wrapper, put back at stop
        except TypeError:
            before = None
        record = self._record_bytes if binary else self._record

        def write(data: Any) -> Any:
            local = self._local
            if getattr(local, "inside", False):  # the text layer writing to its buffer, or our own warnings
                return original(data)
            local.inside = True
            try:
                if self.active:
                    try:
                        with self._lock:
                            record(name, data)
                    except Exception as e:  # recording must never break the user's output
                        self._fail(e)
                return original(data)
            finally:
                local.inside = False

        try:
            obj.write = write
        except (AttributeError, TypeError):
            return  # a stream we cannot wrap: its output is not recorded
        self._patched.append((obj, write, before))

    def _record(self, name: str, data: Any) -> None:
        if self.broken is not None or not isinstance(data, str) or not data:
            return
        self._hand_out(self.assembler.feed(name, data, self.clock()))

    def _record_bytes(self, name: str, data: Any) -> None:
        if self.broken is not None:
            return
        try:
            raw = bytes(data)
        except TypeError:
            return
        decoder = self._decoders.get(name)
        if decoder is None:
            decoder = self._decoders[name] = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self._record(name, decoder.decode(raw))

    def _hand_out(self, updates: list[LineUpdate]) -> None:
        if updates:
            self.sink([u._replace(text=sanitize(u.text)) for u in updates])

    def _fail(self, e: BaseException) -> None:
        if self.broken is not None:
            return
        self.broken = f"{type(e).__name__}: {e}"
        err = self.streams.get("stderr")
        try:
            if err is not None:  # recording is off now, so this only passes through
                err.write(f"runstream: console capture failed and is turned off ({self.broken}); your output "
                          "is still shown, but no longer recorded\n")
        except Exception:
            pass

    def _flusher(self) -> None:
        while not self._stop.wait(self._tick):
            try:
                self.flush_due()
            except Exception as e:
                self._fail(e)
                return
