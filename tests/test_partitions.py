"""Partitions: ``runstream server --entities a`` and ``--entities b`` on one stream each project only
their entity, measure their lag from their consumer's pending count, and answer for it wherever a
request comes in (the Python ``Api`` over either server's HTTP API, the NATS RPC); an entity no
server holds is a clear error naming it. A nats-server of this module alone, so that no server of
every entity (which would answer for any entity) runs on it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from runstream.api import Api
from runstream.broker import NatsServer
from runstream.broker.names import STREAM
from runstream.projector import Projector
from runstream.projector.source import StreamSource, entity_subjects
from runstream.query.client import QueryClient
from runstream.query.errors import NoServerForEntity, ServerUnavailable
from runstream.query.server import partition_from, read_http_url
from tests.conftest import wait_for
from tests.query_helpers import ServerProc, log_run, start_server, unique

A, B, NOBODY = unique("part-a"), unique("part b"), unique("nobody")  # a space: entities are encoded


@pytest.fixture(scope="module")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    base = tmp_path_factory.mktemp("partnats")
    srv = NatsServer(base / "js", log_file=base / "nats.log")
    srv.start()
    yield srv
    srv.kill()


@pytest.fixture(scope="module")
def runs(nats: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two runs of A, one of B, one of an entity nobody holds: run ids by entity."""
    base = tmp_path_factory.mktemp("partsdk")
    mp = pytest.MonkeyPatch()
    for k, v in {"RUNSTREAM_NATS_URL": nats.url, "RUNSTREAM_DIR": str(base / "sdk"),
                 "RUNSTREAM_RUN_DIR": str(base / "work"), "RUNSTREAM_QUIET": "1"}.items():
        mp.setenv(k, v)
    try:
        out = {}
        for entity, steps in ((A, 3), (B, 4), (A, 2), (NOBODY, 1)):
            out.setdefault(entity, log_run(entity, "p", steps=steps).split("/")[-1])
        return out
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def partitions(nats: NatsServer, runs: dict[str, str],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[ServerProc, str]]]:
    base = tmp_path_factory.mktemp("partitions")
    env = {**os.environ, "RUNSTREAM_NATS_URL": nats.url, "RUNSTREAM_QUIET": "1", "RUNSTREAM_HTTP_PORT": "0"}
    out: dict[str, tuple[ServerProc, str]] = {}
    try:
        for entity in (A, B):
            d = base / f"srv{len(out)}"
            srv = start_server(nats, d, {**env, "RUNSTREAM_DIR": str(d / "data"), "RUNSTREAM_SERVER_ENTITIES": entity})
            url = read_http_url(srv.dir, srv.proc.pid)
            assert url
            out[entity] = (srv, url)
        yield out
    finally:
        for srv, _ in out.values():
            assert srv.stop() == 0, srv.log.read_text()


def named(srv: ServerProc) -> QueryClient:
    return QueryClient(srv.settings.replace(server_name=srv.name))


def test_each_partition_projects_only_its_entity(partitions: dict[str, tuple[ServerProc, str]],
                                                 runs: dict[str, str]) -> None:
    for entity, (srv, _) in partitions.items():
        c = named(srv)
        last = c.stream_last_seq()
        got = c.sql("SELECT DISTINCT entity FROM runs", wait_seq=last, server=srv.name)
        assert got.to_pylist() == [{"entity": entity}]
        h = wait_for(lambda c=c: (h := c.health())["lag"] == 0 and h, timeout=60, what="lag 0")
        assert h["entities"] == [entity] and h["filter_subjects"] == entity_subjects([entity])
        # caught up with the whole stream, although the last events are other entities'
        assert h["position"] == h["stream_last_seq"] == last and h["projected_seq"] < last


