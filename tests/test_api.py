"""``runstream.Api`` and the CLI's read commands against a real server subprocess over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runstream.api import Api
from runstream.broker import NatsServer
from runstream.cli import main as cli_main
from runstream.query.errors import NotFound, QueryRefused, Unauthorized
from runstream.query.http_client import HttpClient
from runstream.query.server import read_http_url
from tests.query_helpers import ServerProc, start_server, unique

KEY = "api-test-key"


@pytest.fixture(scope="module")
def server(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProc, str]]:
    base = tmp_path_factory.mktemp("api")
    env = {"RUNSTREAM_NATS_URL": nats_server.url, "RUNSTREAM_DIR": str(base / "data"),
           "RUNSTREAM_RUN_DIR": str(base / "work"), "RUNSTREAM_QUIET": "1", "RUNSTREAM_HTTP_PORT": "0",
           "RUNSTREAM_API_KEY": KEY}
    import os

    srv = start_server(nats_server, base, {**os.environ, **env})
    url = read_http_url(srv.dir, srv.proc.pid)
    assert url
    yield srv, url
    assert srv.stop() == 0, srv.log.read_text()


@pytest.fixture
def api_env(server: tuple[ServerProc, str], rs_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    srv, url = server
    monkeypatch.setenv("RUNSTREAM_API_URL", url)
    monkeypatch.setenv("RUNSTREAM_API_KEY", KEY)
    monkeypatch.setenv("RUNSTREAM_SERVER_NAME", srv.name)
    return {**rs_env, "RUNSTREAM_API_URL": url, "RUNSTREAM_API_KEY": KEY, "RUNSTREAM_SERVER_NAME": srv.name}


@pytest.fixture
def logged(api_env: dict[str, str]) -> str:
    """An entity with three finished runs of project ``p``."""
    import runstream

    entity = unique("api")
    for rid, lr in (("a", 0.1), ("b", 0.01), ("c", 0.001)):
        run = runstream.init(entity=entity, project="p", id=rid, config={"lr": lr}, tags=["t"])
        for i in range(25):
            run.log({"loss": lr * (25 - i), "acc": i / 25})
        run.finish()
    return entity


def test_runs_filters_order_and_lazy_pages(logged: str) -> None:
    api = Api()
    runs = api.runs(f"{logged}/p", filters={"config.lr": {"$lt": 0.05}}, order="-summary_metrics.loss")
    assert [r.id for r in runs] == ["b", "c"] and len(runs) == 2
    paged = api.runs(f"{logged}/p", order="+config.lr", per_page=1)
    assert [r.id for r in paged] == ["c", "b", "a"] and paged[2].id == "a"


def test_run_attributes(logged: str) -> None:
    run = Api().run(f"{logged}/p/a")
    assert run.state == "finished" and run.id == "a" and run.path == [logged, "p", "a"]
    assert run.config == {"lr": 0.1} and run.summary["acc"] == pytest.approx(0.96)
    assert run.tags == ["t"] and run.notes is None and run.group is None and run.job_type is None
    assert run.created_at and run.heartbeat_at and isinstance(run.name, str)
    assert run.last_step == 24
    with pytest.raises(NotFound, match="no run"):
        Api().run(f"{logged}/p/zzz")


def test_history_pandas_arrow_and_scan(logged: str) -> None:
    run = Api().run(f"{logged}/p/b")
    df = run.history()
    assert list(df["_step"]) == list(range(25)) and df["loss"].iloc[5] == pytest.approx(0.2)
    table = run.history(keys=["acc"], pandas=False)
    assert isinstance(table, pa.Table) and table.column_names == ["_step", "_timestamp", "_runtime", "acc"]
    assert run.history(samples=5, pandas=False).num_rows == 5
    rows = list(run.scan_history(keys=["loss"], page_size=7, min_step=3, max_step=20))
    assert [r["_step"] for r in rows] == list(range(3, 21)) and set(rows[0]) == {"_step", "loss"}
    with pytest.raises(ValueError, match="format"):
        run.history(format="excel")


def test_sql_dataframe_arrow_and_refusal(logged: str) -> None:
    api = Api()
    df = api.sql(f"SELECT run_id FROM runs WHERE entity = '{logged}' ORDER BY run_id")
    assert list(df["run_id"]) == ["a", "b", "c"] and not api.last_truncated
    assert api.sql("SELECT * FROM range(10)", max_rows=3, pandas=False).num_rows == 3 and api.last_truncated
    with pytest.raises(QueryRefused, match="COPY"):
        api.sql("COPY runs TO '/tmp/runstream-api.csv'")


def test_api_key_is_needed(server: tuple[ServerProc, str], api_env: dict[str, str]) -> None:
    _, url = server
    with pytest.raises(Unauthorized, match="API key"):
        Api(base_url=url, api_key="").health()
    assert Api(base_url=url, api_key=KEY).health()["lag"] >= 0


def test_update_publishes_meta(logged: str) -> None:
    run = Api().run(f"{logged}/p/c")
    run.tags.append("best")
    run.notes = "lowest lr"
    run.update()  # accepted and projected without a dead letter
    dead = Api().sql("SELECT count(*) AS n FROM dead_letters WHERE reason LIKE '%meta%'", pandas=False)
    assert dead.to_pylist() == [{"n": 0}]


def test_update_is_visible(logged: str) -> None:
    run = Api().run(f"{logged}/p/a").update(tags=["t", "edited"], notes="n")
    assert run.tags == ["t", "edited"] and run.notes == "n"


LOGGER = """
import runstream, sys
run = runstream.init(entity=sys.argv[1], project="live", id="follow")
for i in range(int(sys.argv[2])):
    run.log({"loss": 1.0 / (i + 1)})
