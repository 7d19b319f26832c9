"""``runstream demo`` end to end: the embedded stack under tmp_path, no RUNSTREAM_NATS_URL."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runstream.demo import DIVERGING, FORK_STEP, PROJECT, STEPS, TRIALS, curves, results_sql


@pytest.fixture
def demo_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNSTREAM_")}
    env["RUNSTREAM_DIR"] = str(tmp_path / "data")
    env["RUNSTREAM_FINISH_TIMEOUT"] = "60"
    yield env
    # the demo leaves the stack running on purpose: stop it whatever happened
    down = subprocess.run([sys.executable, "-m", "runstream.cli", "down"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr


@pytest.mark.slow
def test_demo_end_to_end(demo_env: dict[str, str], tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "runstream.cli", "demo"], env=demo_env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    out, err = proc.stdout, proc.stderr

    assert "demo: local stack running" in out
    assert out.count("→ finished") == len(TRIALS) + 2  # the trials, the fork, the rewound run
    assert out.count("→ failed") == 1  # before its rewind
    assert "demo: the training raised Diverged" in out
    assert "demo: synced demo/awesome-project/" in out
    assert "fork_from=" in out and "resume_from=" in out
    assert "runstream runs demo/awesome-project" in out and "runstream ui" in out
    assert "The web app is at http://127.0.0.1:" in out
    assert "stop it with: runstream down" in out
    # the SQL table: seven runs, all finished (the diverged one after its rewind), one offline
    table = out.split("(SQL over DuckDB):", 1)[1].split("Query it:", 1)[0]
    rows = [line for line in table.strip().splitlines()[2:] if line.strip()]
    assert len(rows) == len(TRIALS) + 3, table
    assert sum(" failed " in r for r in rows) == 0 and sum(" offline " in r for r in rows) == 1
    assert sum(" fork " in r for r in rows) == 1 and sum(" rewind " in r for r in rows) == 1

    # the SDK's own terminal output, with the runstream: prefix
    assert err.count("runstream: Syncing run ") == len(TRIALS) + 3
    assert err.count("runstream: Offline run ") == 1
    assert "runstream: Run history:" in err and "runstream: Run summary:" in err

    # the run files stayed under the data dir, not in the working directory
    assert not (tmp_path / "runstream-runs").exists()
    assert list((tmp_path / "data" / "demo-runs" / "runstream-runs").iterdir())

    # the stack stays up and answers the CLI: the fork holds its parent's first 101 steps, unchanged
    sql = subprocess.run(
        [sys.executable, "-m", "runstream.cli", "sql", "--format", "csv",
         f"SELECT state, count(*) AS n FROM runs WHERE project = '{PROJECT}' GROUP BY state ORDER BY state"],
        env=demo_env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert sql.returncode == 0, sql.stderr
    lines = sql.stdout.strip().splitlines()
    assert lines[1:] == [f"finished,{len(TRIALS) + 3}"], sql.stdout
    same = subprocess.run(
        [sys.executable, "-m", "runstream.cli", "sql", "--format", "csv",
         "SELECT count(*) AS n FROM history f JOIN runs r ON r.run_uid = f.run_uid AND r.origin_kind = 'fork' "
         "JOIN history p ON p.run_uid = r.origin_run_uid AND p.step = f.step AND p.key = f.key "
         f"WHERE f.key = 'loss' AND f.value = p.value AND r.project = '{PROJECT}'"],
        env=demo_env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert same.returncode == 0, same.stderr
    assert same.stdout.strip().splitlines()[1:] == [str(FORK_STEP + 1)], same.stdout


def test_simulated_curves_learn() -> None:
    for trial in TRIALS:
        rng = random.Random(trial.seed)
        points = [curves(trial, s, rng) for s in range(STEPS)]
        assert points[-1][0] < points[0][0] / 3, trial
        assert points[-1][1] > points[0][1], trial
        assert all(math.isfinite(loss) and 0 <= acc <= 1 for loss, acc in points)


def test_results_sql_quotes_ids() -> None:
    sql = results_sql(["abc", "o'brien"])
    assert "IN ('abc', 'o''brien')" in sql
    assert DIVERGING.learning_rate > max(t.learning_rate for t in TRIALS)


def test_the_demo_says_how_to_get_the_command(tmp_path: Path) -> None:
    from runstream.demo import command_hint

    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "activate").write_text("")
    exe = str(tmp_path / "bin" / "python")
    assert command_hint(lambda name: None, exe) == (
        f"The runstream command is {tmp_path}/bin/runstream; put it on your PATH with:\n"
        f"  . {tmp_path}/bin/activate\n"
        "(or pip install runstream into your own environment)")
    assert command_hint(lambda name: "/usr/bin/runstream", exe) is None
    (tmp_path / "bin" / "activate").unlink()
    assert command_hint(lambda name: None, exe) == (
        f"The runstream command is {tmp_path}/bin/runstream (that folder is not on your PATH)")
