"""The HTTP API in-process (Starlette's ASGI TestClient), over a real projector, NATS and DuckDB."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from runstream.broker import NatsServer
from runstream.query.http import ARROW, create_app
from runstream.query.server import ServerConfig
from runstream.settings import load_settings
from tests.query_helpers import unique

KEY = "sekret-key"


@pytest.fixture(scope="module")
def project(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Three runs of one project logged with the SDK: a finished one, a failed one, one with NaN."""
    import runstream

    base = tmp_path_factory.mktemp("http")
    mp = pytest.MonkeyPatch()
    for k, v in {"RUNSTREAM_NATS_URL": nats_server.url, "RUNSTREAM_DIR": str(base / "data"),
                 "RUNSTREAM_RUN_DIR": str(base / "work"), "RUNSTREAM_QUIET": "1"}.items():
        mp.setenv(k, v)
    entity = unique("http")
    runs = {}
    for rid, lr, opt, tags, code in (("r1", 0.1, "adam", ["a", "b"], 0), ("r2", 0.01, "sgd", ["b"], 1),
                                     ("r3", 0.001, "adam", [], 0)):
        run = runstream.init(entity=entity, project="proj", id=rid, config={"lr": lr, "opt": opt}, tags=tags,
                             group="g1" if rid != "r3" else None, job_type="train")
        for i in range(10):
            run.log({"loss": lr * (10 - i), "acc": i / 10, "note": f"s{i}"})
        if rid == "r3":
            run.log({"loss": math.nan})
        run.finish(exit_code=code)
        runs[rid] = run
    yield {"entity": entity, "project": "proj", "base": base}
    mp.undo()


@pytest.fixture(scope="module")
def client(project: dict[str, Any], nats_server: NatsServer) -> Iterator[TestClient]:
    settings = load_settings(env={"RUNSTREAM_DIR": str(project["base"] / "srv")}, api_key=KEY)
    config = ServerConfig(dir=project["base"] / "srv", nats_url=nats_server.url, name=unique("h"),
                          settings=settings)
    app = create_app(api_key=KEY, config=config)
    with TestClient(app, headers={"Authorization": f"Bearer {KEY}"}) as c:
        yield c


def _base(project: dict[str, Any]) -> str:
    return f"/api/runs/{project['entity']}/proj"


def arrow_of(resp: Any) -> pa.Table:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == ARROW
    with pa.ipc.open_stream(pa.py_buffer(resp.content)) as reader:
        return reader.read_all()


def test_api_key_is_required(client: TestClient) -> None:
    resp = client.get("/api/health", headers={"Authorization": "Bearer wrong"})
    assert resp.status_code == 401 and resp.json()["kind"] == "unauthorized"
    assert client.get("/api/health", headers={"Authorization": ""}).status_code == 401
    assert client.get("/api/health").status_code == 200


def test_health_reports_projection_and_lag(client: TestClient) -> None:
    h = client.get("/api/health").json()
    assert h["projected_seq"] <= h["stream_last_seq"] and h["lag"] >= 0 and h["pid"] > 0


def test_openapi_schema_lists_the_endpoints(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/api/sql", "/api/projects", "/api/runs/{entity}/{project}/{run_id}/history",
              "/api/runs/{entity}/{project}/{run_id}/summary", "/api/projects/{entity}/{project}/runs"):
        assert p in paths


def test_projects(client: TestClient, project: dict[str, Any]) -> None:
    got = client.get("/api/projects", params={"entity": project["entity"], "fresh": "true"}).json()
    assert [(p["project"], p["runs"], p["running"]) for p in got["projects"]] == [("proj", 3, 0)]


