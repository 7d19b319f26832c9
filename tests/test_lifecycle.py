"""Resume, fork, rewind and time travel against a real server subprocess: every W&B resume mode,
forks of forks, rewinds twice, float steps — each compared row for row with what it must show,
and again after ``runstream replay``."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import runstream
from runstream.api import Api
from runstream.broker import NatsServer
from runstream.errors import RunNotFoundError, UsageError
from runstream.query.client import QueryClient
from tests.conftest import wait_for
from tests.query_helpers import ServerProc, http_server, unique, use_server
from tests.sdk_helpers import env_with, spawn


@pytest.fixture(scope="module")
def server(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProc, str]]:
    yield from http_server(nats_server, tmp_path_factory.mktemp("lifecycle"))


@pytest.fixture
def env(server: tuple[ServerProc, str], rs_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return use_server(server, rs_env, monkeypatch)


def rows(path: str, key: str = "loss", **kwargs: Any) -> list[tuple[int, Any]]:
    table = Api().run(path).history(keys=[key], pandas=False, **kwargs)
    return [(r["_step"], r[key]) for r in table.to_pylist()]


def logged(run: Any, values: list[float], key: str = "loss", **extra: Any) -> None:
    for v in values:
        run.log({key: v, **extra})


def test_resume_modes(env: dict[str, str]) -> None:
    e = unique("res")
    with pytest.raises(RunNotFoundError, match="resume='must'"):
        runstream.init(entity=e, project="p", id="r1", resume="must")
    run = runstream.init(entity=e, project="p", id="r1", resume="allow", config={"lr": 0.1, "bs": 8},
                         tags=["a", "b"], notes="first")
    logged(run, [5.0, 4.0, 3.0])
    run.log({"only_first": 1.5})
    run.finish()
    with pytest.raises(runstream.RunExistsError):
        runstream.init(entity=e, project="p", id="r1", resume="never")
    first = Api().run(f"{e}/p/r1")
    again = runstream.init(entity=e, project="p", id="r1", resume="must", config={"lr": 0.2}, tags=["c"])
    assert again.step == 4 and again.name == first.name and again.resumed
    logged(again, [2.0, 1.0])
    again.finish()
    api_run = Api().run(f"{e}/p/r1")
    assert rows(f"{e}/p/r1") == [(0, 5.0), (1, 4.0), (2, 3.0), (4, 2.0), (5, 1.0)]
    assert api_run.config == {"lr": 0.2, "bs": 8}
    assert api_run.tags == ["c"] and api_run.notes == "first" and api_run.name == first.name
    assert api_run.summary["loss"] == 1.0 and api_run.summary["only_first"] == 1.5
    assert api_run.state == "finished" and api_run.runtime >= first.runtime
    # _runtime continues: the resumed rows start at the first session's runtime, not from zero
    hist = Api().run(f"{e}/p/r1").history(keys=["loss"], pandas=False).to_pylist()
    assert hist[3]["_runtime"] >= hist[2]["_runtime"]
    # allow on a missing run creates it
    new = runstream.init(entity=e, project="p", id="r2", resume="allow")
    assert new.step == 0 and not new.resumed
    new.finish()


def test_resume_auto_continues_a_killed_run_of_the_same_directory(env: dict[str, str], tmp_path: Path) -> None:
    e = unique("auto")
    work = tmp_path / "job"
    work.mkdir()
    child_env = env_with(env, RUNSTREAM_RUN_DIR=str(work))
    proc = spawn(f"""
        import runstream
        run = runstream.init(entity={e!r}, project="p", resume="auto")
        for i in range(6):
            run.log({{"loss": float(i)}})
        print(run.id, flush=True)
        import threading
        threading.Event().wait()  # alive until the test kills it
    """, child_env, work)
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert run_id, proc.stderr.read() if proc.stderr else ""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    resumed = runstream.init(entity=e, project="p", resume="auto", dir=work)
    assert resumed.id == run_id and resumed.step == 6 and resumed.resumed
    resumed.log({"loss": 6.0})
    resumed.finish()
    assert rows(f"{e}/p/{run_id}") == [(i, float(i)) for i in range(7)]
    fresh = runstream.init(entity=e, project="p", resume="auto", dir=work)  # it finished: a new run
    assert fresh.id != run_id and not fresh.resumed
    fresh.finish()


def test_fork_of_a_fork_inherits_without_copying(env: dict[str, str]) -> None:
    e = unique("fork")
    parent = runstream.init(entity=e, project="p", id="parent", config={"lr": 0.1, "arch": "cnn"})
    logged(parent, [float(10 - i) for i in range(10)])  # steps 0..9: 10 … 1
    parent.log({"early": 7.0}, step=9)
    parent.finish()
    child = runstream.init(entity=e, project="p", id="child", fork_from="parent?_step=4", config={"lr": 0.5})
    assert child.step == 5
    with pytest.raises(UsageError, match="step 5"):
        child.log({"loss": 0.0}, step=3)
    logged(child, [0.5, 0.4, 0.3])  # steps 5, 6, 7
    child.finish()
    assert rows(f"{e}/p/child") == [(0, 10.0), (1, 9.0), (2, 8.0), (3, 7.0), (4, 6.0), (5, 0.5), (6, 0.4),
                                     (7, 0.3)]
    assert rows(f"{e}/p/parent") == [(i, float(10 - i)) for i in range(10)]
    c = Api().run(f"{e}/p/child")
    assert c.config == {"lr": 0.5, "arch": "cnn"}
    assert c.origin_kind == "fork" and c.origin_step == 4 and c.origin_depth == 1
    assert c.summary["loss"] == 0.3 and "early" not in c.summary  # parent's step 9 is past the fork
    grand = runstream.init(entity=e, project="p", id="grand", fork_from=f"{e}/p/child?_step=6.5")
    assert grand.step == 7
    logged(grand, [0.05])
    grand.finish()
    assert rows(f"{e}/p/grand") == [(0, 10.0), (1, 9.0), (2, 8.0), (3, 7.0), (4, 6.0), (5, 0.5), (6, 0.4),
                                     (7, 0.05)]
    g = Api().run(f"{e}/p/grand")
    assert g.origin_depth == 2 and g.origin_step == 6.5 and g.config == {"lr": 0.5, "arch": "cnn"}
    # nothing was copied: the points table holds each logged point once
    points = Api().sql("SELECT count(*) AS n FROM history_numeric h JOIN history_run_ids r ON r.id = h.run "
                       f"WHERE r.run_uid IN (SELECT run_uid FROM runs WHERE entity = '{e}')", pandas=False)
    assert points.to_pylist()[0]["n"] == 10 + 1 + 3 + 1
    with pytest.raises(UsageError, match="has no step 50"):
        runstream.init(entity=e, project="p", fork_from="parent?_step=50")
    with pytest.raises(RunNotFoundError):
        runstream.init(entity=e, project="p", fork_from="nobody?_step=1")


def test_rewind_twice_archives_branches(env: dict[str, str]) -> None:
    e = unique("rew")
    run = runstream.init(entity=e, project="p", id="r", config={"lr": 0.1})
    run.define_metric("loss", summary="min,last")
    logged(run, [float(10 - i) for i in range(10)])  # 0..9: 10 … 1
    run.log({"late": 1.0}, step=9)
    run.finish()
    first = runstream.init(entity=e, project="p", resume_from="r?_step=5", config={"lr": 0.01})
    assert first.id == "r" and first.step == 6
    logged(first, [20.0, 21.0])  # steps 6, 7
    first.finish()
    assert rows(f"{e}/p/r") == [(0, 10.0), (1, 9.0), (2, 8.0), (3, 7.0), (4, 6.0), (5, 5.0), (6, 20.0),
                                 (7, 21.0)]
    r = Api().run(f"{e}/p/r")
    assert r.summary["loss"] == 21.0 and r.summary["loss.min"] == 5.0 and "late" not in r.summary
    assert r.config == {"lr": 0.01} and r.origin_kind == "rewind" and r.origin_step == 5
    assert r.state == "finished"
    second = runstream.init(entity=e, project="p", resume_from="r?_step=6.9")
    assert second.step == 7
    logged(second, [30.0])
    second.finish()
    assert rows(f"{e}/p/r") == [(0, 10.0), (1, 9.0), (2, 8.0), (3, 7.0), (4, 6.0), (5, 5.0), (6, 20.0),
                                 (7, 30.0)]
    branches = Api().run(f"{e}/p/r").branches()
    assert [(b["branch"], b["current"]) for b in branches] == [(0, False), (1, False), (2, True)]
    assert rows(f"{e}/p/r", branch=0) == [(i, float(10 - i)) for i in range(10)]
    assert rows(f"{e}/p/r", branch=1)[-2:] == [(6, 20.0), (7, 21.0)]
    archived = Api().sql(f"SELECT count(*) AS n FROM history_branches WHERE NOT current AND key = 'loss' "
                         f"AND run_uid = (SELECT run_uid FROM runs WHERE entity = '{e}')", pandas=False)
    assert archived.to_pylist()[0]["n"] == 10 + 8


def test_time_travel_shows_the_run_before_its_rewind(env: dict[str, str]) -> None:
    e = unique("tt")
    run = runstream.init(entity=e, project="p", id="r")
    logged(run, [1.0, 2.0, 3.0, 4.0])
    run.finish()
    before = QueryClient().stream_last_seq()
    again = runstream.init(entity=e, project="p", resume_from="r?_step=1")
    logged(again, [9.0])
    again.finish()
    assert rows(f"{e}/p/r") == [(0, 1.0), (1, 2.0), (2, 9.0)]
    assert rows(f"{e}/p/r", as_of=before) == [(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0)]
    import time

    assert rows(f"{e}/p/r", as_of=time.time() + 60) == [(0, 1.0), (1, 2.0), (2, 9.0)]


def test_replay_reproduces_forks_and_rewinds(env: dict[str, str]) -> None:
    e = unique("rep")
    run = runstream.init(entity=e, project="p", id="a")
    logged(run, [1.0, 2.0, 3.0])
    run.finish()
    fork = runstream.init(entity=e, project="p", id="b", fork_from="a?_step=1")
    logged(fork, [7.0])
    fork.finish()
    rew = runstream.init(entity=e, project="p", resume_from="a?_step=0")
    logged(rew, [5.0])
    rew.finish()
    want = {p: rows(f"{e}/p/{p}") for p in ("a", "b")}
    assert want == {"a": [(0, 1.0), (1, 5.0)], "b": [(0, 1.0), (1, 2.0), (2, 7.0)]}
    summaries = {p: Api().run(f"{e}/p/{p}").summary for p in ("a", "b")}
    QueryClient().replay(timeout=120)
    wait_for(lambda: Api().run(f"{e}/p/b").state == "finished", what="replayed run b")
    assert {p: rows(f"{e}/p/{p}") for p in ("a", "b")} == want
    assert {p: Api().run(f"{e}/p/{p}").summary for p in ("a", "b")} == summaries
    assert [b["branch"] for b in Api().run(f"{e}/p/a").branches()] == [0, 1]


def test_groups_and_job_types_compare(env: dict[str, str]) -> None:
    e = unique("grp")
    for rid, group, job, scale in (("a", "exp1", "train", 1.0), ("b", "exp1", "train", 3.0),
                                   ("c", "exp1", "eval", 10.0), ("d", "exp2", "train", 100.0)):
        run = runstream.init(entity=e, project="p", id=rid, group=group, job_type=job)
        logged(run, [scale * (i + 1) for i in range(3)])
        run.finish()
    api = Api()
    assert sorted(r.id for r in api.runs(f"{e}/p", filters={"group": "exp1"})) == ["a", "b", "c"]
    assert sorted(r.id for r in api.runs(f"{e}/p", filters={"group": "exp1", "job_type": "train"})) == ["a", "b"]
    agg = api.group_history(f"{e}/p", group="exp1", job_type="train", keys=["loss"], pandas=False).to_pylist()
    assert [(r["_step"], r["runs"], r["mean"], r["min"], r["max"]) for r in agg] == [
        (0, 2, 2.0, 1.0, 3.0), (1, 2, 4.0, 2.0, 6.0), (2, 2, 6.0, 3.0, 9.0)]
    by_group = api.group_history(f"{e}/p", keys=["loss"], pandas=False).to_pylist()
    assert {(r["group"], r["_step"]): r["runs"] for r in by_group} == {
        ("exp1", 0): 3, ("exp1", 1): 3, ("exp1", 2): 3, ("exp2", 0): 1, ("exp2", 1): 1, ("exp2", 2): 1}
    by_job = api.group_history(f"{e}/p", by="job_type", group="exp1", keys=["loss"], pandas=False).to_pylist()
    assert {(r["group"], r["_step"]): r["mean"] for r in by_job}[("eval", 2)] == 30.0
    sql = api.sql(f"SELECT \"group\", step, mean, min, max, runs FROM group_history WHERE entity = '{e}' "
                  "AND key = 'loss' AND step = 2 ORDER BY 1", pandas=False).to_pylist()
    assert [(r["group"], r["runs"], r["min"], r["max"]) for r in sql] == [("exp1", 3, 3.0, 30.0),
                                                                          ("exp2", 1, 300.0, 300.0)]
