"""The SDK against a real nats-server, checked in a real DuckDB projection."""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

import pytest

import runstream
from runstream.errors import UsageError

from .sdk_helpers import history, one, project, python, run_uid


def test_issue_snippet_lands_in_duckdb(rs_env: dict[str, str], nats_server, tmp_path: Path) -> None:
    run = runstream.init(entity="nico", project="snippet-project", config={"learning_rate": 0.01, "epochs": 10})
    for _epoch in range(10):
        run.log({"accuracy": 0.9, "loss": 0.1})
    run.finish()

    con = project(tmp_path, nats_server.url)
    uid = run_uid(con, run.path)
    assert one(con, "SELECT state FROM runs WHERE run_uid = ?", [uid]) == "finished"
    assert one(con, "SELECT exit_code FROM runs WHERE run_uid = ?", [uid]) == 0
    assert one(con, "SELECT count(*) FROM history WHERE run_uid = ?", [uid]) == 20
    assert history(con, run.path, "loss") == [(i, "0.1") for i in range(10)]
    summary = dict(con.execute("SELECT key, value FROM summary WHERE run_uid = ?", [uid]).fetchall())
    assert summary == {"accuracy": 0.9, "loss": 0.1}
    config = dict(con.execute("SELECT key, value FROM config WHERE run_uid = ?", [uid]).fetchall())
    assert config == {"learning_rate": 0.01, "epochs": 10}
    assert one(con, "SELECT name FROM runs WHERE run_uid = ?", [uid]) == run.name
    meta = json.loads(one(con, "SELECT metadata FROM runs WHERE run_uid = ?", [uid]))
    assert meta["host"] and meta["python"] and meta["cpu_count"] >= 1 and meta["runstream_version"]


def test_module_level_functions(rs_env: dict[str, str], nats_server, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"You must call runstream\.init\(\) before runstream\.log\(\)"):
        runstream.log({"x": 1})
    run = runstream.init(entity="sem", project="module-functions")
    runstream.log({"x": 1})
    runstream.log({"x": 2})
    runstream.finish()
    assert runstream.run is None and run.state == "finished"
    runstream.finish()  # no active run: a no-op
    con = project(tmp_path, nats_server.url)
    assert history(con, run.path, "x") == [(0, "1.0"), (1, "2.0")]


def test_reference_examples(rs_env: dict[str, str], nats_server, tmp_path: Path) -> None:
    """The W&B runs guide's examples, unchanged apart from the import."""
    run = runstream.init(entity="nico", project="awesome-project-ref")
    run.log({"accuracy": 0.9, "loss": 0.1})
    run.finish()
    first = run.path

    epochs = 10
    lr = 0.01
    run = runstream.init(entity="nico", project="awesome-project-ref",
                         config={"learning_rate": lr, "epochs": epochs})
    offset = random.random() / 5
    logged = []
    for epoch in range(epochs):
        acc = 1 - 2**-epoch - random.random() / (epoch + 1) - offset
        loss = 2**-epoch + random.random() / (epoch + 1) + offset
        logged.append(loss)
        run.log({"accuracy": acc, "loss": loss})
    run.finish()

    custom = runstream.init(entity="nico", project="awesome-project-ref", id="my-run-id", name="my-run-name")
    custom.finish()

    con = project(tmp_path, nats_server.url)
    assert one(con, "SELECT count(*) FROM history WHERE run_uid = ?", [run_uid(con, first)]) == 2
    assert [float(v) for _, v in history(con, run.path, "loss")] == logged
    uid = run_uid(con, run.path)
    assert one(con, "SELECT value FROM summary WHERE run_uid = ? AND key = 'loss'", [uid]) == logged[-1]
    assert one(con, "SELECT name FROM runs WHERE path = 'nico/awesome-project-ref/my-run-id'") == "my-run-name"
    generated = one(con, "SELECT name FROM runs WHERE path = ?", [first])
    parts = generated.split("-")
    assert len(parts) == 3 and parts[2].isdigit(), generated


def test_ids_names_defaults(rs_env: dict[str, str]) -> None:
    run = runstream.init()
    try:
        assert run.project == "uncategorized"
        assert len(run.id) == 8 and all(c.isdigit() or "a" <= c <= "z" for c in run.id)
        assert runstream.run is run
    finally:
        run.finish()
    assert runstream.run is None
    for bad in ["a/b", "x:y", "semi;colon", "c,d", "h#sh", "q?", "it's", " padded", "padded "]:
        with pytest.raises(UsageError):
            runstream.init(id=bad)