def test_runs_filters_order_and_pages(client: TestClient, project: dict[str, Any]) -> None:
    url = f"/api/projects/{project['entity']}/proj/runs"
    got = client.get(url, params={"order": "+config.lr", "fresh": "true"}).json()
    assert [r["run_id"] for r in got["runs"]] == ["r3", "r2", "r1"] and got["total"] == 3
    assert got["runs"][0]["config"] == {"lr": 0.001, "opt": "adam"}
    flt = json.dumps({"$and": [{"config.opt": "adam"}, {"state": "finished"}]})
    got = client.get(url, params={"filters": flt, "order": "-summary_metrics.acc,-config.lr"}).json()
    assert [r["run_id"] for r in got["runs"]] == ["r1", "r3"]
    page1 = client.get(url, params={"order": "run_id", "per_page": 2}).json()
    page2 = client.get(url, params={"order": "run_id", "per_page": 2, "offset": page1["next_offset"]}).json()
    assert [r["run_id"] for r in page1["runs"] + page2["runs"]] == ["r1", "r2", "r3"]
    assert page2["next_offset"] is None
    bad = client.get(url, params={"filters": json.dumps({"config.lr": {"$near": 1}})})
    assert bad.status_code == 400 and "$near" in bad.json()["error"]


def test_run_overview_summary_config(client: TestClient, project: dict[str, Any]) -> None:
    run = client.get(f"{_base(project)}/r2", params={"fresh": "true"}).json()
    assert run["state"] == "failed" and run["exit_code"] == 1 and run["tags"] == ["b"]
    assert run["group"] == "g1" and run["job_type"] == "train" and run["last_step"] == 9
    assert run["created_at"].endswith("+00:00") and run["path"] == f"{project['entity']}/proj/r2"
    assert run["summary"] == client.get(f"{_base(project)}/r2/summary").json()
    assert run["config"] == client.get(f"{_base(project)}/r2/config").json() == {"lr": 0.01, "opt": "sgd"}
    assert client.get(f"{_base(project)}/r3/summary").json()["loss"] == "NaN"
    missing = client.get(f"{_base(project)}/nope")
    assert missing.status_code == 404 and missing.json()["kind"] == "not_found"


def test_history_json_and_arrow_are_the_same(client: TestClient, project: dict[str, Any]) -> None:
    url = f"{_base(project)}/r1/history"
    for params in ({}, {"keys": "loss"}, {"min_step": 2, "max_step": 5}, {"samples": 3}, {"limit": 4}):
        js = client.get(url, params=params).json()
        table = arrow_of(client.get(url, params=params, headers={"Accept": ARROW}))
        assert table.equals(arrow_of(client.get(url, params={**params, "format": "arrow"})))
        assert js["columns"] == table.column_names
        assert js["rows"] == table.to_pylist()
    full = client.get(url).json()["rows"]
    assert [r["_step"] for r in full] == list(range(10))
    assert full[3]["loss"] == pytest.approx(0.7) and full[3]["note"] == "s3"
    assert [r["_step"] for r in client.get(url, params={"samples": 3}).json()["rows"]] == [0, 4, 7]
    assert client.get(url, params={"keys": "loss"}).json()["columns"] == ["_step", "_timestamp", "_runtime", "loss"]


def test_history_keeps_nan_exact_in_arrow(client: TestClient, project: dict[str, Any]) -> None:
    url = f"{_base(project)}/r3/history"
    table = arrow_of(client.get(url, params={"format": "arrow", "min_step": 10}))
    assert math.isnan(table.column("loss")[0].as_py())
    assert client.get(url, params={"min_step": 10}).json()["rows"][0]["loss"] == "NaN"


def test_history_events_of_a_finished_run(client: TestClient, project: dict[str, Any]) -> None:
    with client.stream("GET", f"{_base(project)}/r1/history/events", params={"keys": "loss"}) as resp:
        text = "".join(resp.iter_text())
    events = [block for block in text.split("\n\n") if block.strip()]
    assert events[0].startswith("event: state") and events[-1].startswith("event: end")
    steps = [json.loads(e.split("data: ", 1)[1])["_step"] for e in events if "event: history" in e]
    assert steps == list(range(10))
    with client.stream("GET", f"{_base(project)}/r1/history/events", headers={"Last-Event-ID": "6"}) as resp:
        text = "".join(resp.iter_text())
    assert [json.loads(b.split("data: ", 1)[1])["_step"] for b in text.split("\n\n") if "event: history" in b] \
        == [7, 8, 9]


