"""The W&B compatibility suite: training scripts written the way W&B's docs write them, run with
``import runstream as wandb``, each stored result checked through ``Api`` (HTTP) and SQL.

Every W&B call these scripts make is listed in the README's compatibility table; a call that
works here is ✓ there.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import runstream as wandb
from runstream.broker import NatsServer
from runstream.errors import UsageError
from tests.query_helpers import ServerProc, http_server, unique, use_server
from tests.sdk_helpers import env_with, python


@pytest.fixture(scope="module")
def server(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProc, str]]:
    yield from http_server(nats_server, tmp_path_factory.mktemp("compat"))


@pytest.fixture
def env(server: tuple[ServerProc, str], rs_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNSTREAM_CODE_SNAPSHOT", "0")
    monkeypatch.setenv("RUNSTREAM_STATS_INTERVAL", "0")
    return use_server(server, rs_env, monkeypatch, RUNSTREAM_CODE_SNAPSHOT="0", RUNSTREAM_STATS_INTERVAL="0")


def sql(query: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Rows of a query on the server's projection (waits for it to hold what the log holds)."""
    table = wandb.Api().sql(query if params is None else _inline(query, params), pandas=False)
    return [tuple(r.values()) for r in table.to_pylist()]


def _inline(query: str, params: list[Any]) -> str:
    for p in params:
        query = query.replace("?", "'" + str(p).replace("'", "''") + "'", 1)
    return query


def uid_of(path: str) -> str:
    return str(sql("SELECT run_uid FROM runs WHERE path = ?", [path])[0][0])


# -- the module-level API before init() -------------------------------------------------------------


def test_module_level_calls_before_init_name_init(env: dict[str, str]) -> None:
    assert wandb.run is None
    calls = [lambda: wandb.config.update({"a": 1}), lambda: wandb.config.lr, lambda: wandb.config["lr"],
             lambda: wandb.summary.update({"a": 1}), lambda: wandb.log({"a": 1}),
             lambda: wandb.define_metric("acc"), lambda: wandb.save("x"), lambda: wandb.alert("t", "x"),
             lambda: wandb.log_artifact("x", type="model"), lambda: wandb.use_artifact("m:latest"),
             lambda: wandb.log_code("."), lambda: wandb.watch(object()), lambda: wandb.unwatch()]
    for call in calls:
        with pytest.raises(UsageError, match=r"You must call runstream\.init\(\) before runstream\."):
            call()
    wandb.finish()  # no run: nothing to do, as in W&B


# -- a training script in W&B's style ----------------------------------------------------------------