def test_log_semantics(rs_env: dict[str, str], nats_server, tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    with runstream.init(entity="sem", project="log-semantics") as run:
        run.log({"a": 1})                                   # step 0
        run.log({"nested": {"x": np.float32(0.5), "y": {"z": np.int64(7)}}})  # step 1, flattened
        run.log({"arr": np.array(2.5)})                     # step 2: 0-d array
        run.log({"p": 1}, commit=False)                     # step 3, stays open
        run.log({"q": 2})                                   # step 3 too, then commit
        run.log({"s": 10}, step=10)
        run.log({"s": 11}, step=10)                         # same step, same key: later wins
        with pytest.warns(UserWarning, match="lower than step"):
            run.log({"back": 5}, step=4)                    # backwards: stored, not dropped
        run.log({"back": 6}, step=3)                        # warned only once
        run.log({"text": "hello", "none": None, "lst": [1, 2]})
        assert run.summary["s"] == 11
        with pytest.raises(UsageError):
            run.log({"x": 1}, step=1.5)
        with pytest.raises(TypeError):
            run.log([1, 2])  # type: ignore[arg-type]
    con = project(tmp_path, nats_server.url)
    p = run.path
    assert history(con, p, "a") == [(0, "1.0")]
    assert history(con, p, "nested.x") == [(1, "0.5")]
    assert history(con, p, "nested.y.z") == [(1, "7.0")]
    assert history(con, p, "arr") == [(2, "2.5")]
    assert history(con, p, "p") == [(3, "1.0")] and history(con, p, "q") == [(3, "2.0")]
    assert history(con, p, "s") == [(10, "11.0")]
    assert history(con, p, "back") == [(3, "6.0"), (4, "5.0")]
    (text_step, text), = history(con, p, "text")
    assert text_step == 10 and text == '"hello"'  # W&B: joins the open step 10, then commits
    (lst_step, lst), = history(con, p, "lst")
    assert lst_step == 10 and lst.replace(" ", "") == "[1,2]"


def test_config_and_summary(rs_env: dict[str, str], nats_server, tmp_path: Path) -> None:
    ns = argparse.Namespace(lr=0.1, layers=3)
    with runstream.init(entity="sem", project="config-summary", config=ns) as run:
        assert run.config.lr == 0.1 and run.config["layers"] == 3
        run.config.batch = 32
        run.config.update({"lr": 0.1})  # same value: fine
        with pytest.raises(UsageError, match="allow_val_change"):
            run.config["lr"] = 0.2
        run.config.update({"lr": 0.2}, allow_val_change=True)
        run.log({"loss": 3.0})
        run.log({"loss": 1.0})
        run.log({"loss": 2.0})
        run.summary["best_loss"] = 1.0
        run.summary["loss"] = 0.5           # explicit wins until logged again
        assert run.summary["loss"] == 0.5
        run.define_metric("acc*", summary="max,mean")
        run.log({"acc_train": 0.5})
        run.log({"acc_train": 0.7})
        with pytest.raises(UsageError):
            run.define_metric("x", summary="median")
    con = project(tmp_path, nats_server.url)
    uid = run_uid(con, run.path)
    config = dict(con.execute("SELECT key, value FROM config WHERE run_uid = ?", [uid]).fetchall())
    assert config == {"lr": 0.2, "layers": 3, "batch": 32}
    summary = dict(con.execute("SELECT key, value FROM summary WHERE run_uid = ?", [uid]).fetchall())
    assert summary["best_loss"] == 1.0
    assert summary["loss"] == 0.5
    assert summary["acc_train.max"] == 0.7
    assert math.isclose(summary["acc_train.mean"], 0.6)


def test_bad_values_stored_faithfully(rs_env: dict[str, str], nats_server, tmp_path: Path) -> None:
    with runstream.init(entity="hostile.entity with spaces ünï", project="pro.ject *>",
                        id="id.with.dots") as run:
        run.log({"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf"), "negzero": -0.0,
                 "key with spaces.and.dots/ünï*>": 1.0, "big": 2**60})
    con = project(tmp_path, nats_server.url)
    uid = run_uid(con, "hostile.entity with spaces ünï/pro.ject *>/id.with.dots")
    vals = dict(con.execute("SELECT key, value FROM history WHERE run_uid = ?", [uid]).fetchall())
    assert math.isnan(vals["nan"]) and vals["inf"] == math.inf and vals["ninf"] == -math.inf
    assert vals["negzero"] == 0.0 and math.copysign(1, vals["negzero"]) == -1
    assert vals["key with spaces.and.dots/ünï*>"] == 1.0
    big = one(con, "SELECT value_json FROM history WHERE run_uid = ? AND key = 'big'", [uid])
    assert big == str(2**60)