def test_sql_json_and_arrow(client: TestClient, project: dict[str, Any]) -> None:
    q = {"sql": f"SELECT run_id, state FROM runs WHERE entity = '{project['entity']}' ORDER BY run_id"}
    js = client.post("/api/sql", json=q).json()
    assert js["rows"] == [{"run_id": "r1", "state": "finished"}, {"run_id": "r2", "state": "failed"},
                          {"run_id": "r3", "state": "finished"}]
    resp = client.post("/api/sql", json={**q, "format": "arrow"})
    assert arrow_of(resp).to_pylist() == js["rows"] and resp.headers["x-runstream-truncated"] == "false"
    capped = client.post("/api/sql", json={"sql": "SELECT * FROM range(50)", "max_rows": 5}).json()
    assert capped["truncated"] and len(capped["rows"]) == 5


def test_update_publishes_a_meta_event(client: TestClient, project: dict[str, Any]) -> None:
    resp = client.patch(f"{_base(project)}/r3", json={"notes": "best so far", "tags": ["x"]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["projected"] and resp.json()["changes"] == {"notes": "best so far", "tags": ["x"]}
    dead = client.post("/api/sql", json={"sql": "SELECT count(*) AS n FROM dead_letters WHERE reason LIKE '%meta%'"})
    assert dead.json()["rows"] == [{"n": 0}]
    assert client.patch(f"{_base(project)}/r3", json={}).status_code == 400


ENDLESS = "SELECT count(*) FROM range(1000000000) a, range(1000000000) b"


@pytest.mark.parametrize(("sql", "status", "named"), [
    ("SELECT * FROM read_csv('/etc/passwd')", 403, "file, network"),
    ("SELECT * FROM read_text('/etc/passwd')", 403, "file, network"),
    ("SELECT * FROM glob('/*')", 403, "file, network"),
    ("COPY runs TO '/tmp/runstream-x.csv'", 403, "COPY"),
    ("ATTACH '/tmp/runstream-other.duckdb'", 403, "ATTACH"),
    ("INSTALL httpfs", 403, "INSTALL/LOAD"),
    ("LOAD httpfs", 403, "INSTALL/LOAD"),
    ("SELECT * FROM read_parquet('http://127.0.0.1:1/x')", 403, "file, network"),
    ("SET memory_limit = '1TB'", 403, "SET"),
    ("RESET threads", 403, "SET/RESET"),
    ("PRAGMA enable_profiling", 403, "PRAGMA"),
    ("SELECT * FROM reader", 400, "never Python objects"),
    ("SELECT * FROM secret_table", 400, "never Python objects"),
    ("SELECT * FROM HARDENING", 400, "never Python objects"),
])
def test_sandbox_battery(client: TestClient, sql: str, status: int, named: str) -> None:
    secret_table = pa.table({"x": [1]})  # noqa: F841 (a Python variable a replacement scan would see)
    resp = client.post("/api/sql", json={"sql": sql})
    assert resp.status_code == status, resp.text
    assert named in resp.json()["error"]
    assert client.post("/api/sql", json={"sql": "SELECT 1 AS one"}).json()["rows"] == [{"one": 1}]


def test_endless_query_is_interrupted_within_the_limit(client: TestClient) -> None:
    import time

    t0 = time.monotonic()
    resp = client.post("/api/sql", json={"sql": ENDLESS, "timeout": 0.5})
    assert resp.status_code == 408 and "time limit" in resp.json()["error"]
    assert time.monotonic() - t0 < 5
    assert client.get("/api/health").status_code == 200


def test_sql_memory_limit_is_set_per_query(client: TestClient) -> None:
    got = client.post("/api/sql", json={"sql": "SELECT current_setting('operator_memory_limit') AS m"}).json()
    assert got["rows"][0]["m"].endswith("GiB")


def test_runs_events_start_with_every_run(client: TestClient, project: dict[str, Any]) -> None:
    from runstream.query.live import follow_runs

    core = client.app.state.core  # type: ignore[attr-defined]

    async def first_three() -> list[str]:
        out = []
        async for text in follow_runs(core, project["entity"], "proj"):
            out.append(json.loads(text.split("data: ", 1)[1])["run_id"])
            if len(out) == 3:
                return out
        return out

    assert client.portal is not None
    assert sorted(client.portal.call(first_three)) == ["r1", "r2", "r3"]