def test_a_training_script_in_wandb_style(env: dict[str, str], tmp_path: Path) -> None:
    entity = unique("compat")
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-dir", dest="data_dir", default="/data/secret")
    args = parser.parse_args([])

    run = wandb.init(entity=entity, project="mnist", config=args, config_exclude_keys=["data_dir"],
                     tags=["baseline"], group="sweep-1", job_type="train", notes="first try",
                     settings=wandb.Settings(console="off"))
    wandb.config.update({"batch_size": 64, "optimizer": "adam"})
    wandb.config.dropout = 0.2
    assert wandb.config.lr == 0.01 and wandb.config["epochs"] == 3 and "data_dir" not in wandb.config
    with pytest.raises(UsageError, match="allow_val_change"):
        wandb.config.update({"lr": 0.1})
    wandb.config.update({"lr": 0.02}, allow_val_change=True)
    wandb.config.setdefaults({"lr": 0.5, "seed": 7})
    assert wandb.config.as_dict() == {"lr": 0.02, "epochs": 3, "batch_size": 64, "optimizer": "adam",
                                      "dropout": 0.2, "seed": 7}

    wandb.define_metric("epoch")
    wandb.define_metric("val/*", step_metric="epoch")
    wandb.define_metric("val/acc", summary="max", goal="maximize")
    accs = [0.5, 0.8, 0.7]
    for epoch in range(wandb.config.epochs):
        for batch in range(2):
            wandb.log({"train/loss": 1.0 / (epoch + 1) - batch * 0.01}, commit=False)
        wandb.log({"val/acc": accs[epoch], "epoch": epoch})
    wandb.summary["best_epoch"] = 1
    wandb.summary.update({"test/acc": 0.75})
    wandb.summary.note = "done"
    assert wandb.summary.best_epoch == 1 and wandb.summary["val/acc"] == 0.7

    run.name = "baseline-adam"
    run.notes = "adam, lr 0.02"
    run.tags = (*run.tags, "adam")
    run.group = "sweep-2"
    run.job_type = "eval"
    wandb.alert(title="low accuracy", text="val/acc below 0.9", level=wandb.AlertLevel.WARN)
    path = f"{entity}/mnist/{run.id}"
    assert run.url == f"{os.environ['RUNSTREAM_API_URL']}/{entity}/mnist/runs/{run.id}"
    wandb.finish()
    assert wandb.run is None

    got = wandb.Api().run(path)
    assert (got.name, got.notes, got.tags, got.group, got.job_type) == (
        "baseline-adam", "adam, lr 0.02", ["baseline", "adam"], "sweep-2", "eval")
    assert got.state == "finished"
    assert got.config == {"lr": 0.02, "epochs": 3, "batch_size": 64, "optimizer": "adam", "dropout": 0.2,
                          "seed": 7}
    assert got.summary["val/acc.max"] == 0.8  # summary="max": the max, not the last (as in W&B)
    assert (got.summary["epoch"], got.summary["best_epoch"], got.summary["test/acc"], got.summary["note"]) == (
        2, 1, 0.75, "done")
    uid = uid_of(path)
    assert sql("SELECT step, value FROM history WHERE run_uid = ? AND key = 'train/loss' ORDER BY step", [uid]) == [
        (0, 0.99), (1, 0.49), (2, 1 / 3 - 0.01)]
    assert sql("SELECT name, step_metric, summary, goal FROM metrics WHERE run_uid = ? ORDER BY name", [uid]) == [
        ("epoch", None, None, None), ("val/*", "epoch", None, None), ("val/acc", None, ["max"], "maximize")]
    assert sql("SELECT title, level FROM alerts WHERE run_uid = ?", [uid]) == [("low accuracy", "WARN")]
    assert sql("SELECT name, tags, \"group\", job_type FROM runs WHERE run_uid = ?", [uid]) == [
        ("baseline-adam", ["baseline", "adam"], "sweep-2", "eval")]


def test_config_from_yaml_absl_flags_and_include_keys(env: dict[str, str], tmp_path: Path) -> None:
    entity = unique("compat")
    (tmp_path / "cfg.yaml").write_text(
        "wandb_version: 1\nlr:\n  desc: learning rate\n  value: 0.003\nlayers: [64, 32]\nname: mlp\n")

    class Flags:  # the shape of absl.flags.FLAGS
        def flag_values_dict(self) -> dict[str, Any]:
            return {"lr": 0.1, "steps": 100, "logtostderr": False}

    paths = []
    for config, include in ((str(tmp_path / "cfg.yaml"), None), (Flags(), ["lr", "steps"])):
        run = wandb.init(entity=entity, project="cfg", config=config, config_include_keys=include)
        paths.append(f"{entity}/cfg/{run.id}")
        run.finish()
    api = wandb.Api()
    assert api.run(paths[0]).config == {"lr": 0.003, "layers": [64, 32], "name": "mlp"}
    assert api.run(paths[1]).config == {"lr": 0.1, "steps": 100}
    with pytest.raises(UsageError, match="not both"):
        wandb.init(entity=entity, project="cfg", config={"a": 1}, config_include_keys=["a"], config_exclude_keys=["b"])
    run = wandb.init(entity=entity, project="cfg", config={"lr": 1}, allow_val_change=True)
    run.config.update({"lr": 2})  # allowed for this run
    assert run.config.lr == 2
    run.finish()


def test_config_defaults_yaml_in_the_working_directory(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "config-defaults.yaml").write_text("lr:\n  desc: learning rate\n  value: 0.1\nepochs: 5\n")
    with wandb.init(entity=unique("compat"), project="cfg", config={"epochs": 2}) as run:
        assert run.config.as_dict() == {"lr": 0.1, "epochs": 2}  # config= wins over the defaults


