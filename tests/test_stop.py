"""Stopping a live run from outside (``Api().run(p).stop()``, ``runstream stop``) against a real
server subprocess over HTTP, real NATS and real training subprocesses."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runstream.api import Api
from runstream.broker import NatsServer
from runstream.cli import main as cli_main
from runstream.query.errors import NotFound, RunNotAlive
from tests.conftest import wait_for
from tests.query_helpers import ServerProc, http_server, log_run, unique, use_server


@pytest.fixture(scope="module")
def server(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProc, str]]:
    yield from http_server(nats_server, tmp_path_factory.mktemp("stop"))


@pytest.fixture
def env(server: tuple[ServerProc, str], rs_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return use_server(server, rs_env, monkeypatch)


TRAIN = """
import runstream, sys, time
run = runstream.init(entity=sys.argv[1], project="stop", id=sys.argv[2])
print("ready", flush=True)
for i in range(1_000_000):
    run.log({"loss": 1.0 / (i + 1)})
    time.sleep(0.01)
"""

CATCHING = """
import runstream, sys, time
run = runstream.init(entity=sys.argv[1], project="stop", id=sys.argv[2])
run.log({"loss": 1.0})
print("ready", flush=True)
try:
    time.sleep(3600)           # blocked in a system call: the stop must wake it
except KeyboardInterrupt:
    run.log({"cleanup": 1.0})  # the script gets to clean up
    run.summary["cleaned"] = "yes"
run.finish()
print("finished", run.state, run.exit_code, flush=True)
"""


def _spawn(script: str, env: dict[str, str], tmp_path: Path, *args: str) -> Any:
    import subprocess
    import sys
    import textwrap

    proc = subprocess.Popen([sys.executable, "-u", "-c", textwrap.dedent(script), *args], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", line + proc.stderr.read() if proc.stderr else ""
    return proc


def _visible(path: str) -> Any:
    def get() -> Any:
        try:
            return Api().run(path)
        except NotFound:
            return None
    return wait_for(get, timeout=30, what=f"run {path} in the projection")


def _state(path: str, want: str) -> bool:
    return Api().run(path).state == want


def test_a_live_run_stopped_from_the_api_ends_killed(env: dict[str, str], tmp_path: Path) -> None:
    entity = unique("stop")
    path = f"{entity}/stop/live"
    proc = _spawn(TRAIN, env, tmp_path, entity, "live")
    try:
        run = _visible(path)
        assert run.state == "running"
        reply = run.stop()
        assert len(reply["writers"]) == 1 and reply["projected"]
        out, err = proc.communicate(timeout=60)
        assert proc.returncode in (-signal.SIGINT, 130, 1), err  # an uncaught KeyboardInterrupt
        assert "KeyboardInterrupt" in err
        wait_for(lambda: _state(path, "killed"), timeout=30, what="state killed")
        row = Api().run(path)
        assert row.exit_code == 255 and row.summary["loss"] > 0
        stops = Api().sql(f"SELECT s.requested_by, s.writers, s.request_writer FROM stop_requests s JOIN runs r "
                          f"USING (run_uid) WHERE r.path = '{path}'", pandas=False).to_pylist()
        assert len(stops) == 1 and "runstream.Api" in stops[0]["requested_by"]
        assert stops[0]["writers"] == reply["writers"] and stops[0]["request_writer"].startswith("api:")
        # a stop is no sign of life: the run's heartbeat is its own last event, before the stop
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_script_catching_the_interrupt_cleans_up_and_ends_killed(env: dict[str, str], tmp_path: Path) -> None:
    entity = unique("stop")
    path = f"{entity}/stop/catch"
    proc = _spawn(CATCHING, env, tmp_path, entity, "catch")
    try:
        _visible(path)
        assert cli_main(["stop", path]) == 0
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "finished killed 255" in out
        wait_for(lambda: _state(path, "killed"), timeout=30, what="state killed")
        run = Api().run(path)
        assert run.summary["cleanup"] == 1.0 and run.summary["cleaned"] == "yes"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_stopping_a_run_that_is_not_alive_is_an_error(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    path = log_run(unique("stop"), "stop", steps=3)
    run = _visible(path)
    with pytest.raises(RunNotAlive, match="not alive"):
        run.stop()
    assert cli_main(["stop", path]) == 1
    assert "not alive" in capsys.readouterr().err
    assert Api().run(path).state == "finished"
    assert Api().sql(f"SELECT count(*) AS n FROM stop_requests s JOIN runs r USING (run_uid) "
                     f"WHERE r.path = '{path}'", pandas=False).to_pylist() == [{"n": 0}]
    with pytest.raises(NotFound):
        Api().run(f"{path}-nope").stop()


def test_replay_reproduces_the_stop_projection(env: dict[str, str], tmp_path: Path) -> None:
    entity = unique("stop")
    path = f"{entity}/stop/replayed"
    proc = _spawn(TRAIN, env, tmp_path, entity, "replayed")
    try:
        _visible(path).stop()
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wait_for(lambda: _state(path, "killed"), timeout=30, what="state killed")
    # this test's runs only: the crash reaper may decide about other tests' silent runs in between
    mine = f"run_uid IN (SELECT run_uid FROM runs WHERE entity = '{entity}')"
    queries = [f"SELECT * FROM stop_requests WHERE {mine} ORDER BY ALL",
               f"SELECT * EXCLUDE (metadata) FROM runs WHERE {mine} ORDER BY run_uid"]
    before = [Api().sql(q, pandas=False).to_pylist() for q in queries]
    assert cli_main(["replay"]) == 0
    after = [Api().sql(q, pandas=False).to_pylist() for q in queries]
    assert after == before and any(r["path"] == path and r["state"] == "killed" for r in after[1])


STUBBORN = """
import runstream, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)   # ignores SIGTERM too: only the hard exit ends it
run = runstream.init(entity=sys.argv[1], project="stop", id=sys.argv[2])
run.log({"loss": 1.0})
print("ready", flush=True)
while True:
    try:
        time.sleep(0.01)
    except KeyboardInterrupt:
        print("interrupt swallowed", flush=True)
"""


@pytest.mark.fault
def test_a_process_that_swallows_the_interrupt_and_ignores_sigterm_is_ended_and_recorded_killed(
        env: dict[str, str], tmp_path: Path, fault_report: Any) -> None:
    entity = unique("stop")
    path = f"{entity}/stop/stubborn"
    proc = _spawn(STUBBORN, {**env, "RUNSTREAM_STOP_GRACE": "1"}, tmp_path, entity, "stubborn")
    try:
        _visible(path)
        assert cli_main(["stop", path]) == 0
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 255, err
        assert out == "interrupt swallowed\n"
        assert "did not end within 1s of the interrupt" in err and "recording it as killed and sending SIGTERM" in err
        assert "SIGTERM did not end the process within 1s either: exiting (255)" in err
        wait_for(lambda: _state(path, "killed"), timeout=30, what="state killed")
        run = Api().run(path)
        assert run.exit_code == 255
        stops = Api().sql(f"SELECT count(*) AS n FROM stop_requests s JOIN runs r USING (run_uid) "
                          f"WHERE r.path = '{path}'", pandas=False).to_pylist()
        assert stops == [{"n": 1}]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    fault_report("stop of a process ignoring SIGINT and SIGTERM", "it ends; run killed; each step on stderr",
                 f"exit {proc.returncode}; state killed; interrupt -> SIGTERM -> hard exit")