run.finish()
"""


def test_live_stream_sees_every_step_once_in_order(api_env: dict[str, str], tmp_path: Path) -> None:
    entity, steps = unique("live"), 300
    client = HttpClient(api_env["RUNSTREAM_API_URL"], KEY, timeout=60)
    seen: list[int] = []
    states: list[str] = []
    errors: list[BaseException] = []
    connected = threading.Event()

    def follow() -> None:
        try:
            for ev in client.events(f"/api/runs/{entity}/live/follow/history/events"):
                connected.set()
                if ev.event == "history":
                    seen.append(ev.data["_step"])
                elif ev.event in ("state", "end"):
                    states.append(f"{ev.event}:{ev.data['state']}")
                if ev.event == "end":
                    return
        except BaseException as e:  # surfaced below
            errors.append(e)

    t = threading.Thread(target=follow)
    t.start()  # following before the run exists: the stream waits for it
    script = tmp_path / "logger.py"
    script.write_text(LOGGER)
    proc = subprocess.run([sys.executable, str(script), entity, str(steps)], env=api_env, capture_output=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    t.join(60)
    assert not t.is_alive() and not errors, errors
    assert seen == list(range(steps))
    assert states[0] == "state:running" or states[0] == "state:finished"
    assert states[-1] == "end:finished"


def test_cli_tail_sql_parquet_and_export(logged: str, api_env: dict[str, str], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["tail", f"{logged}/p/a", "--keys", "loss"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 25 and lines[0] == "step 0  loss 2.5" and "finished at step 24" in err

    target = tmp_path / "q.parquet"
    assert cli_main(["sql", f"SELECT run_id FROM runs WHERE entity = '{logged}' ORDER BY 1",
                     "--format", "parquet", "--output", str(target)]) == 0
    assert pq.read_table(target).column("run_id").to_pylist() == ["a", "b", "c"]
    assert cli_main(["sql", "SELECT 1", "--format", "parquet"]) == 1
    assert "--output" in capsys.readouterr().err
    csv = tmp_path / "q.csv"
    assert cli_main(["sql", "SELECT 1 AS one", "--format", "csv", "--output", str(csv)]) == 0
    assert csv.read_text().splitlines() == ["one", "1"]

    out_dir = tmp_path / "export"
    assert cli_main(["export", f"{logged}/p", "--output", str(out_dir)]) == 0
    runs = pq.read_table(out_dir / "runs.parquet")
    assert sorted(runs.column("run_id").to_pylist()) == ["a", "b", "c"]
    configs = {r["run_id"]: json.loads(r["config"]) for r in runs.to_pylist()}
    assert configs["a"] == {"lr": 0.1}
    hist = pq.read_table(out_dir / "history.parquet")
    assert hist.num_rows == 3 * 25 * 2
    assert "exported 3 runs and 150 history points" in capsys.readouterr().out