def test_reinit_values(env: dict[str, str]) -> None:
    entity = unique("compat")
    first = wandb.init(entity=entity, project="loop")
    assert wandb.init(entity=entity, project="loop", reinit="return_previous") is first
    second = wandb.init(entity=entity, project="loop", reinit=True)  # finish_previous
    assert first.state == "finished" and wandb.run is second
    third = wandb.init(entity=entity, project="loop", reinit="finish_previous")
    assert second.state == "finished"
    beside = wandb.init(entity=entity, project="loop", reinit="create_new")
    assert wandb.run is third and beside is not third
    beside.log({"x": 1.0})
    wandb.log({"y": 2.0})
    beside.finish()
    assert wandb.run is third
    # outside a notebook "default" (and no reinit, and False) return the active run, as in W&B
    assert wandb.init(entity=entity, project="loop", reinit="default") is third
    assert wandb.init(entity=entity, project="loop") is third
    assert wandb.init(entity=entity, project="loop", reinit=False) is third
    with pytest.raises(UsageError, match="reinit must be"):
        wandb.init(entity=entity, project="loop", reinit="sometimes")
    third.finish()
    for i in range(3):  # W&B's loop of runs in one process
        with wandb.init(entity=entity, project="loop", config={"i": i}, reinit=True) as r:
            r.log({"i": float(i)})
    states = sql("SELECT state, count(*) FROM runs WHERE entity = ? GROUP BY ALL", [entity])
    assert states == [("finished", 7)]
    assert sql("SELECT count(*) FROM history h JOIN runs r USING (run_uid) WHERE r.entity = ? AND key IN ('x', 'y')",
               [entity]) == [(2,)]


