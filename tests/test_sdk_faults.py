"""Faults: nothing lost, nothing doubled — killed trainer, restarted broker, racing inits, offline."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import runstream
from runstream.broker import RunExistsError
from runstream.settings import load_settings
from runstream.sync import sync_paths

from .sdk_helpers import one, project, python, run_uid, spawn


async def _stream_messages(url: str) -> int:
    from runstream.broker.jetstream import connect

    nc = await connect(url)
    try:
        info = await nc.jetstream().stream_info("RUNSTREAM")
        return int(info.state.messages)
    finally:
        await nc.close()


def test_sigkill_trainer_then_sync(rs_env: dict[str, str], nats_server, tmp_path: Path) -> None:
    """Every step the trainer printed after log() returned is in DuckDB after sync, once."""
    proc = spawn("""
        import sys, runstream
        run = runstream.init(entity="faults", project="sigkill", id="killed-run")
        step = 0
        while True:
            run.log({"loss": 1.0 / (step + 1), "step_copy": step})
            print(step, flush=True)
            step += 1
    """, rs_env, tmp_path)
    printed: list[int] = []
    assert proc.stdout is not None
    while len(printed) < 30_000:
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "trainer died"
        printed.append(int(line))
    os.killpg(proc.pid, signal.SIGKILL)
    # Lines printed after our last readline count too. Read them through the same buffered reader:
    # communicate() would read the raw pipe and skip lines readline() had already buffered.
    rest = proc.stdout.read()
    proc.communicate(timeout=30)
    printed.extend(int(x) for x in rest.split())
    report = sync_paths([tmp_path / "work"], load_settings())
    assert report.errors == []
    again = sync_paths([tmp_path / "work"], load_settings())
    assert again.events_sent == 0  # idempotent: a second sync sends nothing
    con = project(tmp_path, nats_server.url)
    uid = run_uid(con, "faults/sigkill/killed-run")
    steps = [r[0] for r in con.execute(
        "SELECT step FROM history WHERE run_uid = ? AND key = 'step_copy' ORDER BY step", [uid]).fetchall()]
    assert steps[: len(printed)] == printed  # nothing lost...
    assert len(steps) == len(set(steps))     # ...nothing doubled
    assert one(con, "SELECT count(*) FROM history WHERE run_uid = ? AND key = 'step_copy' AND value <> step",
               [uid]) == 0


def test_next_init_in_same_dir_completes_leftover_spool(rs_env: dict[str, str], nats_server,
                                                        tmp_path: Path) -> None:
    env = {**rs_env, "RUNSTREAM_NATS_URL": "nats://127.0.0.1:1",  # nobody there: all stays spooled
           "RUNSTREAM_INIT_TIMEOUT": "0.5"}
    proc = spawn("""
        import runstream
        run = runstream.init(entity="faults", project="leftover", id="left", settings={"finish_timeout": 1})
        for i in range(500):
            run.log({"i": i})
        print("done", flush=True)
        import os, signal
        os.kill(os.getpid(), signal.SIGKILL)
    """, env, tmp_path)
    out, _ = proc.communicate(timeout=60)
    assert "done" in out
    python("""
        import runstream
        runstream.init(entity="faults", project="leftover", id="next").finish()
    """, rs_env, tmp_path, check=True)
    con = project(tmp_path, nats_server.url)
    uid = run_uid(con, "faults/leftover/left")
    assert one(con, "SELECT count(DISTINCT step) FROM history WHERE run_uid = ?", [uid]) == 500


def test_broker_killed_and_restarted_mid_run(own_nats, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**os.environ, "RUNSTREAM_NATS_URL": own_nats.url, "RUNSTREAM_RUN_DIR": str(tmp_path / "work"),
           "RUNSTREAM_DIR": str(tmp_path / "data"), "RUNSTREAM_QUIET": "1"}
    proc = spawn("""
        import sys, runstream
        run = runstream.init(entity="faults", project="restart", id="survivor")
        for step in range(40_000):
            run.log({"v": float(step)})
            if step == 10_000:
                print("pause", flush=True)
        print("logged", flush=True)
        run.finish()
        print("finished", flush=True)
    """, env, tmp_path)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "pause"
    own_nats.kill()
    own_nats.start()
    out, err = proc.communicate(timeout=120)
    assert "finished" in out, err
    con = project(tmp_path, own_nats.url)
    uid = run_uid(con, "faults/restart/survivor")
    assert one(con, "SELECT count(*) FROM history WHERE run_uid = ?", [uid]) == 40_000
    assert one(con, "SELECT count(DISTINCT step) FROM history WHERE run_uid = ?", [uid]) == 40_000
    assert one(con, "SELECT state FROM runs WHERE run_uid = ?", [uid]) == "finished"


def test_eight_processes_race_for_one_id(rs_env: dict[str, str], nats_server, tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import sys, runstream
        from runstream.broker import RunExistsError
        sys.stdin.readline()  # start together
        try:
            run = runstream.init(entity="faults", project="race", id="same")
        except RunExistsError as e:
            print("exists:", e)
        else:
            run.log({"winner": 1})
            run.finish()
            print("created")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], env=rs_env, cwd=tmp_path, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(8)]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert sum(o.strip() == "created" for o in outs) == 1, outs
    refused = [o for o in outs if o.startswith("exists:")]
    assert len(refused) == 7 and all("already exists" in o for o in refused)
    con = project(tmp_path, nats_server.url)
    assert one(con, "SELECT count(*) FROM runs WHERE path = 'faults/race/same'") == 1
    with pytest.raises(RunExistsError):
        runstream.init(entity="faults", project="race", id="same")


def test_offline_then_sync_is_idempotent(rs_env: dict[str, str], nats_server, tmp_path: Path) -> None:
    with runstream.init(entity="faults", project="offline", id="off", mode="offline") as run:
        for i in range(100):
            run.log({"x": i})
    before = asyncio.run(_stream_messages(nats_server.url))
    report = sync_paths([run.dir], load_settings())
    assert report.runs == ["faults/offline/off"] and report.events_sent >= 3
    after = asyncio.run(_stream_messages(nats_server.url))
    again = sync_paths([run.dir], load_settings(), include_complete=True)
    assert again.events_sent == 0 and again.already_acked == report.events_sent
    assert asyncio.run(_stream_messages(nats_server.url)) == after > before
    con = project(tmp_path, nats_server.url)
    uid = run_uid(con, "faults/offline/off")
    assert one(con, "SELECT state FROM runs WHERE run_uid = ?", [uid]) == "finished"
    assert one(con, "SELECT count(*) FROM history WHERE run_uid = ?", [uid]) == 100
