"""The web app's HTTP side in-process (ASGI TestClient) over a real projector, NATS and DuckDB: pages and
static files, security headers, the cross-site guard, downsampled series, lineage, SQL downloads."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from runstream.broker import NatsServer
from runstream.query.http import create_app
from runstream.query.server import ServerConfig
from runstream.settings import load_settings
from tests.query_helpers import unique

POINTS = 20_000
SPIKE_STEP = 12_345


@pytest.fixture(scope="module")
def project(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A long run with one spike in its loss, and a short one."""
    import runstream

    base = tmp_path_factory.mktemp("uihttp")
    mp = pytest.MonkeyPatch()
    for k, v in {"RUNSTREAM_NATS_URL": nats_server.url, "RUNSTREAM_DIR": str(base / "data"),
                 "RUNSTREAM_RUN_DIR": str(base / "work"), "RUNSTREAM_QUIET": "1"}.items():
        mp.setenv(k, v)
    entity = unique("ui")
    run = runstream.init(entity=entity, project="p", id="long", config={"lr": 0.1})
    for i in range(POINTS):
        run.log({"train/loss": 100.0 if i == SPIKE_STEP else 1.0 / (i + 1), "acc": i / POINTS})
    run.finish()
    run = runstream.init(entity=entity, project="p", id="short")
    for i in range(5):
        run.log({"train/loss": float(i)})
    run.finish()
    yield {"entity": entity, "base": base}
    mp.undo()


@pytest.fixture(scope="module")
def client(project: dict[str, Any], nats_server: NatsServer) -> Iterator[TestClient]:
    settings = load_settings(env={"RUNSTREAM_DIR": str(project["base"] / "srv")})
    config = ServerConfig(dir=project["base"] / "srv", nats_url=nats_server.url, name=unique("u"), settings=settings)
    with TestClient(create_app(config=config)) as c, pytest.MonkeyPatch.context() as mp:
        assert c.get("/api/projects", params={"fresh": "true", "entity": project["entity"]}).json()["projects"]
        project["rw_entity"] = unique("uirw")  # an entity of its own: the other tests count runs
        _rewound_run(project["rw_entity"], mp, config.name)
        yield c


def _rewound_run(entity: str, mp: pytest.MonkeyPatch, server: str) -> None:
    """``q/rw``: steps 0-3, rewound to step 1 (a rewind asks the server for the run's state)."""
    import runstream

    mp.setenv("RUNSTREAM_SERVER_NAME", server)
    run = runstream.init(entity=entity, project="q", id="rw")
    for i in range(4):
        run.log({"loss": float(i)})
    run.finish()
    run = runstream.init(entity=entity, project="q", resume_from="rw?_step=1")
    run.log({"loss": 9.0})
    run.finish()


