from __future__ import annotations

import io
import math

import pytest

from runstream.console import (
    Console,
    RunInfo,
    format_value,
    lines,
    render_finish,
    render_history,
    render_start,
    render_summary,
    render_warning,
    sparkline,
)

INFO = RunInfo(name="earnest-sunset-17", entity="nico", project="awesome-project", id="1jx1ud12",
               dir="/work/runstream/run-20250120_101106-1jx1ud12", cwd="/work")


def test_start_online() -> None:
    assert render_start(INFO) == (
        "runstream: Syncing run earnest-sunset-17\n"
        "runstream: ⭐️ View project at nico/awesome-project\n"
        "runstream: 🚀 View run earnest-sunset-17 (nico/awesome-project/1jx1ud12)\n"
    )


def test_start_offline_says_where_and_how_to_sync() -> None:
    info = RunInfo("jolly-haze-4", "nico", "p", "pdo5110r", "/work/runstream/offline-run-x", mode="offline",
                   cwd="/work")
    assert render_start(info) == (
        "runstream: Offline run jolly-haze-4 (nico/p/pdo5110r)\n"
        "runstream: Run data is saved locally in runstream/offline-run-x\n"
        "runstream: Run `runstream sync runstream/offline-run-x` to send it to the log\n"
    )


def test_disabled_prints_nothing() -> None:
    info = RunInfo("n", "e", "p", "i", "/d", mode="disabled")
    assert render_start(info) == ""
    assert render_finish(info, {"a": [1.0]}, {"a": 1.0}) == ""


def test_finish_like_the_reference() -> None:
    out = render_finish(INFO, {"accuracy": [0.9], "loss": [0.5]}, {"accuracy": 0.9, "loss": 0.5})
    assert out == (
        "runstream:\n"
        "runstream: Run history:\n"
        "runstream: accuracy ▁\n"
        "runstream:     loss ▁\n"
        "runstream:\n"
        "runstream: Run summary:\n"
        "runstream: accuracy 0.9\n"
        "runstream:     loss 0.5\n"
        "runstream:\n"
        "runstream: 🚀 View run earnest-sunset-17 at: nico/awesome-project/1jx1ud12\n"
        "runstream: Find logs at: runstream/run-20250120_101106-1jx1ud12\n"
    )


def test_finish_hides_private_and_non_scalar_keys() -> None:
    out = render_finish(
        INFO,
        {"_step": [0, 1], "_runtime": [0.1, 0.2], "loss": [2.0, 1.0, 0.5, 0.25], "caption": ["a", "b"]},
        {"_step": 1, "loss": 0.25, "table": {"a": 1}, "none": None, "label": "cat", "epochs": 10,
         "done": True},
    )
    assert out == (
        "runstream:\n"
        "runstream: Run history:\n"
        "runstream: loss █▄▂▁\n"
        "runstream:\n"
        "runstream: Run summary:\n"
        "runstream:   done True\n"
        "runstream: epochs 10\n"
        "runstream:  label cat\n"
        "runstream:   loss 0.25\n"
        "runstream:\n"
        "runstream: 🚀 View run earnest-sunset-17 at: nico/awesome-project/1jx1ud12\n"
        "runstream: Find logs at: runstream/run-20250120_101106-1jx1ud12\n"
    )


def test_finish_without_metrics() -> None:
    assert render_finish(INFO, {}, {}) == (
        "runstream:\n"
        "runstream: 🚀 View run earnest-sunset-17 at: nico/awesome-project/1jx1ud12\n"
        "runstream: Find logs at: runstream/run-20250120_101106-1jx1ud12\n"
    )


def test_finish_offline_says_how_to_sync() -> None:
    info = RunInfo("n", "e", "p", "i", "/elsewhere/run-i", mode="offline", cwd="/work")
    assert render_finish(info, {}, {"x": 1}) == (
        "runstream:\n"
        "runstream: Run summary:\n"
        "runstream: x 1\n"
        "runstream:\n"
        "runstream: You can sync this run by running:\n"
        "runstream: runstream sync /elsewhere/run-i\n"
        "runstream: Find logs at: /elsewhere/run-i\n"
    )


def test_finish_with_pending_events_warns() -> None:
    info = RunInfo("n", "e", "p", "i", "/w/run-i", cwd="/w", pending=3)
    assert render_finish(info, {}, {}).endswith(
        "runstream: WARNING 3 events are still in the spool, not yet acknowledged by the log; "
        "send them with `runstream sync run-i`\n"
    )