def test_huge_log_calls(rs_env: dict[str, str], nats_server, tmp_path: Path) -> None:
    with runstream.init(entity="sem", project="huge") as run:
        with pytest.raises(ValueError, match="at most"):
            run.log({"blob": "x" * 5_000_000})          # one 5 MB value: a clear error
        texts = {f"t{i}": chr(65 + i) * 200_000 for i in range(25)}
        run.log(texts)                                  # 5 MB in 25 values: split over events
        wide = {f"m{i}": float(i) for i in range(60_000)}
        run.log(wide)                                   # 60k keys in one row: split too
        run.log({"after": 1.0})
    con = project(tmp_path, nats_server.url)
    uid = run_uid(con, run.path)
    assert one(con, "SELECT count(*) FROM history WHERE run_uid = ? AND step = 0", [uid]) == 25
    assert one(con, "SELECT sum(length(value_json)) FROM history WHERE run_uid = ? AND step = 0", [uid]) == \
        25 * 200_002
    assert one(con, "SELECT count(*) FROM history WHERE run_uid = ? AND step = 1", [uid]) == 60_000
    assert one(con, "SELECT sum(value) FROM history WHERE run_uid = ? AND step = 1", [uid]) == sum(range(60_000))
    assert one(con, "SELECT step FROM history WHERE run_uid = ? AND key = 'after'", [uid]) == 2


def test_states_from_context_manager(rs_env: dict[str, str], nats_server, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), runstream.init(entity="st", project="states", id="fails"):
        raise RuntimeError("boom")
    with pytest.raises(KeyboardInterrupt), runstream.init(entity="st", project="states", id="interrupted"):
        raise KeyboardInterrupt
    con = project(tmp_path, nats_server.url)
    assert one(con, "SELECT state, exit_code FROM runs WHERE path = 'st/states/fails'") == ("failed", 1)
    assert one(con, "SELECT state FROM runs WHERE path = 'st/states/interrupted'") == "killed"


@pytest.mark.parametrize(("ending", "state", "code"), [
    ("pass", "finished", 0),
    ("raise ValueError('uncaught')", "failed", 1),
    ("import sys; sys.exit(3)", "failed", 3),
    ("run.finish(exit_code=2)", "failed", 2),
])
def test_states_from_process_exit(rs_env: dict[str, str], nats_server, tmp_path: Path, ending: str,
                                  state: str, code: int) -> None:
    rid = f"exit-{code}-{state}"
    python(f"""
        import runstream
        run = runstream.init(entity="st", project="exits", id={rid!r})
        run.log({{"x": 1}})
        {ending}
    """, rs_env, tmp_path)
    con = project(tmp_path, nats_server.url)
    assert one(con, "SELECT state, exit_code FROM runs WHERE path = ?", [f"st/exits/{rid}"]) == (state, code)


def test_terminal_output(rs_env: dict[str, str], tmp_path: Path) -> None:
    env = {**rs_env, "RUNSTREAM_QUIET": "0"}
    proc = python("""
        import runstream
        run = runstream.init(entity="nico", project="out", name="jolly-haze-4")
        for i in range(10):
            run.log({"loss": 1 / (i + 1)})
        run.finish()
    """, env, tmp_path, check=True)
    err = proc.stderr
    assert "runstream: Syncing run jolly-haze-4" in err
    assert "Run history:" in err and "Run summary:" in err
    assert "█" in err and "▁" in err
    assert "Find logs at:" in err
    quiet = python("""
        import runstream
        runstream.init(entity="nico", project="out").finish()
    """, rs_env, tmp_path, check=True)
    assert "runstream:" not in quiet.stderr


def test_disabled_mode_records_nothing(rs_env: dict[str, str], tmp_path: Path) -> None:
    run = runstream.init(mode="disabled", config={"a": 1})
    run.log({"x": 1})
    run.config.update({"b": 2})
    run.finish()
    assert not (tmp_path / "work" / "runstream-runs").exists()