def test_pages_and_static_files_carry_strict_headers(client: TestClient, project: dict[str, Any]) -> None:
    for path in ("/", f"/{project['entity']}/p", f"/{project['entity']}/p/runs/long", "/sql"):
        resp = client.get(path)
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
        csp = resp.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self';" in csp and "frame-ancestors 'none'" in csp
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert "<script>" not in resp.text and 'src="/static/common.js"' in resp.text
    js = client.get("/static/common.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert js.headers["x-content-type-options"] == "nosniff"
    plotly = client.get("/static/vendor/plotly.min.js")
    assert plotly.status_code == 200 and len(plotly.content) > 1_000_000
    assert client.get("/api/projects").headers["x-content-type-options"] == "nosniff"
    assert client.get("/api/nothing").status_code == 404  # the catch-all pages leave /api alone


def test_projects_carry_last_activity(client: TestClient, project: dict[str, Any]) -> None:
    (row,) = client.get("/api/projects", params={"entity": project["entity"]}).json()["projects"]
    assert row["runs"] == 2 and row["last_activity"] >= row["last_created_at"]


def test_cross_site_writes_are_refused_and_plain_clients_pass(client: TestClient, project: dict[str, Any]) -> None:
    url = f"/api/runs/{project['entity']}/p/short"
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
        resp = client.patch(url, json={"notes": "pwned"}, headers=headers)
        assert resp.status_code == 403 and "cross-site PATCH refused" in resp.json()["error"]
        assert client.post("/api/sql", json={"sql": "SELECT 1"}, headers=headers).status_code == 403
        assert client.delete(url, headers=headers).status_code == 403  # the web app's move and delete
        assert client.post(f"{url}/move", json={"project": "q"}, headers=headers).status_code == 403
        for op in ("move", "delete"):
            bulk = client.post(f"/api/projects/{project['entity']}/p/runs/{op}",
                               json={"project": "q", "run_ids": ["short"]}, headers=headers)
            assert bulk.status_code == 403 and "cross-site POST refused" in bulk.json()["error"]
    same = client.patch(url, json={"notes": "mine"}, headers={"Origin": "http://testserver",
                                                              "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200
    assert client.patch(url, json={"tags": ["x"]}).status_code == 200  # no browser headers: the Python Api
    got = client.get(url).json()
    assert got["notes"] == "mine" and got["tags"] == ["x"]
    assert client.get(url, headers={"Origin": "https://evil.example"}).status_code == 200  # reads are not guarded


def test_series_keeps_spikes_and_caps_points(client: TestClient, project: dict[str, Any]) -> None:
    url = f"/api/ui/projects/{project['entity']}/p/series"
    got = client.post(url, json={"runs": ["long", "short", "ghost"], "keys": ["train/loss"], "buckets": 100}).json()
    assert got["missing"] == ["ghost"]
    by_run = {s["run_id"]: s for s in got["series"]}
    long, short = by_run["long"], by_run["short"]
    assert long["n"] == POINTS and long["sampled"] and len(long["x"]) <= 200
    assert max(long["y"]) == 100.0 and long["x"][long["y"].index(100.0)] == SPIKE_STEP  # the spike survives
    assert long["x"] == sorted(long["x"]) and long["x"][0] == 0 and long["x"][-1] == POINTS - 1
    assert short == {"run_id": "short", "key": "train/loss", "x": [0, 1, 2, 3, 4], "y": [0, 1, 2, 3, 4], "n": 5,
                     "sampled": False}
    zoomed = client.post(url, json={"runs": ["long"], "keys": ["train/loss"], "buckets": 1000,
                                    "x_min": 12_300, "x_max": 12_400}).json()["series"][0]
    assert zoomed["x"] == list(range(12_300, 12_401)) and not zoomed["sampled"]  # full resolution when zoomed in
    every = client.post(url, json={"runs": ["long"], "x": "_runtime", "buckets": 50}).json()["series"]
    assert {s["key"] for s in every} == {"acc", "train/loss"} and all(v >= 0 for s in every for v in s["x"])
    bad = client.post(url, json={"runs": ["long"], "x": "epoch"})
    assert bad.status_code == 400 and "_step, _runtime, _timestamp" in bad.json()["error"]


def test_series_of_one_branch_of_a_rewound_run(client: TestClient, project: dict[str, Any]) -> None:
    e = project["rw_entity"]
    url = f"/api/ui/projects/{e}/q/series"

    def points(**extra: Any) -> tuple[list[float], list[float]]:
        (s,) = client.post(url, json={"runs": ["rw"], "keys": ["loss"], **extra}).json()["series"]
        return s["x"], s["y"]

    assert points() == ([0, 1, 2], [0, 1, 9])
    assert points(branch=0) == ([0, 1, 2, 3], [0, 1, 2, 3])
    assert points(branch=1) == points()
    assert client.post(url, json={"runs": ["rw"], "keys": ["loss"], "branch": 7}).json()["series"] == []
    assert client.post(url, json={"runs": ["rw"], "branch": -1}).status_code == 422
    lineage = client.get(f"/api/ui/runs/{e}/q/rw/lineage").json()
    assert lineage["origin"]["kind"] == "rewind" and lineage["origin"]["step"] == 1
    assert lineage["origin"]["path"] == f"{e}/q/rw" and lineage["origin"]["depth"] is not None


def test_lineage_and_uid_redirect(client: TestClient, project: dict[str, Any]) -> None:
    got = client.get(f"/api/ui/runs/{project['entity']}/p/long/lineage").json()
    assert got == {"origin": None, "children": []}
    assert client.get(f"/api/ui/runs/{project['entity']}/p/ghost/lineage").status_code == 404
    uid = client.get(f"/api/runs/{project['entity']}/p/long").json()["run_uid"]
    resp = client.get(f"/runs/by-uid/{uid}", follow_redirects=False)
    assert resp.status_code == 307 and resp.headers["location"] == f"/{project['entity']}/p/runs/long"


def test_sql_download_csv_and_parquet(client: TestClient, project: dict[str, Any]) -> None:
    sql = f"SELECT run_id, tags, last_step FROM runs WHERE entity = '{project['entity']}' ORDER BY run_id"
    csv = client.post("/api/ui/sql/download", json={"sql": sql, "format": "csv"})
    assert csv.status_code == 200 and "attachment" in csv.headers["content-disposition"]
    assert csv.text.splitlines()[0] == '"run_id","tags","last_step"' and '"long"' in csv.text
    parquet = client.post("/api/ui/sql/download", json={"sql": sql, "format": "parquet"})
    table = pq.read_table(io.BytesIO(parquet.content))
    assert table.column("run_id").to_pylist() == ["long", "short"]
    assert table.column("last_step").to_pylist() == [POINTS - 1, 4]
    refused = client.post("/api/ui/sql/download", json={"sql": "COPY runs TO 'x.csv'", "format": "csv"})
    assert refused.status_code in (400, 403) and refused.json()["error"]


def test_cli_ui_prints_the_url(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from runstream.cli import main

    monkeypatch.setenv("RUNSTREAM_API_URL", "http://127.0.0.1:9/")
    assert main(["ui", "--no-browser"]) == 0
    assert capsys.readouterr().out.strip() == "runstream web app: http://127.0.0.1:9/"


def test_guide_run_url_redirects_to_the_run_page_and_refuses_the_rest(client: TestClient,
                                                                      project: dict[str, Any]) -> None:
    e = project["entity"]
    resp = client.get(f"/{e}/p/long", follow_redirects=False)
    assert resp.status_code == 307 and resp.headers["location"] == f"/{e}/p/runs/long"
    assert resp.headers["content-security-policy"]  # the security headers as on every page
    odd = client.get(f"/{e}/p/a%20b", follow_redirects=False)
    assert odd.status_code == 307 and odd.headers["location"] == f"/{e}/p/runs/a%20b"
    followed = client.get(f"/{e}/p/long")
    assert followed.status_code == 200 and 'src="/static/run.js"' in followed.text
    # refusals: it never shadows the API or static files, takes no writes, and a cross-site write is refused
    assert client.get("/api/x/y", follow_redirects=False).status_code == 404
    assert client.get("/static/x/y", follow_redirects=False).status_code == 404
    assert client.post(f"/{e}/p/long").status_code == 405
    assert client.post(f"/{e}/p/long", headers={"Origin": "https://evil.example"}).status_code == 403
