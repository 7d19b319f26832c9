"""Console lines: what the training process writes to stdout and stderr, as terminal lines.

:class:`LineAssembler` is pure (text and the time in, line updates out): it numbers lines from 0
per writer across both streams, applies carriage returns the way a terminal does (``\\r`` moves
back to the start of the line and what follows overwrites it), and bounds how often a changing
unfinished line is handed out, so a progress bar redrawn ten times a second yields one update of
its line a second, not every frame.

What is written is handed out at once: a finished line (``\\n``), and an unfinished one unless
it was already handed out within :data:`REDRAW` seconds (its newer state is then handed out by
:meth:`LineAssembler.due` once that time is up). A line whose final state was already handed
out while unfinished (``print`` writes its text, then its newline) is not handed out again.

:mod:`runstream.capture` tees the real streams into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

MAX_LINE = 64 * 1024
"""Characters of one line at most: a longer line goes on over the next line numbers, so every
character is kept and no event grows past the broker's message size."""
REDRAW = 1.0
"""An unfinished line that keeps changing (a progress bar) is handed out at most this often."""


class LineUpdate(NamedTuple):
    """One line's state. The last update of a ``line`` number is its final state."""

    line: int
    stream: str
    ts: float
    """When the line began (epoch seconds)."""
    text: str
    final: bool


@dataclass
class _Open:
    line: int
    ts: float
    text: str = ""
    col: int = 0
    dirty: bool = False
    sent_at: float | None = None
    sent_text: str | None = None


def sanitize(text: str) -> str:
    """``text`` as valid UTF-8: bytes that were not UTF-8 (decoded with ``surrogateescape``) become
    ``\\xNN``, other lone surrogates ``\\udXXX``; everything else is kept as written."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


class LineAssembler:
    """Turns chunks of written text into :class:`LineUpdate` s (see the module docstring).

    Args:
        redraw: see :data:`REDRAW`.
        max_line: see :data:`MAX_LINE`.
    """

    def __init__(self, redraw: float = REDRAW, max_line: int = MAX_LINE) -> None:
        self.redraw = redraw
        self.max_line = max(1, max_line)
        self.next_line = 0
        self._open: dict[str, _Open] = {}

    def feed(self, stream: str, text: str, now: float) -> list[LineUpdate]:
        """Take ``text`` written to ``stream`` at ``now``; return the updates to hand out now."""
        out: list[LineUpdate] = []
        start = 0
        n = len(text)
        while start < n:
            nl = text.find("\n", start)
            end = n if nl < 0 else nl
            if end > start:
                self._write(stream, text[start:end], now, out)
            if nl < 0:
                break
            cur = self._open.pop(stream, None)
            if cur is None:
                cur = self._new(stream, now)
                del self._open[stream]
            if cur.sent_text is None or cur.text != cur.sent_text:
                out.append(LineUpdate(cur.line, stream, cur.ts, cur.text, True))
            start = nl + 1
        cur = self._open.get(stream)
        if cur is not None and cur.dirty and (cur.sent_at is None or now >= cur.sent_at + self.redraw):
            out.append(self._send(stream, cur, now))
        return out

    def due(self, now: float) -> list[LineUpdate]:
        """Unfinished lines whose newer state is due by ``now``."""
        return [self._send(stream, cur, now) for stream, cur in self._open.items()
                if cur.dirty and cur.sent_at is not None and now >= cur.sent_at + self.redraw]

    def close(self, now: float) -> list[LineUpdate]:
        """The final state of every unfinished line that changed since it was last handed out."""
        out = [LineUpdate(c.line, s, c.ts, c.text, True) for s, c in self._open.items()
               if c.dirty and (c.text or c.sent_at is not None)]
        self._open.clear()
        return out

    # -- internals -------------------------------------------------------------------------------

    def _new(self, stream: str, now: float) -> _Open:
        cur = self._open[stream] = _Open(self.next_line, now)
        self.next_line += 1
        return cur

    def _send(self, stream: str, cur: _Open, now: float) -> LineUpdate:
        cur.sent_at = now
        cur.sent_text = cur.text
        cur.dirty = False
        return LineUpdate(cur.line, stream, cur.ts, cur.text, False)

    def _write(self, stream: str, chunk: str, now: float, out: list[LineUpdate]) -> None:
        """Apply a chunk without newlines: ``\\r`` returns to column 0, text overwrites from there."""
        cur = self._open.get(stream) or self._new(stream, now)
        for i, part in enumerate(chunk.split("\r")):
            if i:
                cur.col = 0
            while part:
                room = self.max_line - cur.col
                if room <= 0:  # the line is full: it goes on as the next line
                    out.append(LineUpdate(cur.line, stream, cur.ts, cur.text, True))
                    cur = self._new(stream, now)
                    room = self.max_line
                piece, part = part[:room], part[room:]
                col = cur.col
                if col == len(cur.text):
                    cur.text += piece
                else:
                    cur.text = cur.text[:col] + piece + cur.text[col + len(piece):]
                cur.col = col + len(piece)
        cur.dirty = True
