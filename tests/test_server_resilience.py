"""``runstream server`` outlives its broker: a nats-server SIGKILLed under a running server, and a
server started before its nats-server. Real processes: the wheel's nats-server on a free port (the
same port and store when it comes back), a server subprocess with its HTTP API, DuckDB files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from runstream.broker import NatsServer
from runstream.query.server import read_http_url
from tests.conftest import wait_for
from tests.query_helpers import ServerProc, log_run, start_server, unique


def get(url: str, timeout: float = 30.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def _env(nats: NatsServer, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "RUNSTREAM_NATS_URL": nats.url, "RUNSTREAM_DIR": str(tmp_path / "data"),
            "RUNSTREAM_RUN_DIR": str(tmp_path / "work"), "RUNSTREAM_QUIET": "1", "RUNSTREAM_HTTP_PORT": "0"}


def _sdk_env(nats: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {"RUNSTREAM_NATS_URL": nats.url, "RUNSTREAM_DIR": str(tmp_path / "sdk"),
                 "RUNSTREAM_RUN_DIR": str(tmp_path / "work"), "RUNSTREAM_QUIET": "1"}.items():
        monkeypatch.setenv(k, v)


def _runs(url: str, entity: str) -> list[str]:
    return sorted(r["run_id"] for r in get(f"{url}/api/projects/{entity}/p/runs")["runs"])


def test_server_survives_nats_killed_and_restarted(own_nats: NatsServer, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _sdk_env(own_nats, tmp_path, monkeypatch)
    srv = start_server(own_nats, tmp_path, _env(own_nats, tmp_path))
    try:
        url = read_http_url(srv.dir, srv.proc.pid)
        assert url
        entity = unique("resil")
        first = log_run(entity, "p", steps=3).split("/")[-1]
        wait_for(lambda: _runs(url, entity) == [first], timeout=60, what="the first run projected")
        before = wait_for(lambda: (h := get(f"{url}/api/health"))["lag"] == 0 and h, timeout=60,
                          what="the projection caught up")
        assert before["broker"]["connected"] is True and before["broker"]["failing"] == []
        assert before["position"] == before["stream_last_seq"] == before["projected_seq"]

        own_nats.kill()
        down = wait_for(lambda: (h := get(f"{url}/api/health"))["broker"]["connected"] is False and h,
                        timeout=60, what="health reporting the broker down")
        assert down["broker"]["last_error"] and down["stream_last_seq"] == before["stream_last_seq"]
        assert down["projected_seq"] == before["projected_seq"]
        # reads are answered from the DuckDB file, fresh ones too (they cannot wait for the log)
        assert _runs(url, entity) == [first]
        rows = get(f"{url}/api/runs/{entity}/p/{first}/history?fresh=true")["rows"]
        assert [r["_step"] for r in rows] == [0, 1, 2]
        assert srv.proc.poll() is None

        own_nats.start()  # same port, same store: the stream is still there
        wait_for(lambda: get(f"{url}/api/health")["broker"]["connected"] is True, timeout=60,
                 what="health reporting the broker back")
        second = log_run(entity, "p", steps=2).split("/")[-1]
        wait_for(lambda: _runs(url, entity) == sorted([first, second]), timeout=90,
                 what="a run logged after the restart projected")
        after = get(f"{url}/api/health")
        assert after["broker"]["connected"] is True and after["projected_seq"] > before["projected_seq"]
        assert srv.proc.poll() is None
    finally:
        code = srv.stop()
    assert code == 0, srv.log.read_text()
    text = srv.log.read_text()
    assert "lost the connection to NATS" in text
    assert text.count("lost the connection to NATS") == 1  # one line per outage, not one per attempt


def test_server_started_before_nats_waits_for_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nats = NatsServer(tmp_path / "js", log_file=tmp_path / "nats.log")  # a port, nothing listening yet
    env = {**_env(nats, tmp_path), "RUNSTREAM_SERVER_NAME": unique("early")}
    data = tmp_path / "srv"
    log = tmp_path / "server.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "runstream.query.server", "--dir", str(data),
                                 "--nats-url", nats.url, "--name", env["RUNSTREAM_SERVER_NAME"]],
                                env=env, stdout=fh, stderr=fh, stdin=subprocess.DEVNULL)
    srv = ServerProc(proc, env["RUNSTREAM_SERVER_NAME"], data, None, log)  # type: ignore[arg-type]
    try:
        wait_for(lambda: "connecting to NATS at" in log.read_text(), timeout=60, what="the retry logged")
        assert proc.poll() is None and not srv.ready_path.exists()
        nats.start()
        wait_for(lambda: srv.ready_path.exists(), timeout=90, what="the server ready once NATS is up")
        assert proc.poll() is None
        url = read_http_url(data, proc.pid)
        assert url
        _sdk_env(nats, tmp_path, monkeypatch)
        entity = unique("early")
        rid = log_run(entity, "p", steps=2).split("/")[-1]
        wait_for(lambda: _runs(url, entity) == [rid], timeout=60, what="the run projected")
        h = wait_for(lambda: (h := get(f"{url}/api/health"))["lag"] == 0 and h, timeout=60, what="lag 0")
        assert h["broker"]["connected"] is True and h["broker"]["failing"] == []
    finally:
        code = srv.stop()
        nats.kill()
    assert code == 0, log.read_text()
    text = log.read_text()
    assert text.count("failed (") == 1, text  # the connect failures: one line, then its recovery
    assert "recovered after" in text


TRAINER = """
import runstream, sys, time
run = runstream.init(entity=sys.argv[1], project="p", id="r1")
print("ready", flush=True)
for step in range(int(sys.argv[2])):
    run.log({"loss": step / 2})
    time.sleep(0.002)
