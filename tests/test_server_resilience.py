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