def test_keys_right_aligned_and_long_keys_shortened() -> None:
    long = "train/" + "x" * 60 + "/loss"
    out = render_summary({"a": 1, long: 2})
    first, second = out.split("\n")
    assert len(first) == len(second) == 40 + 2
    assert first == " " * 39 + "a 1"
    assert "…" in second and second.startswith("train/") and second.endswith("/loss 2")


def test_sparkline_levels() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([7, 0]) == "█▁"
    assert sparkline([3.0, 3.0, 3.0]) == "▁▁▁"
    assert sparkline([]) == ""


def test_sparkline_nan_inf_and_non_numbers() -> None:
    assert sparkline([0.0, math.nan, 1.0]) == "▁ █"
    assert sparkline([0.0, math.inf, -math.inf, 7.0]) == "▁█▁█"
    assert sparkline([math.nan, math.nan]) == "  "
    assert sparkline([0, "text", None, 7]) == "▁  █"


def test_sparkline_downsamples_to_width() -> None:
    line = sparkline(list(range(1000)))
    assert len(line) == 40
    assert line[0] == "▁" and line[-1] == "█"
    assert list(line) == sorted(line)
    assert sparkline(list(range(1000)), width=10) == "▁▂▃▃▄▅▆▆▇█"
    assert len(sparkline([1.0] * 39)) == 39


def test_sparkline_downsampling_keeps_nan_only_buckets_blank() -> None:
    values = [0.0] * 10 + [math.nan] * 10 + [1.0] * 10
    assert sparkline(values, width=3) == "▁ █"


def test_history_narrow_terminal_shrinks_sparklines() -> None:
    out = render_history({"loss": list(range(100))}, width=30)
    assert out == "loss " + sparkline(list(range(100)), 14)


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.1, "0.1"), (0.10531971149250456, "0.10532"), (1234567.0, "1.2346e+06"), (1e-7, "1e-07"),
     (12, "12"), (-0.0, "-0"), (math.nan, "nan"), (math.inf, "inf"), (True, "True"),
     ("multi\nline\ttext", "multi line text"), ("x" * 50, "x" * 39 + "…")],
)
def test_format_value(value: object, text: str) -> None:
    assert format_value(value) == text


def test_format_numpy_scalar() -> None:
    np = pytest.importorskip("numpy")
    assert format_value(np.float32(0.5)) == "0.5"
    assert render_summary({"acc": np.float64(0.25), "n": np.int64(3)}) == "acc 0.25\n  n 3"


def test_lines_prefix() -> None:
    assert lines("a", "", "b\nc") == "runstream: a\nrunstream:\nrunstream: b\nrunstream: c\n"
    assert render_warning("step went back") == "runstream: WARNING step went back\n"


def test_display_dir_outside_cwd_stays_absolute() -> None:
    assert RunInfo("n", "e", "p", "i", "/a/b", cwd="/c").display_dir() == "/a/b"
    assert RunInfo("n", "e", "p", "i", "/a/b").display_dir() == "/a/b"
    assert RunInfo("n", "e", "p", "i", "/a/b", cwd="/a").display_dir() == "b"


def test_console_writes_and_quiet_keeps_warnings() -> None:
    buf = io.StringIO()
    con = Console(file=buf, width=80)
    con.start(INFO)
    con.info("hello")
    con.warn("careful")
    assert buf.getvalue() == render_start(INFO) + "runstream: hello\nrunstream: WARNING careful\n"

    quiet_buf = io.StringIO()
    quiet = Console(file=quiet_buf, width=80, quiet=True)
    quiet.start(INFO)
    quiet.info("hello")
    quiet.finish(INFO, {"a": [1.0]}, {"a": 1.0})
    quiet.warn("careful")
    quiet.finish(RunInfo("n", "e", "p", "i", "/w/r", cwd="/w", pending=1), {}, {})
    assert quiet_buf.getvalue() == (
        "runstream: WARNING careful\n"
        "runstream: WARNING 1 event is still in the spool, not yet acknowledged by the log; "
        "send them with `runstream sync r`\n"
    )


def test_console_finish_uses_width() -> None:
    buf = io.StringIO()
    Console(file=buf, width=80).finish(INFO, {"a": [1.0, 2.0]}, {"a": 2.0})
    assert buf.getvalue() == render_finish(INFO, {"a": [1.0, 2.0]}, {"a": 2.0}, 80)


def test_console_ignores_closed_stream() -> None:
    buf = io.StringIO()
    buf.close()
    Console(file=buf).warn("x")  # no exception at interpreter exit
