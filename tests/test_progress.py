from __future__ import annotations

import io

import pytest

from runstream.progress import ProgressBar, format_count, format_duration


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_not_a_tty_prints_only_the_final_line() -> None:
    clock, out = Clock(), io.StringIO()
    with ProgressBar(1000, label="sync", file=out, clock=clock) as bar:
        for _ in range(10):
            clock.t += 0.5
            bar.update(100)
            assert out.getvalue() == ""
    assert out.getvalue() == "sync [##############################] 100% 1000/1000 · 200/s · done in 5s\n"


def test_render_mid_way() -> None:
    clock = Clock()
    bar = ProgressBar(1000, label="sync", file=io.StringIO(), clock=clock, width=80)
    clock.t += 0.35
    bar.set(420)
    assert bar.render(clock()) == "sync [############..................] 42% 420/1000 · 1.2k/s · eta 0.5s"
    clock.t += 3.0
    assert bar.render(clock()) == "sync [############..................] 42% 420/1000 · 125/s · eta 5s"


def test_tty_redraws_in_place_at_most_ten_times_a_second() -> None:
    clock, out = Clock(), Tty()
    bar = ProgressBar(100, label="replay", file=out, clock=clock, width=60)
    clock.t += 1.0
    bar.update(10)  # first update draws
    first = "\rreplay [#.........] 10% 10/100 · 10/s · eta 9s"
    assert out.getvalue() == first
    clock.t += 0.05
    bar.update(10)  # 50 ms later: no redraw
    assert out.getvalue() == first
    clock.t += 0.06
    bar.update(10)  # 110 ms after the last draw: redraw
    assert out.getvalue() == first + "\rreplay [###.......] 30% 30/100 · 27/s · eta 3s"
    clock.t += 0.01
    bar.set(100)  # completion always draws
    assert out.getvalue().endswith("\rreplay [##########] 100% 100/100 · 89/s · eta 0.0s")
    bar.close()
    assert out.getvalue().endswith("\rreplay [##########] 100% 100/100 · 89/s · done in 1s\n")
    bar.close()  # idempotent
    assert out.getvalue().count("\n") == 1


def test_tty_pads_over_a_longer_previous_line() -> None:
    clock, out = Clock(), Tty()
    bar = ProgressBar(None, file=out, clock=clock)
    clock.t += 0.5
    bar.set(5000)
    clock.t += 59.5
    bar.set(5001)
    first, second = out.getvalue().split("\r")[1:]
    assert first == "5000 · 10.0k/s · 0.5s"
    assert second == "5001 · 83/s · 1m00s" + " " * (len(first) - len("5001 · 83/s · 1m00s"))


def test_unknown_total() -> None:
    clock, out = Clock(), io.StringIO()
    with ProgressBar(0, label="events", file=out, clock=clock) as bar:
        clock.t += 2
        bar.update(3)
    assert out.getvalue() == "events 3 · 1.5/s · done in 2s\n"


def test_no_progress_yet_and_no_label() -> None:
    clock = Clock()
    bar = ProgressBar(10, file=io.StringIO(), clock=clock, width=80)
    assert bar.render(clock()) == "[" + "." * 30 + "] 0% 0/10 · 0.0/s · eta ?"


def test_overshoot_is_capped_at_full_bar() -> None:
    clock = Clock()
    bar = ProgressBar(10, file=io.StringIO(), clock=clock, width=55)
    clock.t += 1
    bar.set(12)
    assert bar.render(clock(), final=True) == "[##########] 100% 12/10 · 12/s · done in 1s"


def test_closes_on_exception_and_ignores_closed_stream() -> None:
    out = io.StringIO()
    with pytest.raises(RuntimeError), ProgressBar(5, file=out, clock=Clock()):
        raise RuntimeError("boom")
    assert out.getvalue().endswith("0/5 · 0.0/s · done in 0.0s\n")
    closed = io.StringIO()
    closed.close()
    ProgressBar(5, file=closed, clock=Clock()).close()


@pytest.mark.parametrize(("x", "text"), [(0, "0.0"), (9.54, "9.5"), (950, "950"), (1234, "1.2k"),
                                         (3.4e6, "3.4M"), (1e9, "1.0G")])
def test_format_count(x: float, text: str) -> None:
    assert format_count(x) == text


@pytest.mark.parametrize(("s", "text"), [(0.44, "0.4s"), (3.2, "3s"), (65, "1m05s"), (7380, "2h03m")])
def test_format_duration(s: float, text: str) -> None:
    assert format_duration(s) == text
