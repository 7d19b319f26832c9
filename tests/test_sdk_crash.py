"""Crash detection end to end: a real server's reaper, a real trainer process, real heartbeats."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from runstream.query.client import QueryClient

from .conftest import wait_for
from .query_helpers import start_server
from .sdk_helpers import spawn


def _state(client: QueryClient, path: str) -> str | None:
    rows = client.sql(f"SELECT state FROM runs WHERE path = '{path}'").to_pylist()
    return rows[0]["state"] if rows else None


def test_stopped_trainer_turns_crashed_then_running_again_then_killed_stays_crashed(
        rs_env: dict[str, str], nats_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # rs_env: heartbeats every 1 s, crashed after 3 s of silence
    srv = start_server(nats_server, tmp_path, rs_env)
    monkeypatch.setenv("RUNSTREAM_SERVER_NAME", srv.name)
    client = QueryClient(srv.settings)
    proc = spawn("""
        import runstream, threading
        run = runstream.init(entity="crash", project="reaper", id="paused")
        run.log({"x": 1})
        print("ready", flush=True)
        threading.Event().wait()  # alive, logging nothing: only heartbeats show it is there
    """, rs_env, tmp_path)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        path = "crash/reaper/paused"
        wait_for(lambda: _state(client, path) == "running", timeout=30, what="running")
        os.kill(proc.pid, signal.SIGSTOP)          # heartbeats stop, as on a hung machine
        wait_for(lambda: _state(client, path) == "crashed", timeout=60, what="crashed")
        os.kill(proc.pid, signal.SIGCONT)          # heartbeats resume: running again
        wait_for(lambda: _state(client, path) == "running", timeout=60, what="running again")
        os.killpg(proc.pid, signal.SIGKILL)        # gone for good: crashed, and it stays so
        wait_for(lambda: _state(client, path) == "crashed", timeout=60, what="crashed for good")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        assert srv.stop() == 0, srv.log.read_text()
