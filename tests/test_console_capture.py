"""Console lines: the pure line assembler (carriage returns, bounded redraws, long lines), the
tee on stream objects, with an injected clock and no flusher thread, and the lines' way through
the spool into batched ``output`` events (live and after a kill)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from runstream.broker.codec import decode_event
from runstream.capture import ConsoleCapture
from runstream.outbox import SEAL_LINES, SEAL_ROWS, Outbox, Outgoing
from runstream.output import LineAssembler, LineUpdate, sanitize
from runstream.run import Run
from runstream.settings import load_settings
from runstream.spool import Spool
from runstream.sync import seal_leftovers
from runstream.telemetry import start_console


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


# -- console lines in the spool: one cheap record per line state, one `output` event per seal ------


def _run(tmp_path: Path, label: str | None = None) -> Run:
    """A Run on its own spool with no worker: nothing seals but the size bounds and explicit calls."""
    meta = {"run_uid": "u" * 26, "writer": "w1", "entity": "e", "project": "p", "run_id": "r", "name": "n",
            "mode": "offline", "created": 0.0, "pid": 1}
    if label is not None:
        meta["label"] = label
    spool = Spool.create(tmp_path / "run" / "spool-w1.rsp", meta)
    return Run(settings=load_settings({}), entity="e", project="p", run_id="r", name="n", uid="u" * 26,
               writer="w1", run_dir=tmp_path / "run", spool=spool, config={}, tags=[], notes=None, group=None,
               job_type=None, mode="offline", start_time=0.0)


def _outputs(events: list[Outgoing]) -> list[dict[str, Any]]:
    return [decode_event(ev.payload)["b"] for ev in events if ev.type == "output"]


def test_thirty_thousand_prints_become_a_bounded_number_of_output_events(tmp_path: Path) -> None:
    run = _run(tmp_path)
    out, err = Terminal(), Terminal()
    stop = start_console(run, {"stdout": out, "stderr": err}, clock=lambda: 5.0, tick=0)
    n = 30_000
    for i in range(n):
        run.log({"i": i})
        print(f"step {i}", file=out)  # type: ignore[arg-type]
        if i % 1000 == 0:
            print(f"warn {i}", file=err)  # type: ignore[arg-type]
    stop()
    run._seal()
    events = Outbox(run._spool).poll()
    outputs = _outputs(events)
    assert len(outputs) <= (n + n // 1000) // SEAL_LINES + 1  # not one event per print
    assert [ev.seq for ev in events] == list(range(1, len(events) + 1))  # every event, in seq order
    lines = [ln for body in outputs for ln in body["lines"]]
    assert [ln["line"] for ln in lines] == list(range(n + n // 1000))  # each line once, in order
    assert [ln["text"] for ln in lines if ln["stream"] == "stdout"] == [f"step {i}" for i in range(n)]
    assert sum(1 for ev in events if ev.type == "log_rows") == n // SEAL_ROWS  # log batches stay full
    assert all("label" not in body for body in outputs)


def test_a_redrawn_line_collapses_to_its_last_state_within_one_event(tmp_path: Path) -> None:
    run = _run(tmp_path, label="rank0")
    clock = [0.0]
    out = Terminal()
    stop = start_console(run, {"stdout": out}, clock=lambda: clock[0], tick=0)
    flush_due = stop.__self__.flush_due
    for i in range(30):  # 3 s of a bar: spooled at 0, 1, 2 s
        clock[0] = i / 10
        out.write(f"\r{i:3d}/30")
        flush_due()
    run._seal()
    out.write("\r 30/30\n")
    print("after", file=out)  # type: ignore[arg-type]
    stop()
    run._seal()
    first, second = _outputs(Outbox(run._spool).poll())
    assert first == {"lines": [{"line": 0, "stream": "stdout", "ts": 0.0, "text": " 20/30"}], "label": "rank0"}
    assert [(ln["line"], ln["text"]) for ln in second["lines"]] == [(0, " 30/30"), (1, "after")]


def test_sync_seals_a_killed_writers_lines_once_and_as_the_live_writer_would(tmp_path: Path) -> None:
    run = _run(tmp_path)
    out = Terminal()
    stop = start_console(run, {"stdout": out}, clock=lambda: 1.0, tick=0)
    print("sealed", file=out)  # type: ignore[arg-type]
    run.log({"x": 1})
    run._seal()
    print("left", file=out)  # type: ignore[arg-type]
    run.log({"x": 2})
    out.write("over")  # the kill comes here: an unfinished line, spooled, never sealed
    path = run._spool.path
    run._spool.close()
    stop.__self__.active = False  # the "dead" process writes no more
    spool = Spool.open(path)
    try:
        assert seal_leftovers(spool) == 3  # one row, two lines
        assert seal_leftovers(spool) == 0  # a second sync has nothing left to seal
        events = Outbox(spool).poll()
    finally:
        spool.close()
    assert [(ev.seq, ev.type) for ev in events] == [(1, "log_rows"), (2, "output"), (3, "log_rows"), (4, "output")]
    texts = [ln["text"] for body in _outputs(events) for ln in body["lines"]]
    assert texts == ["sealed", "left", "over"]
