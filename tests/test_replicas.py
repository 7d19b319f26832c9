"""Two ``runstream server`` replicas on one stream (distinct names, their own DuckDB files, the same
alert webhook): they converge table for table, requests about one server reach that server only,
balanced ones reach both, a third server under a taken name refuses to start, alerts are POSTed
once, and stop / move / delete work through either. Real nats-server, server subprocesses, HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runstream.api import Api
from runstream.broker import NatsServer
from runstream.projector.schema import PUBLIC_TABLES
from runstream.query.client import QueryClient
from runstream.query.errors import NotFound
from runstream.query.server import read_http_url
from tests.conftest import wait_for
from tests.query_helpers import ServerProc, log_run, start_server, unique
from tests.test_alert_delivery import Webhook


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture(scope="module")
def replicas(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory,
             webhook: Webhook) -> Iterator[list[tuple[ServerProc, str]]]:
    base = tmp_path_factory.mktemp("replicas")
    env = {**os.environ, "RUNSTREAM_NATS_URL": nats_server.url, "RUNSTREAM_RUN_DIR": str(base / "work"),
           "RUNSTREAM_QUIET": "1", "RUNSTREAM_HTTP_PORT": "0", "RUNSTREAM_ALERT_WEBHOOK_URL": webhook.url,
           "RUNSTREAM_ALERT_ATTEMPTS": "2", "RUNSTREAM_ALERT_BACKOFF": "0.05", "RUNSTREAM_ALERT_TIMEOUT": "5"}
    out = []
    try:
        for i in range(2):
            srv = start_server(nats_server, base / f"r{i}", {**env, "RUNSTREAM_DIR": str(base / f"r{i}" / "data")})
            url = read_http_url(srv.dir, srv.proc.pid)
            assert url
            out.append((srv, url))
        yield out
    finally:
        for srv, _ in out:
            assert srv.stop() == 0, srv.log.read_text()


@pytest.fixture
def env(replicas: list[tuple[ServerProc, str]], rs_env: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.delenv("RUNSTREAM_SERVER_NAME", raising=False)
    monkeypatch.delenv("RUNSTREAM_API_URL", raising=False)
    return rs_env


def client(srv: ServerProc) -> QueryClient:
    return QueryClient(srv.settings.replace(server_name=srv.name))


def table_hashes(srv: ServerProc, last: int) -> tuple[int, dict[str, Any]]:
    """``(projected seq, {table: (rows, hash)})`` of one replica, in one consistent answer each."""
    c = client(srv)
    hashes: dict[str, Any] = {}
    seqs = set()
    for table in PUBLIC_TABLES:
        r = c.sql(f"SELECT count(*) AS n, sum(hash(t))::VARCHAR AS h FROM {table} t", wait_seq=last,
                  server=srv.name, timeout=60)
        seqs.add(r.projected_seq)
        row = r.to_pylist()[0]
        hashes[table] = (row["n"], row["h"])
    return (seqs.pop() if len(seqs) == 1 else -1), hashes


def test_replicas_converge_table_for_table(replicas: list[tuple[ServerProc, str]], env: dict[str, str]) -> None:
    entity = unique("conv")
    for _ in range(2):
        log_run(entity, "p", steps=20)
    (a, _), (b, _) = replicas
    last = client(a).stream_last_seq()

    def same() -> Any:
        seq_a, ha = table_hashes(a, last)
        seq_b, hb = table_hashes(b, last)
        return seq_a == seq_b >= last and ha == hb and ha

    hashes = wait_for(same, timeout=120, interval=0.5, what="both replicas at one position with the same tables")
    assert hashes["runs"][0] >= 2 and hashes["history"][0] >= 40
    rows = client(a).sql(f"SELECT count(*) AS n FROM history h JOIN runs r USING (run_uid) "
                         f"WHERE r.entity = '{entity}'", server=a.name).to_pylist()
    assert rows == [{"n": 40 * 2}]  # loss and acc, 20 steps, 2 runs


def test_requests_about_one_server_reach_it_only(replicas: list[tuple[ServerProc, str]], env: dict[str, str]) -> None:
    (a, _), (b, _) = replicas
    for srv in (a, b):
        for _ in range(5):
            h = client(srv).health()
            assert (h["name"], h["pid"]) == (srv.name, srv.proc.pid)
    seen: list[tuple[int, int]] = []
    status = client(a).replay(lambda done, total: seen.append((done, total)))
    assert status["error"] is None and status["finished_at"] is not None
    assert seen and seen[-1][0] == status["projected_seq"]
    # the replay ran on A, its progress came from A: B never replayed
    assert client(a).health()["replay"]["finished_at"] == status["finished_at"]
    assert client(b).health()["replay"] == {"running": False, "done": 0, "total": 0, "error": None,
                                            "finished_at": None, "projected_seq": None}


def test_a_second_server_under_a_taken_name_refuses_to_start(replicas: list[tuple[ServerProc, str]],
                                                             nats_server: NatsServer, tmp_path: Path) -> None:
    (a, _), _ = replicas
    proc = subprocess.run([sys.executable, "-m", "runstream.query.server", "--dir", str(tmp_path / "dup"),
                           "--nats-url", nats_server.url, "--name", a.name, "--http-port", "-1"],
                          env={**os.environ, "RUNSTREAM_QUIET": "1"}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"a runstream server named '{a.name}' is already running (pid {a.proc.pid}" in proc.stderr
    assert "give this one another name" in proc.stderr
    assert client(a).health()["pid"] == a.proc.pid  # the first one is untouched


def test_queries_are_balanced_across_replicas(replicas: list[tuple[ServerProc, str]], env: dict[str, str]) -> None:
    (a, _), (b, _) = replicas
    c = QueryClient(a.settings.replace(server_name="main"))  # no server name configured
    answered = {c.sql("SELECT 42 AS x").server for _ in range(60)}
    assert {a.name, b.name} <= answered
    assert c.sql("SELECT 42 AS x").to_pylist() == [{"x": 42}]


def test_alerts_are_sent_once_with_two_replicas(replicas: list[tuple[ServerProc, str]], env: dict[str, str],
                                                webhook: Webhook) -> None:
    import runstream

    entity = unique("once")
    run = runstream.init(entity=entity, project="a", id="r1")
    for i in range(10):
        run.alert(f"alert {i}", f"text {i}", wait_duration=0)
    run.finish()
    path = f"{entity}/a/r1"
    q = (f"SELECT d.alert_id, d.sink, d.status, d.attempts FROM alert_deliveries d JOIN runs r USING (run_uid) "
         f"WHERE r.path = '{path}' ORDER BY ALL")

    def settled(srv: ServerProc) -> Any:
        rows = client(srv).sql(q, server=srv.name).to_pylist()
        return len(rows) == 10 and all(r["status"] == "delivered" for r in rows) and rows

    recorded = [wait_for(lambda s=srv: settled(s), timeout=90, what=f"deliveries recorded on {srv.name}")
                for srv, _ in replicas]
    assert recorded[0] == recorded[1]
    assert all((r["sink"], r["attempts"]) == ("webhook", 1) for r in recorded[0])
    titles = sorted(h["runstream"]["title"] for h in webhook.of(path))
    assert titles == sorted(f"alert {i}" for i in range(10))  # each POSTed once, not once per replica


TRAIN = """
import runstream, sys, time
run = runstream.init(entity=sys.argv[1], project="p", id=sys.argv[2])
print("ready", flush=True)
for i in range(1_000_000):
    run.log({"loss": 1.0 / (i + 1)})
    time.sleep(0.01)