def test_requests_reach_the_server_holding_the_entity(partitions: dict[str, tuple[ServerProc, str]],
                                                      runs: dict[str, str]) -> None:
    (srv_a, url_a), (srv_b, url_b) = partitions[A], partitions[B]
    for url in (url_a, url_b):  # whichever server the Api talks to
        api = Api(base_url=url)
        for entity, steps in ((A, 3), (B, 4)):
            run = api.run(f"{entity}/p/{runs[entity]}")
            assert (run.entity, run.state) == (entity, "finished")
            assert list(run.history(pandas=False).column("_step").to_pylist()) == list(range(steps))
        assert [r.id for r in api.runs(f"{B}/p")] == [runs[B]]
        assert len(api.runs(f"{A}/p")) == 2
    c = QueryClient(srv_a.settings)
    for entity, srv in ((A, srv_a), (B, srv_b)):
        for _ in range(3):
            got = c.sql("SELECT count(*) AS n FROM runs", entity=entity, wait_seq=c.stream_last_seq())
            assert (got.server, got.to_pylist()) == (srv.name, [{"n": 2 if entity == A else 1}])
    # SQL over the HTTP API with an entity goes to its holder
    api = Api(base_url=url_a)
    assert api.sql("SELECT DISTINCT entity FROM runs", pandas=False, entity=B).to_pylist() == [{"entity": B}]


def test_an_entity_nobody_holds_is_a_clear_error(partitions: dict[str, tuple[ServerProc, str]],
                                                 runs: dict[str, str]) -> None:
    (srv_a, url_a) = partitions[A]
    with pytest.raises(NoServerForEntity, match=f"no runstream server holds entity '{NOBODY}'"):
        Api(base_url=url_a).run(f"{NOBODY}/p/{runs[NOBODY]}")
    with pytest.raises(NoServerForEntity, match=f"no runstream server holds entity '{NOBODY}'"):
        QueryClient(srv_a.settings).sql("SELECT 1", entity=NOBODY)
    # SQL over every entity needs a server of every entity: none here
    with pytest.raises(ServerUnavailable, match="no runstream server holding every entity"):
        QueryClient(srv_a.settings).sql("SELECT 1")
    with pytest.raises(NoServerForEntity, match="no server holding every entity is running"):
        Api(base_url=url_a).sql("SELECT 1")


def test_lag_is_the_consumers_pending_count(nats: NatsServer, runs: dict[str, str]) -> None:
    async def pending_after_one() -> tuple[int, int]:
        from runstream.broker.jetstream import connect

        nc = await connect(nats.url)
        try:
            js = nc.jetstream()
            info = await js.stream_info(STREAM, subjects_filter=entity_subjects([A])[0])
            of_a = sum((info.state.subjects or {}).values())
            source = StreamSource(js, filter_subjects=entity_subjects([A]), batch_size=1)
            async for recs in source.batches(1):
                if recs:
                    assert all(r.subject.startswith(f"rs.{A}.run.") for r in recs)
                    return of_a, int(source.pending or 0)
            raise AssertionError("no events")
        finally:
            await nc.close()

    of_a, pending = anyio.run(pending_after_one)
    assert of_a > 2 and pending == of_a - 1  # B's and the others' events do not count


def test_a_changed_partition_rebuilds_the_file(nats: NatsServer, runs: dict[str, str], tmp_path: Path) -> None:
    def entities_in(p: Projector) -> list[str]:
        cur = p.cursor()
        try:
            return [r[0] for r in cur.execute("SELECT DISTINCT entity FROM runs ORDER BY 1").fetchall()]
        finally:
            cur.close()

    db = tmp_path / "p.duckdb"
    p = Projector(db, nats.url, entities=[A])
    try:
        anyio.run(p.catch_up, 60.0)
        assert entities_in(p) == [A] and p.lag() == 0 and p.position >= p.projected_seq
    finally:
        p.close()
    p = Projector(db, nats.url, entities=[A, B])
    try:
        assert p.projected_seq == 0  # rebuilt: B's earlier events would be missing otherwise
        anyio.run(p.catch_up, 60.0)
        assert entities_in(p) == sorted([A, B])
    finally:
        p.close()


def test_partition_options() -> None:
    assert partition_from("a, b,a", None, env={}) == (("a", "b"), None)
    assert partition_from(None, None, env={"RUNSTREAM_SERVER_ENTITIES": "x"}) == (("x",), None)
    assert partition_from(None, "rs.a.run.*.*", env={}) == (None, ("rs.a.run.*.*",))
    assert partition_from(None, None, env={}) == (None, None)
    with pytest.raises(SystemExit, match="not a subject of the event stream"):
        partition_from(None, "foo.bar", env={})