run.finish()
print("done", flush=True)
"""


@pytest.mark.slow
def test_server_survives_stream_leader_kills_on_a_cluster(nats_cluster: Any, tmp_path: Path) -> None:
    """Three SIGKILLs of the event stream's leader (each node restarted before the next kill),
    one of them the node the server is connected to: the server never exits and projects every
    step exactly once."""
    from runstream.broker.names import STREAM

    c = nats_cluster
    steps = 3000
    env = {**os.environ, "RUNSTREAM_NATS_URL": c.url_list, "RUNSTREAM_STREAM_REPLICAS": "3",
           "RUNSTREAM_DIR": str(tmp_path / "data"), "RUNSTREAM_QUIET": "1", "RUNSTREAM_HTTP_PORT": "0",
           "RUNSTREAM_RUN_DIR": str(tmp_path / "work"), "RUNSTREAM_CONSOLE": "off", "RUNSTREAM_STATS_INTERVAL": "0",
           "RUNSTREAM_CODE_SNAPSHOT": "0", "RUNSTREAM_FINISH_TIMEOUT": "600"}
    name = unique("clu")
    data = tmp_path / "srv"
    log = tmp_path / "server.log"
    with open(log, "ab") as fh:  # the server's connection goes to the first node of its list: n1
        proc = subprocess.Popen([sys.executable, "-m", "runstream.query.server", "--dir", str(data),
                                 "--nats-url", c.url_list, "--name", name], env=env, stdout=fh, stderr=fh,
                                stdin=subprocess.DEVNULL)
    srv = ServerProc(proc, name, data, None, log)  # type: ignore[arg-type]
    trainer = None
    try:
        wait_for(lambda: srv.ready_path.exists() or proc.poll() is not None, timeout=120, what="server ready")
        assert proc.poll() is None, log.read_text()
        url = read_http_url(data, proc.pid)
        assert url
        entity = unique("clu")
        trainer = subprocess.Popen([sys.executable, "-u", "-c", TRAINER, entity, str(steps)],
                                   env={**env, "RUNSTREAM_NATS_URL": c.rotated_url_list(1)}, cwd=tmp_path,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert trainer.stdout is not None and trainer.stdout.readline().strip() == "ready"
        victims = []
        for kill in range(3):
            leader = c.wait_for(lambda: c.stream_leader(STREAM), "a leader of the event stream")
            victim = 0 if kill == 1 else c.index_of(leader)  # the second kill: the server's own node
            victims.append(victim)
            c.kill(victim)
            c.wait_for(lambda v=victim: (ld := c.stream_leader(STREAM)) and c.index_of(ld) != v,
                       "a new leader of the event stream")
            assert proc.poll() is None, log.read_text()
            c.restart(victim)
            c.wait_for(lambda v=victim: c.replica_current(STREAM, c.nodes[v].name), "the node current again")
        out, err = trainer.communicate(timeout=600)
        assert trainer.returncode == 0 and out.strip().endswith("done"), err
        got = wait_for(lambda: (rows := get(f"{url}/api/runs/{entity}/p/r1/history?keys=loss&fresh=true")["rows"])
                       and len(rows) == steps and rows, timeout=300, interval=0.5, what="every step projected")
        assert [r["_step"] for r in got] == list(range(steps))
        assert sum(r["loss"] for r in got) == sum(s / 2 for s in range(steps))
        h = wait_for(lambda: (h := get(f"{url}/api/health"))["lag"] == 0 and h, timeout=120, what="lag 0")
        assert h["broker"]["connected"] is True and proc.poll() is None
    finally:
        if trainer is not None and trainer.poll() is None:
            trainer.kill()
            trainer.wait()
        code = srv.stop()
    assert code == 0, log.read_text()


def test_the_broker_link_logs_one_line_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    from runstream.projector.resilience import BrokerLink, backoff_delays

    now = [100.0]
    link = BrokerLink("nats://x:1", clock=lambda: now[0])
    link.set_connected(True, "nats://x:1")
    with caplog.at_level("INFO", logger="runstream.broker.link"):
        for _ in range(5):
            link.failed("reading the event stream", TimeoutError("nats: timeout"))
            now[0] += 1
        assert link.failing == ["reading the event stream"]
        link.ok("reading the event stream")
        link.ok("reading the event stream")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["reading the event stream failed (TimeoutError: nats: timeout); retrying with backoff "
                     "(broker nats://x:1)",
                     "reading the event stream recovered after 5.0s (5 failed attempts)"]
    assert link.failing == [] and link.last_error == "reading the event stream: TimeoutError: nats: timeout"
    snap = link.snapshot()
    assert (snap["connected"], snap["since"], snap["url"]) == (True, 100.0, "nats://x:1")
    d = backoff_delays(0.2, 1.0)
    assert [next(d) for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]


def test_replicas_a_single_server_cannot_hold_is_a_clear_refusal(own_nats: NatsServer, tmp_path: Path) -> None:
    """Not an outage to wait out: the server says which setting to change and exits."""
    proc = subprocess.run([sys.executable, "-m", "runstream.query.server", "--dir", str(tmp_path / "srv"),
                           "--nats-url", own_nats.url, "--name", unique("r3"), "--http-port", "-1"],
                          env={**os.environ, "RUNSTREAM_STREAM_REPLICAS": "3", "RUNSTREAM_QUIET": "1"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert (f"RUNSTREAM_STREAM_REPLICAS=3 but the NATS server at {own_nats.url} is not part of a cluster"
            in proc.stderr)
    assert "Traceback" not in proc.stderr