"""


def _visible(api: Api, path: str) -> Any:
    def get() -> Any:
        try:
            return api.run(path)
        except NotFound:
            return None
    return wait_for(get, timeout=60, what=f"run {path}")


def _gone(api: Api, path: str) -> bool:
    try:
        api.run(path)
    except NotFound:
        return True
    return False


def test_stop_move_delete_through_either_replica(replicas: list[tuple[ServerProc, str]], env: dict[str, str],
                                                 tmp_path: Path) -> None:
    (a, url_a), (b, url_b) = replicas
    api_a, api_b = Api(base_url=url_a), Api(base_url=url_b)
    entity = unique("life")
    proc = subprocess.Popen([sys.executable, "-u", "-c", textwrap.dedent(TRAIN), entity, "live"], env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        _visible(api_a, f"{entity}/p/live")
        assert _visible(api_b, f"{entity}/p/live").stop()["projected"] is True  # stopped through B
        _, err = proc.communicate(timeout=90)
        assert proc.returncode in (-signal.SIGINT, 130, 1) and "KeyboardInterrupt" in err, err
        wait_for(lambda: api_a.run(f"{entity}/p/live").state == "killed", timeout=60, what="killed, seen on A")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    moved = log_run(entity, "p", steps=2).split("/")[-1]
    _visible(api_b, f"{entity}/p/{moved}")
    _visible(api_a, f"{entity}/p/{moved}").move("q")  # moved through A, seen on B
    assert _visible(api_b, f"{entity}/q/{moved}").project == "q"
    wait_for(lambda: _gone(api_b, f"{entity}/p/{moved}"), timeout=60, what="the old path gone on B")

    api_b.run(f"{entity}/q/{moved}").delete()  # deleted through B, gone on A
    wait_for(lambda: _gone(api_a, f"{entity}/q/{moved}"), timeout=60, what="the deleted run gone on A")
    for srv in (a, b):
        assert client(srv).sql(f"SELECT count(*) AS n FROM runs WHERE entity = '{entity}' AND run_id = '{moved}'",
                               wait_seq=client(srv).stream_last_seq(), server=srv.name).to_pylist() == [{"n": 0}]


def test_two_reapers_record_one_crash_per_heartbeat_lapse(nats_server: NatsServer, rs_env: dict[str, str],
                                                          tmp_path: Path) -> None:
    import time

    import anyio

    import runstream
    from runstream.broker.jetstream import connect
    from runstream.broker.names import STREAM, run_subject
    from runstream.projector import Projector, Reaper

    entity = unique("reap")
    run = runstream.init(entity=entity, project="p", id="r1")
    run.log({"loss": 1.0})
    projector = Projector(tmp_path / "p.duckdb", nats_server.url)
    try:
        anyio.run(projector.catch_up, 60.0)
        cur = projector.cursor()
        uid = cur.execute("SELECT run_uid FROM runs WHERE entity = ?", [entity]).fetchone()[0]
        cur.close()

        async def both_reap() -> tuple[list[str], list[str], int]:
            nc = await connect(nats_server.url)
            try:
                js = nc.jetstream()

                async def publish(subject: str, payload: bytes, headers: dict[str, str]) -> Any:
                    return await js.publish(subject, payload, headers=headers)

                later = time.time() + 10_000  # every running run has lapsed by then
                reapers = [Reaper(projector.cursor, publish, crash_timeout=300, clock=lambda: later) for _ in range(2)]
                first, second = await reapers[0].tick(), await reapers[1].tick()
                info = await js.stream_info(STREAM, subjects_filter=run_subject(entity, uid, "crashed"))
                return first, second, sum((info.state.subjects or {}).values())
            finally:
                await nc.close()

        first, second, crashed = anyio.run(both_reap)
        assert uid in first and uid in second  # both decided...
        assert crashed == 1  # ...and the stream kept one decision (same Nats-Msg-Id)
    finally:
        projector.close()
        run.finish()


def test_two_servers_started_at_once_under_one_name_never_both_run(nats_server: NatsServer, tmp_path: Path) -> None:
    name = unique("twin")
    procs = [subprocess.Popen([sys.executable, "-m", "runstream.query.server", "--dir", str(tmp_path / f"s{i}"),
                               "--nats-url", nats_server.url, "--name", name, "--http-port", "-1"],
                              env={**os.environ, "RUNSTREAM_QUIET": "1"}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        def settled() -> bool:
            return all(p.poll() is not None or (tmp_path / f"s{i}" / "server.ready").exists()
                       for i, p in enumerate(procs))

        wait_for(settled, timeout=120, what="both servers started or refused")
        running = [p for p in procs if p.poll() is None]
        assert len(running) <= 1
        for p in procs:
            if p not in running:
                _, err = p.communicate(timeout=30)
                assert p.returncode == 2 and f"named '{name}'" in err and "--name" in err, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
            p.communicate(timeout=30)
