"""The local stack through the CLI: ``up``/``status``/``down`` idempotent, a free port that is not
4222, and concurrent ``up`` from two processes starting one stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runstream import stack
from runstream.cli import main
from runstream.settings import Settings, load_settings
from tests.conftest import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A data dir of this test, no external NATS; the stack is stopped afterwards."""
    monkeypatch.delenv("RUNSTREAM_NATS_URL", raising=False)
    monkeypatch.delenv("RUNSTREAM_SERVER_NAME", raising=False)
    monkeypatch.setenv("RUNSTREAM_DIR", str(tmp_path / "rs"))
    monkeypatch.setenv("RUNSTREAM_QUIET", "1")
    settings = load_settings()
    yield settings
    stack.down(settings)


def _pids(settings: Settings) -> tuple[int | None, int | None]:
    st = stack.status(settings)
    return st.nats_pid, st.server_pid


def _nats_processes(data_dir: Path) -> list[int]:
    """pids of nats-server processes whose config lies in ``data_dir``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat.split(") ", 1)[1][:1] == "Z":
            continue
        if cmd and cmd[0].endswith(b"nats-server") and any(str(data_dir).encode() in c for c in cmd):
            found.append(int(entry.name))
    return found


def test_up_twice_status_down_twice(local: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up"]) == 0
    assert "runstream stack up: nats://127.0.0.1:" in capsys.readouterr().out
    first = _pids(local)
    assert all(first)
    st = stack.status(local)
    assert st.running and st.nats_url and not st.nats_url.endswith(":4222")
    assert (local.dir / "server.ready").read_text().strip() == str(st.server_pid)

    assert main(["up"]) == 0
    assert "already running" in capsys.readouterr().out
    assert _pids(local) == first

    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "stack     running" in out and st.nats_url in out
    assert f"pid {st.server_pid}, alive" in out and str(local.dir / "runstream.duckdb") in out
    assert "projector at stream seq" in out and "(lag 0)" in out

    assert main(["sql", "SELECT count(*) AS n FROM runs"]) == 0
    assert capsys.readouterr().out == "n\n-\n0\n(1 row)\n"

    assert main(["down"]) == 0
    assert "stopped" in capsys.readouterr().out
    assert not stack.status(local).nats_alive and not stack.status(local).server_alive
    assert not (local.dir / "server.ready").exists()
    assert main(["down"]) == 0
    assert "was not running" in capsys.readouterr().out
    assert main(["status"]) == 0
    assert "stack     not running" in capsys.readouterr().out


def test_concurrent_up_starts_one_stack(local: Settings) -> None:
    env = {**os.environ}
    cmd = [sys.executable, "-m", "runstream.cli", "up"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    data = json.loads((local.dir / "stack.json").read_text())
    assert all(f"nats pid {data['nats_pid']}" in out for out, _ in outs)
    assert all(f"server pid {data['server_pid']}" in out for out, _ in outs)
    assert _nats_processes(local.dir) == [data["nats_pid"]]


def test_sql_starts_the_stack_when_needed(local: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert not stack.status(local).running
    assert main(["sql", "SELECT 7 AS x", "--format", "csv"]) == 0
    assert capsys.readouterr().out == "x\n7\n"
    assert stack.status(local).running


def test_up_with_an_external_nats_is_a_clear_error(local: Settings, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RUNSTREAM_NATS_URL", "nats://127.0.0.1:1")
    assert main(["up"]) == 1
    assert "external NATS" in capsys.readouterr().err


RESTART_TRAINER = """
import json, sys
import runstream
from runstream.spool import is_complete

run = runstream.init(entity="e", project="restart", id="r1")
for step in range(1000):
    run.log({"loss": float(step)})
print("half", flush=True)
sys.stdin.readline()          # the parent restarts nats-server meanwhile
for step in range(1000, 2000):
    run.log({"loss": float(step)})
run.finish()
print(json.dumps({"all_acked": is_complete(run.spool_path)}))
"""


@pytest.mark.fault
def test_a_restarted_nats_server_comes_back_on_its_port_and_live_runs_reconnect(
        local: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], fault_report: Any) -> None:
    """SIGKILL the local nats-server under a live run: ``runstream up`` starts it on the same port,
    the run's client reconnects by itself (the finish timeout is far away: it does not just leave
    its events to ``runstream sync``), and the server keeps running and projects all of it."""
    import random
    import socket

    from tests.sdk_helpers import env_with, run_gated

    # not the default 14222 (other stacks on this machine may take it meanwhile), and not a port of
    # the ephemeral range either: the trainer's reconnects to it could take it as their own source
    # port (a TCP self-connect) while the server is down
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(15000, min(low, 30000)), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        local = local.replace(port=port, http_port=0)
        break
    before = stack.up(local)
    data = json.loads((local.dir / "stack.json").read_text())
    env = env_with(dict(os.environ), RUNSTREAM_FINISH_TIMEOUT="600", RUNSTREAM_CONSOLE="off",
                   RUNSTREAM_STATS_INTERVAL="0", RUNSTREAM_CODE_SNAPSHOT="0")

    def restart_nats() -> None:
        os.kill(data["nats_pid"], 9)
        after = stack.up(local)
        assert after.nats_url == before.nats_url and after.nats_pid != before.nats_pid

    out, err = run_gated(RESTART_TRAINER, env, tmp_path, restart_nats)
    assert json.loads(out.strip().splitlines()[-1]) == {"all_acked": True}, err
    assert stack.status(local).server_pid == before.server_pid  # the server rode it out
    capsys.readouterr()
    # the server's own client reconnects on its schedule (nats-py waits between attempts): until it
    # has, its RPC subjects have no responder
    wait_for(lambda: main(["sql", "SELECT count(*) AS n, count(DISTINCT step) AS d, max(step) AS m FROM history "
                           "WHERE key = 'loss'", "--format", "csv"]) == 0,
             timeout=30, interval=0.5, what="the server answering SQL again")
    assert capsys.readouterr().out == "n,d,m\n2000,2000,1999\n"
    fault_report("embedded nats-server SIGKILLed under a live run", "back on its port; run reconnects; 0 lost",
                 "same port; the run reconnected, all acked; 2000 rows, 2000 distinct steps")