def test_artifacts_files_and_code(env: dict[str, str], tmp_path: Path) -> None:
    entity = unique("compat")
    (tmp_path / "model.pt").write_bytes(b"\x00weights\x01")
    (tmp_path / "train.py").write_text("print('train')\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "util.py").write_text("X = 1\n")
    (tmp_path / "notes.txt").write_text("not code\n")
    with wandb.init(entity=entity, project="art") as run:
        art = wandb.log_artifact("model.pt", name="mnist-model", type="model", aliases=["best"])
        code = wandb.log_code(".")
        wandb.save("notes.txt", policy="now")
        art.wait(30)
        code.wait(30)
        data = wandb.Artifact("digits", type="dataset")
        data.add_file(str(tmp_path / "notes.txt"))
        run.log_artifact(data).wait(30)
    assert (art.version, code.type, sorted(code._files)) == ("v0", "code", ["pkg/util.py", "train.py"])
    with wandb.init(entity=entity, project="art") as user:
        used = wandb.use_artifact("mnist-model:best", type="model")
        root = used.download(str(tmp_path / "dl"))
        assert (root / "model.pt").read_bytes() == b"\x00weights\x01"
    api = wandb.Api()
    assert [f.name for f in api.run(f"{entity}/art/{run.id}").files()] == ["notes.txt"]
    assert sorted((a.name, a.type) for a in api.run(f"{entity}/art/{run.id}").logged_artifacts()) == [
        ("digits", "dataset"), ("mnist-model", "model"), (f"source-art-{run.id}", "code")]
    assert [a.name for a in api.run(f"{entity}/art/{user.id}").used_artifacts()] == ["mnist-model"]
    assert sql("SELECT alias FROM artifact_aliases WHERE entity = ? AND name = 'mnist-model' ORDER BY alias",
               [entity]) == [("best",), ("latest",)]


def test_watch_without_torch_says_so(env: dict[str, str]) -> None:
    pytest.importorskip("numpy")
    try:
        import torch  # noqa: F401
        pytest.skip("torch is installed: watch() works")
    except ImportError:
        pass
    with wandb.init(entity=unique("compat"), project="w"):
        with pytest.raises(UsageError, match=r"torch is not installed in this environment \(pip install torch\); "
                                             "nothing is watched"):
            wandb.watch(object(), log="all", log_freq=10)
        wandb.unwatch()  # nothing watched: nothing to remove


def test_settings_names_and_errors(env: dict[str, str]) -> None:
    s = wandb.Settings(console="off", x_disable_stats=True, silent=True, reinit="create_new", start_method="thread")
    assert (s.console, s.disable_stats, s.quiet, s.x_disable_stats, s.reinit) == ("off", True, True, True,
                                                                                  "create_new")
    assert s.overrides() == {"console": "off", "disable_stats": True, "quiet": True}
    with pytest.raises(UsageError, match=r"unknown setting 'colour'; known: .*console"):
        wandb.Settings(colour="red")
    with pytest.raises(UsageError, match="unknown setting 'nope'"):
        wandb.init(project="x", settings={"nope": 1})
    run = wandb.init(entity=unique("compat"), project="s", settings=wandb.Settings(console="off", run_tags=("t",)))
    assert (run.settings.console, run.tags, run.settings.dir) == ("off", ("t",), Path(os.environ["RUNSTREAM_DIR"]))
    run.finish()


def test_login_stores_the_key_for_the_owner_only(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    data = tmp_path / "login-data"
    monkeypatch.setenv("RUNSTREAM_DIR", str(data))
    monkeypatch.setenv("RUNSTREAM_API_KEY", "")  # restored after the test; login() sets it
    data.mkdir()
    (data / "config.toml").write_text('entity = "nico"\n')
    assert wandb.login() is True
    assert wandb.login(key="k-123") is True
    cfg = data / "config.toml"
    assert cfg.read_text() == 'api_key = "k-123"\nentity = "nico"\n'
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    from runstream.settings import load_settings

    assert load_settings(env={"RUNSTREAM_DIR": str(data)}).api_key == "k-123"
    assert os.environ["RUNSTREAM_API_KEY"] == "k-123"
    with pytest.raises(UsageError, match="API key"):
        wandb.login(key="two words")


# -- media -----------------------------------------------------------------------------------------


def test_media_in_a_training_loop(env: dict[str, str], tmp_path: Path) -> None:
    entity = unique("compat")
    rng = np.random.default_rng(0)
    run = wandb.init(entity=entity, project="media", settings={"console": "off"})
    images = []
    for epoch in range(3):
        pixels = (rng.random((6, 4, 3)) * 255).astype(np.uint8)
        images.append(pixels)
        weights = rng.normal(size=200)
        wandb.log({"epoch": epoch, "samples": wandb.Image(pixels, caption=f"epoch {epoch}"),
                   "weights": wandb.Histogram(weights, num_bins=16),
                   "grads": wandb.Histogram(np_histogram=np.histogram(weights, bins=4))})
    table = wandb.Table(columns=["id", "pred", "truth"])
    for i, (p, t) in enumerate([("cat", "cat"), ("dog", "cat")]):
        table.add_data(i, p, t)
    table.add_column("correct", [True, False])
    wandb.log({"predictions": table, "val": {"examples": [wandb.Image(images[0]), wandb.Image(images[1])]}})
    wandb.log({"page": wandb.Html("<h1>report</h1>"),
               "clip": wandb.Audio(np.sin(np.linspace(0, 6.28, 800)), sample_rate=8000, caption="tone"),
               "movie": wandb.Video((rng.random((3, 3, 5, 4)) * 255).astype(np.uint8), fps=2)})
    run.finish()
    path = f"{entity}/media/{run.id}"
    uid = uid_of(path)
    rows = sql("SELECT step, key, type, width, height, \"rows\", \"columns\", bins, count, caption FROM media "
               "WHERE run_uid = ? ORDER BY step, key", [uid])
    assert rows == [
        (0, "grads", "histogram", None, None, None, None, 4, None, None),
        (0, "samples", "image-file", 4, 6, None, None, None, None, "epoch 0"),
        (0, "weights", "histogram", None, None, None, None, 16, None, None),
        (1, "grads", "histogram", None, None, None, None, 4, None, None),
        (1, "samples", "image-file", 4, 6, None, None, None, None, "epoch 1"),
        (1, "weights", "histogram", None, None, None, None, 16, None, None),
        (2, "grads", "histogram", None, None, None, None, 4, None, None),
        (2, "samples", "image-file", 4, 6, None, None, None, None, "epoch 2"),
        (2, "weights", "histogram", None, None, None, None, 16, None, None),
        (3, "predictions", "table-file", None, None, 2, 4, None, None, None),
        (3, "val.examples", "images", None, None, None, None, None, 2, None),
        (4, "clip", "audio-file", None, None, None, None, None, None, "tone"),
        (4, "movie", "video-file", 4, 5, None, None, None, None, None),
        (4, "page", "html-file", None, None, None, None, None, None, None),
    ]
    # bytes in = bytes out: every stored object is the file the SDK wrote
    api_run = wandb.Api().run(path)
    stored = {f.name: f for f in api_run.files()}
    media = sql("SELECT path, sha256 FROM media WHERE run_uid = ? AND path IS NOT NULL", [uid])
    assert len(media) == 7
    for name, sha in media:
        local = (run.dir / name).read_bytes()
        assert stored[name].sha256 == sha
        stored[name].download(str(tmp_path / "dl"))
        assert (tmp_path / "dl" / name).read_bytes() == local
    from runstream.media import png_bytes

    first = sql("SELECT path FROM media WHERE run_uid = ? AND key = 'samples' AND step = 0", [uid])[0][0]
    assert (tmp_path / "dl" / first).read_bytes() == png_bytes(images[0].tobytes(), 4, 6, 3)
    import pyarrow.parquet as pq

    tpath = sql("SELECT path FROM media WHERE run_uid = ? AND key = 'predictions'", [uid])[0][0]
    assert pq.read_table(tmp_path / "dl" / tpath).to_pylist() == [
        {"id": 0, "pred": "cat", "truth": "cat", "correct": True},
        {"id": 1, "pred": "dog", "truth": "cat", "correct": False}]
    # through the Api too
    api_media = api_run.media("samples")
    assert [(m["step"], m["caption"], m["reference"]["width"]) for m in api_media] == [
        (0, "epoch 0", 4), (1, "epoch 1", 4), (2, "epoch 2", 4)]
    assert api_run.media_table("predictions").to_dict("records") == [
        {"id": 0, "pred": "cat", "truth": "cat", "correct": True},
        {"id": 1, "pred": "dog", "truth": "cat", "correct": False}]
    hist = json.loads(sql("SELECT reference FROM media WHERE run_uid = ? AND key = 'grads' AND step = 0", [uid])[0][0])
    counts, edges = np.histogram(rng_weights_first(), bins=4)
    assert hist["values"] == counts.tolist() and hist["bins"] == edges.tolist()


def rng_weights_first() -> Any:
    rng = np.random.default_rng(0)
    rng.random((6, 4, 3))
    return rng.normal(size=200)


def test_media_round_trip_bytes_for_files(env: dict[str, str], tmp_path: Path) -> None:
    """A file given by path (image, audio, video, html) is stored byte for byte."""
    entity = unique("compat")
    blobs = {"pic.gif": b"GIF89a\x03\x00\x02\x00" + bytes(range(40)), "snd.ogg": b"OggS" + bytes(100),
             "clip.mp4": b"\x00\x00\x00\x18ftypmp42" + bytes(64), "page.html": b"<p>hi</p>"}
    for name, data in blobs.items():
        (tmp_path / name).write_bytes(data)
    with wandb.init(entity=entity, project="bytes") as run:
        run.log({"pic": wandb.Image("pic.gif"), "snd": wandb.Audio("snd.ogg"), "clip": wandb.Video("clip.mp4"),
                 "page": wandb.Html(str(tmp_path / "page.html"))})
    uid = uid_of(f"{entity}/bytes/{run.id}")
    got = {k: (t, w, h) for k, t, w, h in sql("SELECT key, format, width, height FROM media WHERE run_uid = ?", [uid])}
    assert got == {"pic": ("gif", 3, 2), "snd": ("ogg", None, None), "clip": ("mp4", None, None),
                   "page": ("html", None, None)}
    files = {f.name: f for f in wandb.Api().run(f"{entity}/bytes/{run.id}").files()}
    for key, src in (("pic", "pic.gif"), ("snd", "snd.ogg"), ("clip", "clip.mp4"), ("page", "page.html")):
        (name,) = sql("SELECT path FROM media WHERE run_uid = ? AND key = ?", [uid, key])[0]
        files[name].download(str(tmp_path / "out"))
        assert (tmp_path / "out" / name).read_bytes() == blobs[src]


# -- the first run: links, files in the run folder -----------------------------------------------------


def test_run_folder_holds_output_config_and_summary(env: dict[str, str], tmp_path: Path) -> None:
    entity = unique("compat")
    script = f"""
        import runstream as wandb
        run = wandb.init(entity={entity!r}, project="first", config={{"lr": 0.1}})
        print("epoch 1 done")
        print("progress 10%", end="\\r"); print("progress 100%")
        wandb.log({{"loss": 0.5}})
        wandb.summary["best"] = 0.4
        print(run.dir)
    """
    proc = python(script, env_with(env, RUNSTREAM_QUIET="0"), tmp_path, check=True)
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    assert (run_dir / "output.log").read_text() == "epoch 1 done\nprogress 100%\n" + f"{run_dir}\n"
    assert json.loads((run_dir / "config.json").read_text()) == {"lr": 0.1}
    assert json.loads((run_dir / "summary.json").read_text()) == {"loss": 0.5, "best": 0.4}
    url = env["RUNSTREAM_API_URL"]
    lines = [ln for ln in proc.stderr.splitlines() if "View" in ln or "Synced" in ln]
    run_id = run_dir.name.rsplit("-", 1)[-1]
    assert lines == [
        f"runstream: ⭐️ View project at {url}/{entity}/first",
        f"runstream: 🚀 View run at {url}/{entity}/first/runs/{run_id}",
        f"runstream: 🚀 View run {sql('SELECT name FROM runs WHERE run_id = ?', [run_id])[0][0]} at: "
        f"{url}/{entity}/first/runs/{run_id}",
        f"runstream: ⭐️ View project at: {url}/{entity}/first",
        "runstream: Synced 0 file(s), 0 media file(s), 0 artifact file(s)",
    ]


def test_a_multiprocessing_pool_of_runs(env: dict[str, str], tmp_path: Path) -> None:
    """W&B's pattern: one run per worker process, each finished by the worker."""
    entity = unique("compat")
    script = f"""
        import multiprocessing as mp
        import runstream as wandb

        def train(i):
            run = wandb.init(entity={entity!r}, project="pool", group="pool", config={{"worker": i}})
            print(f"worker {{i}}")
            for step in range(5):
                wandb.log({{"loss": (i + 1) / (step + 1)}})
            wandb.finish()
            return run.id

        if __name__ == "__main__":
            parent = wandb.init(entity={entity!r}, project="pool-parent")
            print("parent before")
            ids = []
            for method in ("spawn", "fork"):  # fork: the children inherit the parent's run and must not use it
                with mp.get_context(method).Pool(3) as pool:
                    ids += pool.map(train, range(3))
            print("parent after")
            wandb.log({{"done": 1.0}})
            wandb.finish()
            print(",".join(ids))
    """
    (tmp_path / "pool_script.py").write_text(__import__("textwrap").dedent(script))
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "pool_script.py"], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr
    ids = proc.stdout.strip().splitlines()[-1].split(",")
    assert len(set(ids)) == 6
    rows = sql("SELECT r.run_id, c.value, count(h.step) FROM runs r JOIN config c USING (run_uid) "
               "JOIN history h USING (run_uid) WHERE r.entity = ? AND c.key = 'worker' AND h.key = 'loss' "
               "AND r.state = 'finished' GROUP BY ALL ORDER BY c.value, r.run_id", [entity])
    assert [(v, n) for _, v, n in rows] == [(0.0, 5), (0.0, 5), (1.0, 5), (1.0, 5), (2.0, 5), (2.0, 5)]
    assert sorted(r for r, _, _ in rows) == sorted(ids)
    (parent,) = sql("SELECT run_uid FROM runs WHERE entity = ? AND project = 'pool-parent' AND state = 'finished'",
                    [entity])[0]
    assert sql("SELECT text FROM console WHERE run_uid = ? ORDER BY line", [parent]) == [
        ("parent before",), ("parent after",)]
    assert sql("SELECT key, value FROM history WHERE run_uid = ?", [parent]) == [("done", 1.0)]
    assert sql("SELECT c.value, string_agg(o.text, '|') FROM runs r JOIN config c USING (run_uid) "
               "JOIN console o USING (run_uid) WHERE r.entity = ? AND c.key = 'worker' GROUP BY ALL ORDER BY ALL",
               [entity]) == [(0.0, "worker 0|worker 0"), (1.0, "worker 1|worker 1"), (2.0, "worker 2|worker 2")]


def test_disabled_mode_accepts_the_whole_script(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    run = wandb.init(project="off", mode="disabled", config={"lr": 0.1})
    assert wandb.run is run
    wandb.config.update({"bs": 2})
    wandb.config.seed = 3
    wandb.log({"loss": 1.0, "img": wandb.Histogram([1, 2, 3])})
    wandb.summary["best"] = 1
    wandb.define_metric("loss", summary="min")
    assert wandb.save("f.txt") == [] and wandb.log_code(".") is None and run.url is None
    wandb.log_artifact("f.txt", name="a", type="data")
    wandb.alert("t", "x")
    assert wandb.config.as_dict() == {"lr": 0.1, "bs": 2, "seed": 3}
    wandb.finish()
    assert wandb.run is None


def test_tables_from_dataframes_and_plotly_figures(env: dict[str, str], tmp_path: Path) -> None:
    import pandas as pd
    import plotly.graph_objects as go

    entity = unique("compat")
    df = pd.DataFrame({"epoch": [0, 1], "acc": [0.5, 0.75], "note": ["a", None]})
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0.5, 0.75]))
    with wandb.init(entity=entity, project="frames", settings={"console": "off"}) as run:
        wandb.log({"df": wandb.Table(dataframe=df), "curve": fig, "explicit": wandb.Plotly(fig)})
    uid = uid_of(f"{entity}/frames/{run.id}")
    rows = sql("SELECT key, type, \"rows\", \"columns\" FROM media WHERE run_uid = ? ORDER BY key", [uid])
    assert rows == [("curve", "plotly-file", None, None), ("df", "table-file", 2, 3),
                    ("explicit", "plotly-file", None, None)]
    import pyarrow.parquet as pq

    (path,) = sql("SELECT path FROM media WHERE run_uid = ? AND key = 'df'", [uid])[0]
    assert pq.read_table(run.dir / path).to_pylist() == [{"epoch": 0, "acc": 0.5, "note": "a"},
                                                         {"epoch": 1, "acc": 0.75, "note": None}]
    (curve,) = sql("SELECT path FROM media WHERE run_uid = ? AND key = 'curve'", [uid])[0]
    assert json.loads((run.dir / curve).read_bytes())["data"][0]["y"] == [0.5, 0.75]
    assert wandb.Api().run(f"{entity}/frames/{run.id}").url == (
        f"{os.environ['RUNSTREAM_API_URL']}/{entity}/frames/runs/{run.id}")


