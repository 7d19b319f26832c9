"""Console lines: the pure line assembler (carriage returns, bounded redraws, long lines) and the
tee on stream objects, with an injected clock and no flusher thread."""

from __future__ import annotations

import io
from typing import Any

from runstream.capture import ConsoleCapture, batches
from runstream.output import LineAssembler, LineUpdate, sanitize


def _texts(updates: list[LineUpdate]) -> list[tuple[int, str, str, bool]]:
    return [(u.line, u.stream, u.text, u.final) for u in updates]


def test_lines_are_numbered_across_streams_and_handed_out_at_once() -> None:
    a = LineAssembler()
    assert _texts(a.feed("stdout", "one\ntw", 1.0)) == [(0, "stdout", "one", True), (1, "stdout", "tw", False)]
    assert _texts(a.feed("stderr", "warn\n", 1.1)) == [(2, "stderr", "warn", True)]
    assert _texts(a.feed("stdout", "o\n\nthree\n", 1.2)) == [
        (1, "stdout", "two", True), (3, "stdout", "", True), (4, "stdout", "three", True)]
    assert a.feed("stdout", "", 2.0) == []
    first = a.feed("stdout", "x", 2.0)  # print("x"): the text, then the newline, in two writes
    assert first[0].ts == 2.0 and _texts(first) == [(5, "stdout", "x", False)]
    assert a.feed("stdout", "\n", 2.0) == []  # already handed out in its final state


def test_carriage_returns_overwrite_like_a_terminal() -> None:
    a = LineAssembler()
    assert _texts(a.feed("stdout", "abcdef\rXY\n", 0.0)) == [(0, "stdout", "XYcdef", True)]
    assert _texts(a.feed("stdout", "10%\r20%\r100%\r\n", 0.0)) == [(1, "stdout", "100%", True)]
    assert _texts(a.feed("stdout", "done\r\n", 0.0)) == [(2, "stdout", "done", True)]


def test_a_progress_bar_is_handed_out_at_most_once_per_redraw_interval() -> None:
    a = LineAssembler(redraw=1.0)
    out: list[LineUpdate] = []
    for i in range(31):  # 3 s of a bar redrawn every 0.1 s
        t = i / 10
        out += a.feed("stderr", f"\r{i:3d}/30 |{'#' * i}", t)
        out += a.due(t)
    assert [(u.text.split("/")[0].strip(), u.final) for u in out] == [("0", False), ("10", False), ("20", False),
                                                                       ("30", False)]
    assert a.feed("stderr", "\n", 3.05) == []  # its last state was handed out already
    out = []
    for i in range(5):
        out += a.feed("stdout", f"\r{i}", 10 + i / 10)
    assert _texts(out) == [(1, "stdout", "0", False)]
    assert _texts(a.feed("stdout", "\n", 10.5)) == [(1, "stdout", "4", True)]  # the final state, at once
    assert a.due(20.0) == [] and a.close(20.0) == []


def test_close_hands_out_unfinished_lines_once() -> None:
    a = LineAssembler()
    assert _texts(a.feed("stdout", "no newline", 0.0)) == [(0, "stdout", "no newline", False)]
    assert a.feed("stdout", " yet", 0.2) == [] and a.due(0.5) == []
    a.feed("stderr", "\r", 0.2)  # an empty line never written to: nothing to keep
    assert _texts(a.close(0.3)) == [(0, "stdout", "no newline yet", True)]


def test_very_long_lines_go_on_over_the_next_line_numbers() -> None:
    a = LineAssembler(max_line=4)
    out = a.feed("stdout", "abcdefghij\n", 0.0)
    assert _texts(out) == [(0, "stdout", "abcd", True), (1, "stdout", "efgh", True), (2, "stdout", "ij", True)]
    assert "".join(u.text for u in out) == "abcdefghij"


def test_sanitize_marks_bytes_that_are_not_utf8() -> None:
    assert sanitize("plain ✓ \x00 \x1b[31mred") == "plain ✓ \x00 \x1b[31mred"
    assert sanitize(b"bad \xff\xfe end".decode("utf-8", "surrogateescape")) == "bad \\xff\\xfe end"
    assert sanitize("lone \ud800") == "lone \\ud800"


class Terminal(io.StringIO):
    """A stream object like sys.stdout, with a binary buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.buffer = io.BytesIO()


def _capture(clock: list[float]) -> tuple[ConsoleCapture, Terminal, Terminal, list[LineUpdate]]:
    out, err = Terminal(), Terminal()
    got: list[LineUpdate] = []
    cap = ConsoleCapture(got.extend, {"stdout": out, "stderr": err}, clock=lambda: clock[0], tick=0)
    return cap.start(), out, err, got


def test_the_tee_records_and_still_shows_everything() -> None:
    clock = [100.0]
    cap, out, err, got = _capture(clock)
    print("hello", file=out)  # type: ignore[arg-type]
    print("oops", file=err)  # type: ignore[arg-type]
    out.write("\r50%")
    out.write("\r75%")
    clock[0] = 101.0
    cap.flush_due()  # the redraw interval is up: the bar's newer state
    out.write("\r100%\n")
    out.buffer.write(b"raw \xff bytes\n")
    cap.stop()
    assert out.getvalue() == "hello\n\r50%\r75%\r100%\n" and err.getvalue() == "oops\n"
    assert out.buffer.getvalue() == b"raw \xff bytes\n"
    assert [(u.line, u.stream, u.ts, u.text, u.final) for u in got] == [
        (0, "stdout", 100.0, "hello", False), (1, "stderr", 100.0, "oops", False),
        (2, "stdout", 100.0, "50%", False), (2, "stdout", 100.0, "75%", False), (2, "stdout", 100.0, "100%", True),
        (3, "stdout", 101.0, "raw \\xff bytes", True)]
    assert "write" not in vars(out) and "write" not in vars(out.buffer)  # put back
    print("after", file=out)  # type: ignore[arg-type]
    assert len(got) == 6


def test_a_failing_sink_turns_recording_off_but_never_printing() -> None:
    def sink(_updates: list[LineUpdate]) -> None:
        raise OSError("disk full")

    out, err = Terminal(), Terminal()
    cap = ConsoleCapture(sink, {"stdout": out, "stderr": err}, clock=lambda: 0.0, tick=0).start()
    print("still shown", file=out)  # type: ignore[arg-type]
    print("me too", file=out)  # type: ignore[arg-type]
    cap.stop()
    assert out.getvalue() == "still shown\nme too\n"
    assert "console capture failed" in err.getvalue() and "disk full" in err.getvalue()


def test_one_object_for_both_streams_is_recorded_once() -> None:
    both = Terminal()
    got: list[LineUpdate] = []
    cap = ConsoleCapture(got.extend, {"stdout": both, "stderr": both}, clock=lambda: 0.0, tick=0).start()
    print("once", file=both)  # type: ignore[arg-type]
    cap.stop()
    assert [u.text for u in got] == ["once"]


def test_batches_bound_the_text_per_event() -> None:
    ups = [LineUpdate(i, "stdout", 0.0, "x" * 1000, True) for i in range(10)]
    groups: list[Any] = batches(ups, limit=3200)  # ~1032 bytes each with the per-line overhead
    assert [len(g) for g in groups] == [3, 3, 3, 1]
    assert [u for g in groups for u in g] == ups
