"""Console output and system metrics of real runs, through a real nats-server into DuckDB."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb

import runstream
from runstream.settings import load_settings
from runstream.sync import sync_paths

from .conftest import wait_for
from .sdk_helpers import env_with, one, project, python, run_uid, spawn


def _console(con: duckdb.DuckDBPyConnection, path: str) -> list[tuple[str, int, str]]:
    return [tuple(r) for r in con.execute(
        "SELECT stream, line, text FROM console WHERE run_uid = ? ORDER BY line", [run_uid(con, path)]).fetchall()]


def test_printed_lines_and_a_progress_bar_become_exact_console_rows(rs_env: dict[str, str], nats_server,
                                                                   tmp_path: Path) -> None:
    proc = python("""
        import sys, runstream
        run = runstream.init(entity="console", project="p", id="bar")
        print("epoch 1")
        print("loss", 0.5, file=sys.stderr)
        for i in range(101):  # a tqdm-like bar: redrawn with \\r, finished with \\n
            sys.stderr.write(f"\\r{i:3d}%|{'#' * (i // 10):10s}| {i}/100")
            sys.stderr.flush()
            run.log({"i": i})
        sys.stderr.write("\\n")
        sys.stdout.write("partial ")
        sys.stdout.write("line\\n")
        print("no newline at the end", end="")
        run.finish()
    """, env_with(rs_env), tmp_path, check=True)
    bar = "100%|##########| 100/100"
    assert proc.stdout == "epoch 1\npartial line\nno newline at the end"  # the terminal still shows it
    # (text mode reads each \r as a newline) every redraw reached the terminal
    assert proc.stderr.startswith("loss 0.5\n") and proc.stderr.count("/100") == 101
    assert proc.stderr.endswith(bar + "\n")
    con = project(tmp_path, nats_server.url)
    assert _console(con, "console/p/bar") == [
        ("stdout", 0, "epoch 1"), ("stderr", 1, "loss 0.5"), ("stderr", 2, bar),
        ("stdout", 3, "partial line"), ("stdout", 4, "no newline at the end")]
    uid = run_uid(con, "console/p/bar")
    assert one(con, "SELECT count(*) FROM history WHERE run_uid = ? AND key = 'i'", [uid]) == 101
    assert one(con, "SELECT count(DISTINCT writer) = 1 AND bool_and(label IS NULL) AND min(timestamp) > 0 "
                    "FROM console WHERE run_uid = ?", [uid])


def test_sigkilled_process_last_printed_lines_are_in_console_after_sync(rs_env: dict[str, str], nats_server,
                                                                        tmp_path: Path) -> None:
    proc = spawn("""
        import runstream
        run = runstream.init(entity="console", project="kill", id="k")
        i = 0
        while True:
            run.log({"i": i})
            print(f"step {i}", flush=True)
            i += 1
    """, env_with(rs_env), tmp_path)
    assert proc.stdout is not None
    printed: list[str] = []
    while len(printed) < 2000:
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "trainer died"
        printed.append(line.rstrip("\n"))
    os.killpg(proc.pid, signal.SIGKILL)
    printed += proc.stdout.read().splitlines()
    proc.communicate(timeout=30)
    assert sync_paths([tmp_path / "work"], load_settings()).errors == []
    con = project(tmp_path, nats_server.url)
    rows = _console(con, "console/kill/k")
    texts = [t for _s, _n, t in rows]
    assert texts[: len(printed)] == printed  # every line that reached the terminal, in order, once
    assert len(texts) - len(printed) <= 1  # at most the line being printed when the kill came
    assert [n for _s, n, _t in rows] == list(range(len(rows)))
    replayed = tmp_path / "replay"  # a second projection of the same log, from scratch: equal rows
    replayed.mkdir()
    again = project(replayed, nats_server.url)
    assert _console(again, "console/kill/k") == rows


def test_console_off_and_stats_off_record_nothing(rs_env: dict[str, str], nats_server, tmp_path: Path) -> None:
    proc = python("""
        import runstream
        run = runstream.init(entity="console", project="off", id="o")
        print("shown, not recorded")
        run.finish()
        run = runstream.init(entity="console", project="off", id="o2", settings={"console": "off",
                             "stats_interval": 0})
        print("also not recorded")
        run.finish()
    """, env_with(rs_env, RUNSTREAM_CONSOLE="off", RUNSTREAM_DISABLE_STATS="1"), tmp_path, check=True)
    assert proc.stdout == "shown, not recorded\nalso not recorded\n"
    con = project(tmp_path, nats_server.url)
    for rid in ("o", "o2"):
        uid = run_uid(con, f"console/off/{rid}")
        assert one(con, "SELECT count(*) FROM console WHERE run_uid = ?", [uid]) == 0
        assert one(con, "SELECT count(*) FROM system_metrics WHERE run_uid = ?", [uid]) == 0


def test_long_lines_and_binary_garbage_are_kept_or_marked(rs_env: dict[str, str], nats_server,
                                                         tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import sys, runstream
        run = runstream.init(entity="console", project="garbage", id="g")
        print("x" * 200_000)
        sys.stdout.flush()
        sys.stdout.buffer.write(b"bin \\xff\\xfe\\x00 end\\n")
        sys.stdout.buffer.flush()
        print("ok \\u2713 \\udcff")
        run.finish()
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=env_with(rs_env), cwd=tmp_path, capture_output=True,
                          timeout=120, check=True)
    assert proc.stdout.endswith(b"x\nbin \xff\xfe\x00 end\nok \xe2\x9c\x93 \xff\n")  # shown unchanged
    con = project(tmp_path, nats_server.url)
    rows = _console(con, "console/garbage/g")
    long_rows = [t for _s, _n, t in rows if set(t) == {"x"}]
    assert "".join(long_rows) == "x" * 200_000 and len(long_rows) == 4  # 64 Ki characters a row at most
    assert [t for _s, _n, t in rows[len(long_rows):]] == ["bin \\xff\\xfe\x00 end", "ok ✓ \\xff"]
    uid = run_uid(con, "console/garbage/g")  # the stream is the session's: other tests' junk is there too
    assert one(con, "SELECT count(*) FROM dead_letters WHERE contains(subject, ?)", [uid]) == 0


def test_system_metrics_arrive_at_a_tenth_of_a_second(rs_env: dict[str, str], nats_server, tmp_path: Path) -> None:
    run = runstream.init(entity="system", project="p", id="fast",
                         settings={"stats_interval": 0.1, "console": "off"})
    try:
        def rows() -> int:
            con = project(tmp_path, nats_server.url)
            try:
                uid = con.execute("SELECT run_uid FROM runs WHERE path = 'system/p/fast'").fetchone()
                n = 0 if uid is None else one(con, "SELECT count(DISTINCT timestamp) FROM system_metrics "
                                                   "WHERE run_uid = ? AND key = 'system.cpu'", [uid[0]])
            finally:
                con.close()
            return int(n) >= 3

        wait_for(rows, timeout=60, interval=0.2, what="three system samples in system_metrics")
    finally:
        run.finish()
    con = project(tmp_path, nats_server.url)
    uid = run_uid(con, "system/p/fast")
    keys = {r[0] for r in con.execute("SELECT DISTINCT key FROM system_metrics WHERE run_uid = ?", [uid]).fetchall()}
    assert {"system.cpu", "system.cpu.0.cpu_percent", "system.memory_percent", "system.proc.memory.rssMB",
            "system.proc.memory.percent", "system.proc.cpu.threads", "system.disk./.usagePercent", "system.disk.in",
            "system.disk.out", "system.network.sent", "system.network.recv"} <= keys
    assert one(con, "SELECT bool_and(runtime >= 0 AND runtime < 600) AND bool_and(writer IS NOT NULL) "
                    "AND bool_and(label IS NULL) FROM system_metrics WHERE run_uid = ?", [uid])
