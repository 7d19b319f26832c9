"""The server over NATS request/reply: a real nats-server, a real server process, real DuckDB."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from runstream.broker import NatsServer
from runstream.query import protocol
from runstream.query.client import QueryClient
from runstream.query.errors import (
    ProjectionLagging,
    QueryError,
    QueryRefused,
    QueryTimeout,
    ServerUnavailable,
)
from tests.conftest import run_async
from tests.query_helpers import ServerProc, log_run, serve_for_test, unique


@pytest.fixture
def query_server(nats_server: NatsServer, tmp_path: Path, rs_env: dict[str, str],
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerProc]:
    yield from serve_for_test(nats_server, tmp_path, rs_env, monkeypatch)


ENDLESS = "SELECT count(*) FROM range(1000000000) a, range(1000000000) b"


def test_sql_round_trip_sees_a_finished_run(query_server: ServerProc) -> None:
    client = QueryClient(query_server.settings)
    entity = unique("rpc")
    path = log_run(entity, "proj", steps=7)
    res = client.sql(f"SELECT path, state, last_step FROM runs WHERE entity = '{entity}'",
                     wait_seq=client.stream_last_seq())
    assert res.to_pylist() == [{"path": path, "state": "finished", "last_step": 6}]
    assert not res.truncated and res.projected_seq >= 1
    hist = client.sql("SELECT count(*) AS n FROM history h JOIN runs r USING (run_uid) "
                      f"WHERE r.entity = '{entity}'")
    assert hist.to_pylist() == [{"n": 14}]


def test_row_cap_and_truncated(query_server: ServerProc) -> None:
    res = QueryClient(query_server.settings).sql("SELECT * FROM range(100) t(i)", max_rows=10)
    assert res.num_rows == 10 and res.truncated
    assert res.table.column("i").to_pylist() == list(range(10))


def test_refused_and_failed_queries_keep_the_server_up(query_server: ServerProc) -> None:
    client = QueryClient(query_server.settings)
    with pytest.raises(QueryRefused, match="COPY"):
        client.sql("COPY runs TO '/tmp/runstream-should-not-exist.csv'")
    with pytest.raises(QueryRefused, match="file, network"):
        client.sql("SELECT * FROM read_csv('/etc/passwd')")
    with pytest.raises(QueryRefused, match="ATTACH"):
        client.sql("ATTACH '/tmp/other.duckdb'")
    with pytest.raises(QueryRefused, match="SET"):
        client.sql("SET enable_external_access = true")
    with pytest.raises(QueryError, match="syntax error"):
        client.sql("SELEKT 1")
    with pytest.raises(QueryError, match="no_such_table"):
        client.sql("SELECT * FROM no_such_table")
    assert client.sql("SELECT 1 AS one").to_pylist() == [{"one": 1}]


def test_endless_query_is_interrupted_and_others_are_served_meanwhile(query_server: ServerProc) -> None:
    client = QueryClient(query_server.settings)

    async def both() -> tuple[object, float]:
        import asyncio

        slow = asyncio.create_task(asyncio.to_thread(_expect_timeout, client))
        await asyncio.sleep(0)  # the slow one goes first
        t0 = time.monotonic()
        health = await asyncio.to_thread(client.health)
        fast = time.monotonic() - t0
        await slow
        return health, fast

    health, fast = run_async(both())
    assert isinstance(health, dict) and fast < 2.0


def _expect_timeout(client: QueryClient) -> None:
    t0 = time.monotonic()
    with pytest.raises(QueryTimeout, match="time limit of 2s"):
        client.sql(ENDLESS, timeout=2)
    assert time.monotonic() - t0 < 10


def test_wait_seq_beyond_the_stream_reports_lagging(query_server: ServerProc) -> None:
    client = QueryClient(query_server.settings)
    last = client.stream_last_seq()
    with pytest.raises(ProjectionLagging, match=f"sequence {last + 1000}"):
        client.sql("SELECT 1", wait_seq=last + 1000, timeout=0.5)


def test_health_reports_position_and_process(query_server: ServerProc) -> None:
    client = QueryClient(query_server.settings)
    log_run(unique("health"), "p", steps=2)
    last = client.stream_last_seq()
    client.sql("SELECT 1", wait_seq=last)
    h = client.health()
    assert h["name"] == query_server.name and h["pid"] == query_server.proc.pid
    assert h["db_path"] == str(query_server.dir / "runstream.duckdb")
    assert h["stream_last_seq"] >= last and h["projected_seq"] >= last
    assert h["lag"] == max(h["stream_last_seq"] - h["projected_seq"], 0)
    assert h["uptime_s"] > 0 and h["replay"]["running"] is False


def test_replay_rebuilds_the_same_tables(query_server: ServerProc) -> None:
    client = QueryClient(query_server.settings)
    entity = unique("replay")
    log_run(entity, "p", steps=3)
    q = f"SELECT r.path, h.step, h.key, h.value FROM history h JOIN runs r USING (run_uid) " \
        f"WHERE r.entity = '{entity}' ORDER BY ALL"
    before = client.sql(q, wait_seq=client.stream_last_seq()).to_pylist()
    seen: list[tuple[int, int]] = []
    status = client.replay(lambda done, total: seen.append((done, total)))
    assert status["error"] is None and status["projected_seq"] >= client.stream_last_seq() - 10
    assert seen and seen[-1][0] == status["projected_seq"]
    assert client.sql(q).to_pylist() == before
    assert len(before) == 6


def test_no_server_of_that_name(query_server: ServerProc) -> None:
    # health and replay concern one named server (SQL goes to any server: tests/test_replicas.py)
    nobody = unique("nobody")
    client = QueryClient(query_server.settings.replace(server_name=nobody))
    t0 = time.monotonic()
    with pytest.raises(ServerUnavailable, match=f"no runstream server named '{nobody}'"):
        client.health()
    with pytest.raises(ServerUnavailable, match=f"no runstream server named '{nobody}'"):
        client.sql("SELECT 1", server=nobody)
    assert time.monotonic() - t0 < 5


def test_unreachable_nats() -> None:
    from runstream.broker import free_port
    from runstream.settings import Settings

    client = QueryClient(Settings(nats_url=f"nats://127.0.0.1:{free_port()}"))
    with pytest.raises(ServerUnavailable, match="cannot reach NATS"):
        client.health()


def test_garbage_request_gets_an_error_reply(query_server: ServerProc) -> None:
    async def ask() -> dict[str, object]:
        nc = await nats.connect(query_server.settings.nats_url)
        try:
            msg = await nc.request(protocol.subject(query_server.name, "sql"), b"\xc1garbage", timeout=5)
            return protocol.decode(msg.data)
        finally:
            await nc.close()

    reply = run_async(ask())
    assert reply["ok"] is False and "bad sql request" in str(reply["error"])


def test_sigint_stops_the_server_cleanly(query_server: ServerProc) -> None:
    import signal

    assert query_server.stop(signal.SIGINT) == 0
    assert not query_server.ready_path.exists()
