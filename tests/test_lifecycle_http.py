"""Move and delete over the HTTP API in-process (ASGI TestClient), with a real projector, NATS
(the stream, the path bucket) and DuckDB; replays into a second DuckDB file."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from fastapi.testclient import TestClient

from runstream.broker import NatsServer
from runstream.broker.codec import encode_event, envelope
from runstream.broker.errors import RunDeletedError, RunExistsError, RunMovedError
from runstream.broker.miniclient import MiniNats
from runstream.broker.names import STREAM, msg_id, new_run_uid, run_subject, run_subjects
from runstream.query.http import create_app
from runstream.query.server import ServerConfig
from runstream.settings import load_settings
from tests.conftest import wait_for
from tests.query_helpers import log_run, unique


@pytest.fixture
def env(nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for k, v in {"RUNSTREAM_NATS_URL": nats_server.url, "RUNSTREAM_DIR": str(tmp_path / "data"),
                 "RUNSTREAM_RUN_DIR": str(tmp_path / "work"), "RUNSTREAM_QUIET": "1"}.items():
        monkeypatch.setenv(k, v)
    return unique("life")


@pytest.fixture
def client(env: str, nats_server: NatsServer, tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings(env={"RUNSTREAM_DIR": str(tmp_path / "srv")})
    config = ServerConfig(dir=tmp_path / "srv", nats_url=nats_server.url, name=unique("l"), settings=settings)
    with TestClient(create_app(config=config)) as c:
        yield c


@pytest.fixture
def nats(nats_server: NatsServer) -> Iterator[MiniNats]:
    nc = MiniNats(nats_server.url).connect()
    yield nc
    nc.close()


def subjects_of(nc: MiniNats, uid: str) -> dict[str, int]:
    """What the stream holds of one run: message count per subject (a raw stream-info lookup)."""
    info = nc.js_api(f"STREAM.INFO.{STREAM}", {"subjects_filter": run_subjects(uid)})
    return dict(info["state"].get("subjects") or {})


def run_of(client: TestClient, path: str) -> dict[str, Any]:
    resp = client.get(f"/api/runs/{path}", params={"fresh": "true"})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def history_rows(client: TestClient, path: str) -> list[dict[str, Any]]:
    resp = client.get(f"/api/runs/{path}/history", params={"fresh": "true"})
    assert resp.status_code == 200, resp.text
    return list(resp.json()["rows"])


def replayed(tmp_path: Path, url: str, entity: str) -> duckdb.DuckDBPyConnection:
    from runstream.projector import replay_file

    db = tmp_path / f"replay-{time.monotonic_ns()}.duckdb"
    replay_file(db, url)
    return duckdb.connect(str(db), read_only=True)


def test_move_changes_the_path_not_the_events(client: TestClient, env: str, nats: MiniNats,
                                              tmp_path: Path, nats_server: NatsServer) -> None:
    a = log_run(env, "src", steps=6, id="a")
    before = run_of(client, a)
    resp = client.post(f"/api/runs/{a}/move", json={"project": "dst"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["projected"] and [m["to"] for m in resp.json()["moved"]] == [f"{env}/dst/a"]
    gone = client.get(f"/api/runs/{a}")
    assert gone.status_code == 404 and gone.json()["kind"] == "not_found"
    moved = run_of(client, f"{env}/dst/a")
    assert moved["run_uid"] == before["run_uid"] and moved["config"] == before["config"] == {"epochs": 6, "lr": 0.01}
    assert moved["summary"] == before["summary"] and moved["state"] == "finished"
    assert len(history_rows(client, f"{env}/dst/a")) == 6
    uid = before["run_uid"]
    assert set(subjects_of(nats, uid)) == {run_subject(env, uid, k) for k in ("init", "metadata", "log_rows",
                                                                              "file", "finish", "move")}
    # the path bucket: the new path resolves, the old one is reserved for this run only
    assert nats.resolve_path(env, "dst", "a") == uid and nats.resolve_path(env, "src", "a") is None
    with pytest.raises(RunMovedError, match="dst"):
        nats.claim_path(env, "src", "a", new_run_uid())
    # moving back to the old project is allowed (its id was reserved for this run)
    assert client.post(f"/api/runs/{env}/dst/a/move", json={"project": "src"}).status_code == 200
    assert run_of(client, f"{env}/src/a")["run_uid"] == uid
    assert client.post(f"/api/runs/{env}/src/a/move", json={"project": "dst"}).status_code == 200
    con = replayed(tmp_path, nats_server.url, env)
    assert con.execute("SELECT path FROM runs WHERE run_uid = ?", [uid]).fetchall() == [(f"{env}/dst/a",)]
    assert con.execute("SELECT count(DISTINCT step) FROM history WHERE run_uid = ?", [uid]).fetchone() == (6,)


def test_a_taken_path_refuses_the_move_and_changes_nothing(client: TestClient, env: str) -> None:
    a, b = log_run(env, "src", id="a"), log_run(env, "src", id="b")
    log_run(env, "dst", id="b")
    resp = client.post(f"/api/projects/{env}/src/runs/move", json={"project": "dst", "run_ids": ["a", "b"]})
    assert resp.status_code == 409, resp.text
    assert resp.json()["kind"] == "conflict" and f"{env}/dst/b" in resp.json()["error"]
    assert run_of(client, a) and run_of(client, b)  # neither moved
    assert client.get(f"/api/runs/{env}/dst/a").status_code == 404
    assert client.post(f"/api/runs/{env}/src/nope/move", json={"project": "dst"}).status_code == 404
    assert client.post(f"/api/runs/{a}/move", json={"project": "bad/name"}).status_code == 400


def test_bulk_move_by_filter(client: TestClient, env: str) -> None:
    import runstream

    for rid, lr in (("x1", 0.1), ("x2", 0.2), ("x3", 0.001)):
        with runstream.init(entity=env, project="src", id=rid, config={"lr": lr}) as run:
            run.log({"loss": lr})
    resp = client.post(f"/api/projects/{env}/src/runs/move",
                       json={"project": "big", "filters": {"config.lr": {"$gte": 0.1}}})
    assert resp.status_code == 200, resp.text
    assert sorted(m["to"] for m in resp.json()["moved"]) == [f"{env}/big/x1", f"{env}/big/x2"]
    listed = client.get(f"/api/projects/{env}/big/runs", params={"fresh": "true"}).json()
    assert sorted(r["run_id"] for r in listed["runs"]) == ["x1", "x2"]
    assert [r["run_id"] for r in client.get(f"/api/projects/{env}/src/runs").json()["runs"]] == ["x3"]


def test_a_live_run_moved_keeps_logging(client: TestClient, env: str) -> None:
    import runstream

    run = runstream.init(entity=env, project="src", id="live")
    for i in range(5):
        run.log({"loss": float(i)})
    wait_for(lambda: client.get(f"/api/runs/{env}/src/live", params={"fresh": "true"}).status_code == 200,
             what="the live run projected")
    assert client.post(f"/api/runs/{env}/src/live/move", json={"project": "dst"}).status_code == 200
    for i in range(5, 10):
        run.log({"loss": float(i)})
    run.finish()
    moved = run_of(client, f"{env}/dst/live")
    assert moved["state"] == "finished" and moved["last_step"] == 9
    assert [r["loss"] for r in history_rows(client, f"{env}/dst/live")] == [float(i) for i in range(10)]


def test_delete_purges_the_log_and_the_tables_for_good(client: TestClient, env: str, nats: MiniNats,
                                                     tmp_path: Path, nats_server: NatsServer) -> None:
    import runstream

    a, keep = log_run(env, "p", steps=8, id="a"), log_run(env, "p", id="keep")
    uid = run_of(client, a)["run_uid"]
    resp = client.delete(f"/api/runs/{a}")
    assert resp.status_code == 200, resp.text
    (done,) = resp.json()["deleted"]
    assert done["purged"] >= 4 and resp.json()["projected"]
    assert subjects_of(nats, uid) == {run_subject(env, uid, "delete"): 1}  # only the tombstone is left
    assert client.get(f"/api/runs/{a}").status_code == 404
    sql = client.post("/api/sql", json={"sql": f"SELECT (SELECT count(*) FROM runs WHERE run_uid = '{uid}') + "
                                               f"(SELECT count(*) FROM history WHERE run_uid = '{uid}') + "
                                               f"(SELECT count(*) FROM summary WHERE run_uid = '{uid}') + "
                                               f"(SELECT count(*) FROM config WHERE run_uid = '{uid}') AS n"})
    assert sql.json()["rows"] == [{"n": 0}]
    assert run_of(client, keep)["state"] == "finished"
    with pytest.raises(RunDeletedError, match="never be used again"):
        runstream.init(entity=env, project="p", id="a")
    with pytest.raises(RunExistsError):  # a subclass: existing `except RunExistsError` still catch it
        runstream.init(entity=env, project="p", id="a")
    con = replayed(tmp_path, nats_server.url, env)
    assert con.execute("SELECT count(*) FROM runs WHERE run_uid = ?", [uid]).fetchone() == (0,)
    assert con.execute("SELECT count(*) FROM history WHERE run_uid = ?", [uid]).fetchone() == (0,)
    assert con.execute("SELECT path FROM runs WHERE entity = ?", [env]).fetchall() == [(keep,)]


def test_a_live_run_deleted_is_not_resurrected(client: TestClient, env: str, nats: MiniNats) -> None:
    import runstream

    run = runstream.init(entity=env, project="p", id="doomed")
    run.log({"loss": 1.0})
    wait_for(lambda: client.get(f"/api/runs/{env}/p/doomed", params={"fresh": "true"}).status_code == 200,
             what="the live run projected")
    uid = run_of(client, f"{env}/p/doomed")["run_uid"]
    assert client.delete(f"/api/runs/{env}/p/doomed").status_code == 200
    for i in range(1, 50):
        run.log({"loss": float(i)})
    run.finish()  # its events still reach the stream: the fold drops them, the server deletes them
    tomb = {run_subject(env, uid, "delete"): 1}
    wait_for(lambda: client.get("/api/health", params={"fresh": "true"}).json()["lag"] == 0
             and subjects_of(nats, uid) == tomb, what="late events deleted from the stream")
    assert client.get(f"/api/runs/{env}/p/doomed").status_code == 404
    assert client.app.state.core.projector.dropped > 0  # type: ignore[attr-defined]
    dead = client.post("/api/sql", json={"sql": f"SELECT count(*) AS n FROM dead_letters WHERE subject LIKE "
                                                f"'%{uid}%'", "fresh": True})
    assert dead.json()["rows"] == [{"n": 0}]


def _fork_of(nc: MiniNats, entity: str, project: str, run_id: str, parent_uid: str) -> str:
    """Publish a forked run's init by hand (the SDK's fork is being built elsewhere)."""
    uid, writer = new_run_uid(), "wfork"
    nc.claim_path(entity, project, run_id, uid)
    body = {"entity": entity, "project": project, "run_id": run_id, "name": run_id, "start_time": time.time(),
            "origin": {"kind": "fork", "run_uid": parent_uid, "step": 3.0}}
    nc.js_publish(run_subject(entity, uid, "init"), encode_event(envelope("init", uid, writer, 1, time.time(), body)),
                  msg_id=msg_id(uid, writer, 1))
    return uid


def test_deleting_a_run_with_forks_needs_the_forks_too(client: TestClient, env: str, nats: MiniNats) -> None:
    parent = log_run(env, "p", id="parent")
    _fork_of(nats, env, "p", "child", run_of(client, parent)["run_uid"])
    assert run_of(client, f"{env}/p/child")["origin_kind"] == "fork"
    resp = client.delete(f"/api/runs/{parent}")
    assert resp.status_code == 409 and f"{env}/p/child" in resp.json()["error"], resp.text
    assert run_of(client, parent)["state"] == "finished"  # nothing changed
    resp = client.post(f"/api/projects/{env}/p/runs/delete", json={"run_ids": ["parent", "child"]})
    assert resp.status_code == 200, resp.text
    assert sorted(d["path"] for d in resp.json()["deleted"]) == [f"{env}/p/child", parent]
    assert client.get(f"/api/projects/{env}/p/runs", params={"fresh": "true"}).json()["total"] == 0


def test_bulk_delete_by_filter_and_selection_errors(client: TestClient, env: str) -> None:
    for rid in ("d1", "d2", "d3"):
        log_run(env, "p", id=rid, tags=["old"] if rid != "d3" else [])
    url = f"/api/projects/{env}/p/runs/delete"
    assert client.post(url, json={}).status_code == 400
    assert client.post(url, json={"run_ids": ["d1", "zz"]}).status_code == 404
    resp = client.post(url, json={"filters": {"tags": {"$in": ["old"]}}})
    assert resp.status_code == 200, resp.text
    assert sorted(d["path"] for d in resp.json()["deleted"]) == [f"{env}/p/d1", f"{env}/p/d2"]
    listed = client.get(f"/api/projects/{env}/p/runs", params={"fresh": "true"}).json()
    assert [r["run_id"] for r in listed["runs"]] == ["d3"]


def test_sync_of_an_old_spool_after_move_or_delete(client: TestClient, env: str, nats: MiniNats) -> None:
    import runstream
    from runstream.settings import load_settings as settings_now
    from runstream.sync import sync_paths

    dirs = {}
    for rid in ("m", "d"):
        with runstream.init(entity=env, project="p", id=rid) as run:
            run.log({"loss": 1.0})
        dirs[rid] = run.dir
    uid_m = run_of(client, f"{env}/p/m")["run_uid"]
    uid_d = run_of(client, f"{env}/p/d")["run_uid"]
    assert client.post(f"/api/runs/{env}/p/m/move", json={"project": "q"}).status_code == 200
    assert client.delete(f"/api/runs/{env}/p/d").status_code == 200
    before = subjects_of(nats, uid_m)
    report = sync_paths([dirs["m"], dirs["d"]], settings_now(), include_complete=True)
    assert report.runs == [f"{env}/p/m"] and len(report.errors) == 1 and "deleted" in report.errors[0]
    assert subjects_of(nats, uid_m) == before  # re-sent with the same message ids: nothing doubled
    assert subjects_of(nats, uid_d) == {run_subject(env, uid_d, "delete"): 1}
    assert run_of(client, f"{env}/q/m")["state"] == "finished"
    assert client.get(f"/api/runs/{env}/p/m").status_code == 404


def test_delete_removes_the_objects_only_the_deleted_run_needs(client: TestClient, env: str, nats: MiniNats,
                                                               tmp_path: Path) -> None:
    import hashlib
    import os

    import runstream
    from runstream.broker.objects import ObjectStore

    mine, shared = os.urandom(4096), os.urandom(4096)
    digests = {n: hashlib.sha256(b).hexdigest() for n, b in (("mine", mine), ("shared", shared))}
    paths = []
    for rid, files in (("a", {"mine.bin": mine, "shared.bin": shared}), ("b", {"shared.bin": shared})):
        folder = tmp_path / rid
        folder.mkdir()
        for name, data in files.items():
            (folder / name).write_bytes(data)
        run = runstream.init(entity=env, project="obj", id=rid, settings={"code_snapshot": False})
        run.save(str(folder / "*.bin"), base_path=str(folder), policy="now")
        run.finish()
        paths.append(f"{env}/obj/{rid}")
    store = ObjectStore(nats)
    assert store.info(digests["mine"]) is not None and store.info(digests["shared"]) is not None
    resp = client.delete(f"/api/runs/{paths[0]}", params={"wait": "true"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["deleted"][0]["objects_purged"] == 1
    assert store.info(digests["mine"]) is None  # only run a had it: gone with the run
    assert store.info(digests["shared"]) is not None  # run b still needs it
    assert client.get(f"/api/runs/{paths[1]}/files", params={"fresh": "true"}).status_code == 200