def test_rpc_subjects_route_by_server_entity_or_any() -> None:
    from runstream.query import protocol
    from runstream.query.forward import entity_of_path
    from runstream.query.rpc import shared_subjects

    assert protocol.subject("main", "health") == "rsctl.q.main.health"
    assert protocol.any_subject("sql") == "rsctl.qa.sql"
    assert protocol.entity_subject("a b", "http") == "rsctl.qe.a=20b.http"
    assert protocol.entity_subject(protocol.ALL_ENTITIES, "sql") == "rsctl.qe.*.sql"
    with pytest.raises(ValueError, match="unknown query op 'replay'"):
        protocol.any_subject("replay")  # a replay concerns one server: never balanced
    assert shared_subjects(["a"]) == [("rsctl.qe.a.sql", "sql"), ("rsctl.qe.a.lineage", "lineage"),
                                      ("rsctl.qe.a.http", "http")]
    assert shared_subjects(None) == [("rsctl.qa.sql", "sql"), ("rsctl.qa.lineage", "lineage"),
                                     ("rsctl.qa.http", "http"), ("rsctl.qe.*.sql", "sql"),
                                     ("rsctl.qe.*.lineage", "lineage"), ("rsctl.qe.*.http", "http")]
    assert shared_subjects([]) == []  # a raw subject filter: no entity requests
    assert entity_of_path("/api/runs/a b/p/r1/history") == "a b"
    assert entity_of_path("/api/ui/projects/e/p/series") == "e"
    assert entity_of_path("/api/artifacts/e/p/model/latest") == "e"
    assert entity_of_path("/api/projects", b"entity=e&x=1") == "e"
    assert entity_of_path("/api/alerts", b"project=p") is None
    assert entity_of_path("/api/health") is None and entity_of_path("/api/sql") is None


def test_live_streams_and_tail_reach_the_holder(partitions: dict[str, tuple[ServerProc, str]], runs: dict[str, str],
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import urllib.request

    from runstream.cli import main

    _, url_a = partitions[A]
    monkeypatch.setenv("RUNSTREAM_API_URL", url_a)  # the a-server's HTTP API, asked about B's run
    capsys.readouterr()
    assert main(["tail", f"{B}/p/{runs[B]}"]) == 0
    out, err = capsys.readouterr()
    assert [line.split()[:2] for line in out.splitlines()] == [["step", str(i)] for i in range(4)]
    assert f"{B}/p/{runs[B]} finished at step 3" in err
    # a stream that never ends by itself: the first event comes through; the client then leaves
    with urllib.request.urlopen(f"{url_a}/api/projects/{urllib.parse.quote(B)}/p/runs/events", timeout=60) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        first = r.readline().decode()
    assert first == "event: run\n"
    assert Api(base_url=url_a).run(f"{B}/p/{runs[B]}").state == "finished"  # still serving
    srv_b, _ = partitions[B]  # and the holder stopped producing the stream nobody reads any more
    wait_for(lambda: named(srv_b).health()["forwarded_in_flight"] == 0, timeout=60, what="the holder's stream ended")


def test_resume_and_fork_ask_the_partition_holding_the_run(partitions: dict[str, tuple[ServerProc, str]],
                                                           runs: dict[str, str], nats: NatsServer,
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No server holds every entity here: ``init(resume=...)`` and ``fork_from`` must reach the
    server of the run's entity for its lineage."""
    import runstream

    for k, v in {"RUNSTREAM_NATS_URL": nats.url, "RUNSTREAM_DIR": str(tmp_path / "sdk"),
                 "RUNSTREAM_RUN_DIR": str(tmp_path / "work"), "RUNSTREAM_QUIET": "1"}.items():
        monkeypatch.setenv(k, v)
    run_id = runs[B]
    run = runstream.init(entity=B, project="p", id=run_id, resume="must")
    assert run.step == 4  # it logged steps 0-3
    run.log({"loss": 0.1})
    run.finish()
    fork = runstream.init(entity=B, project="p", fork_from=f"{run_id}?_step=2")
    fork.log({"loss": 0.2})
    fork.finish()
    srv, _ = partitions[B]
    rows = named(srv).sql(f"SELECT max(step) FROM history h JOIN runs r USING (run_uid) "
                          f"WHERE r.run_id = '{fork.id}' AND h.key = 'loss'", wait_seq=named(srv).stream_last_seq(),
                          entity=B)
    assert rows.to_pylist() == [{"max(step)": 3}]