def test_offline_media_reach_the_server_with_sync_and_save_code(env: dict[str, str], tmp_path: Path) -> None:
    """Media of an offline run wait in its spool like any file; `runstream sync` sends them. The
    closing lines count media apart from other files; save_code=True saves the script."""
    entity = unique("compat")
    (tmp_path / "train.py").write_text(__import__("textwrap").dedent(f"""
        import numpy as np
        import runstream as wandb
        for mode in ("offline", "online"):
            run = wandb.init(entity={entity!r}, project="sync", mode=mode, save_code=True, reinit=True)
            wandb.log({{"img": wandb.Image(np.zeros((2, 2), np.uint8)), "t": wandb.Table(data=[[1]])}})
            wandb.finish()
            print(run.dir)
    """))
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "train.py"], env=env_with(env, RUNSTREAM_QUIET="0"), cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    offline_dir, online_dir = (Path(p) for p in proc.stdout.split())
    assert "runstream: Synced 1 file(s), 2 media file(s), 0 artifact file(s)\n" in proc.stderr  # train.py + 2
    from runstream.cli import main as cli_main

    assert cli_main(["sync", str(offline_dir)]) == 0
    for d in (offline_dir, online_dir):
        uid = uid_of(f"{entity}/sync/{d.name.rsplit('-', 1)[-1]}")
        assert sql("SELECT key, type FROM media WHERE run_uid = ? ORDER BY key", [uid]) == [
            ("img", "image-file"), ("t", "table-file")]
        names = sorted(n for (n,) in sql("SELECT name FROM files WHERE run_uid = ?", [uid]))
        assert [n.split("/")[1] if n.startswith("media/") else n for n in names] == ["images", "tables", "train.py"]
