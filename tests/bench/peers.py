"""The peers' side of each scenario: W&B offline, MLflow (SQLite store and file store), Aim.

Each adapter does what a user of that tool does, with the tool's defaults apart from what keeps it
local (W&B offline and silent, a temp directory for everything). The scenario functions are run in
a fresh interpreter by :mod:`.child`; they return plain dicts of figures.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from array import array
from pathlib import Path
from typing import Any

from .errors import NotApplicable, NotInstalled
from .stats import write_phases

PEERS = ("wandb", "mlflow-sqlite", "mlflow-file", "aim")


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


class Peer:
    """One run of one peer: import, init, log a step, finish, count what was stored, disk bytes."""

    name = ""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def import_(self) -> None: ...
    def init(self, run_name: str, config: dict[str, Any]) -> None: ...
    def log(self, step: int, values: dict[str, float]) -> None: ...
    def finish(self) -> None: ...

    def stored_points(self) -> int | None:
        """How many points a reader finds for this run (None: the peer has no way to count)."""
        return None

    def store_bytes(self) -> int:
        return 0


class WandbPeer(Peer):
    name = "wandb"

    def import_(self) -> None:
        os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(self.workdir))
        try:
            import wandb
        except ImportError as e:
            raise NotInstalled(f"wandb: {e}") from e
        self.wandb = wandb

    def init(self, run_name: str, config: dict[str, Any]) -> None:
        self.run = self.wandb.init(project="bench", name=run_name, config=config)
        self.run_dir = Path(self.run.dir).parent

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values)

    def finish(self) -> None:
        self.run.finish()

    def store_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.run_dir.glob("*.wandb"))


class MlflowPeer(Peer):
    def __init__(self, workdir: Path, store: str) -> None:
        super().__init__(workdir)
        self.store = store
        self.name = f"mlflow-{store}"

    def import_(self) -> None:
        if self.store == "file":
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
            self.uri = f"file://{self.workdir / 'mlruns'}"
        else:
            self.uri = f"sqlite:///{self.workdir / 'mlflow.db'}"
        try:
            import mlflow
        except ImportError as e:
            raise NotInstalled(f"mlflow: {e}") from e
        self.mlflow = mlflow

    def init(self, run_name: str, config: dict[str, Any]) -> None:
        self.mlflow.set_tracking_uri(self.uri)
        self.mlflow.set_experiment("bench")
        self.run = self.mlflow.start_run(run_name=run_name)
        self.mlflow.log_params(config)
        self.run_id = self.run.info.run_id

    def log(self, step: int, values: dict[str, float]) -> None:
        self.mlflow.log_metrics(values, step=step)

    def finish(self) -> None:
        self.mlflow.end_run()

    def stored_points(self) -> int | None:
        if self.store == "sqlite":
            with sqlite3.connect(self.workdir / "mlflow.db") as db:
                (n,) = db.execute("SELECT count(*) FROM metrics WHERE run_uuid = ?", (self.run_id,)).fetchone()
            return int(n)
        n = 0
        for f in (self.workdir / "mlruns").glob(f"*/{self.run_id}/metrics/**/*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    n += sum(1 for line in fh if line.strip())
        return n

    def store_bytes(self) -> int:
        if self.store == "sqlite":
            return sum(p.stat().st_size for p in self.workdir.glob("mlflow.db*"))
        return dir_bytes(self.workdir / "mlruns")


class AimPeer(Peer):
    name = "aim"

    def import_(self) -> None:
        try:
            import aim
        except ImportError as e:
            raise NotInstalled(f"aim: {e}") from e
        self.aim = aim

    def init(self, run_name: str, config: dict[str, Any]) -> None:
        self.run = self.aim.Run(repo=str(self.workdir / "aim"), experiment="bench")
        self.run.name = run_name
        self.run["hparams"] = config

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.track(values, step=step)

    def finish(self) -> None:
        self.run.close()

    def store_bytes(self) -> int:
        return dir_bytes(self.workdir / "aim")


def make_peer(system: str, workdir: Path) -> Peer:
    if system == "wandb":
        return WandbPeer(workdir)
    if system == "mlflow-sqlite":
        return MlflowPeer(workdir, "sqlite")
    if system == "mlflow-file":
        return MlflowPeer(workdir, "file")
    if system == "aim":
        return AimPeer(workdir)
    raise ValueError(f"unknown peer {system!r}")


def mark_phase_end() -> None:
    """Tell the orchestrator's RSS sampler that the measured phase is over."""
    Path("rss.mark").touch()


def row_values(step: int, metrics: int) -> dict[str, float]:
    return {f"m{j}": step * 0.001 + j for j in range(metrics)}


def write(system: str, params: dict[str, Any]) -> dict[str, Any]:
    """One run × ``steps`` × ``metrics`` floats: per-call µs, log→flushed rate, bytes per point."""
    steps, metrics = int(params["steps"]), int(params["metrics"])
    peer = make_peer(system, Path.cwd())
    t0 = time.perf_counter()
    peer.import_()
    t1 = time.perf_counter()
    peer.init("write", {"lr": 0.01, "batch": 32})
    t2 = time.perf_counter()
    base = peer.store_bytes()
    per_call = array("q", bytes(8 * steps))
    clock = time.perf_counter_ns
    log = peer.log
    t_first = time.perf_counter()
    for i in range(steps):
        row = row_values(i, metrics)  # built outside the timed call, and not all kept in memory
        a = clock()
        log(i, row)
        per_call[i] = clock() - a
    t3 = time.perf_counter()
    peer.finish()
    t4 = time.perf_counter()
    mark_phase_end()
    flushed = (t4 - t_first) - ((t3 - t_first) - sum(per_call) / 1e9)
    points = steps * metrics
    stored = peer.stored_points()
    disk = peer.store_bytes() - base
    return {
        **write_phases(steps, metrics, per_call, t0, t1, t2, t3, t4),
        "flushed_s": flushed,  # less the loop's own work (building each row): the benchmark's time
        "e2e_pps": points / flushed,
        "stored_points": stored,
        "disk_bytes": disk,
        "bytes_per_point": disk / points,
        "check_count": None if stored is None else stored == points,
    }


def startup(system: str, params: dict[str, Any]) -> dict[str, Any]:
    """Import, init and finish of an empty run, each timed inside the process."""
    peer = make_peer(system, Path.cwd())
    t0 = time.perf_counter()
    peer.import_()
    t1 = time.perf_counter()
    peer.init("empty", {"lr": 0.01})
    t2 = time.perf_counter()
    peer.finish()
    t3 = time.perf_counter()
    return {"import_s": t1 - t0, "init_s": t2 - t1, "finish_s": t3 - t2}


def empty_run_snippet(system: str) -> str:
    """A whole empty-run process, as a user would write it."""
    if system == "wandb":
        return (
            "import os; os.environ.update(WANDB_MODE='offline', WANDB_SILENT='true', WANDB_DIR=os.getcwd())\n"
            "import wandb; wandb.init(project='bench').finish()"
        )
    if system == "mlflow-sqlite":
        return (
            "import mlflow, os; mlflow.set_tracking_uri('sqlite:///' + os.getcwd() + '/mlflow.db')\n"
            "mlflow.set_experiment('bench'); mlflow.start_run(); mlflow.end_run()"
        )
    if system == "mlflow-file":
        return (
            "import os; os.environ['MLFLOW_ALLOW_FILE_STORE'] = 'true'\n"
            "import mlflow; mlflow.set_tracking_uri('file://' + os.getcwd() + '/mlruns')\n"
            "mlflow.set_experiment('bench'); mlflow.start_run(); mlflow.end_run()"
        )
    if system == "aim":
        return "import aim, os; aim.Run(repo=os.getcwd() + '/aim', experiment='bench').close()"
    raise ValueError(system)


def many_worker(system: str, params: dict[str, Any]) -> dict[str, Any]:
    """One of the many writers: init, wait for the start signal, log, finish."""
    steps, metrics, index = int(params["steps"]), int(params["metrics"]), int(params["index"])
    peer = make_peer(system, Path(params["store_dir"]))
    peer.import_()
    peer.init(f"writer-{index}", {"index": index})
    rows = [row_values(i, metrics) for i in range(steps)]
    go = Path(params["go_file"])
    Path(params["ready_file"]).touch()
    while not go.exists():
        time.sleep(0.001)
    t0 = time.time()
    for i in range(steps):
        peer.log(i, rows[i])
    peer.finish()
    stored = peer.stored_points()
    return {"start": t0, "end": time.time(), "stored_points": stored}


def many(system: str, params: dict[str, Any]) -> dict[str, Any]:
    """``procs`` processes, each its own run, released together: total points/s until all finished."""
    from .spawn import release_workers

    procs, steps, metrics = int(params["procs"]), int(params["steps"]), int(params["metrics"])
    store = Path.cwd() / "store"
    store.mkdir(exist_ok=True)
    # create the store once, as a user would before a sweep (MLflow's SQLite schema migration and
    # Aim's repo creation race when 16 processes do it at once); also fails early when not installed
    setup = make_peer(system, store)
    setup.import_()
    setup.init("setup", {})
    setup.finish()
    results, t_go, t_end = release_workers(
        system, procs, {"steps": steps, "metrics": metrics, "store_dir": str(store)}, Path.cwd()
    )
    points = procs * steps * metrics
    stored = [r.get("stored_points") for r in results]
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError(f"{len(errors)} of {procs} writers failed: {errors[0][:300]}")
    check = None if any(s is None for s in stored) else sum(stored) == points  # type: ignore[arg-type]
    return {
        "procs": procs,
        "points": points,
        "seconds": t_end - t_go,
        "many_pps": points / (t_end - t_go),
        "check_count": check,
    }


# -- row 5: reads ----------------------------------------------------------------------------------

NO_QUERY_API = "W&B offline keeps runs in .wandb files; its query API (wandb.Api) needs the W&B server"


def _timed(fn: Any, reps: int) -> tuple[float, Any]:
    """The median of ``reps`` timed calls of ``fn`` (warm: the caller ran it once), and a result."""
    times, res = [], None
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        res = fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2], res


def _mlflow(store: str) -> tuple[Any, Any, str]:
    """(mlflow, a client, the experiment id) on a fresh local store in the working directory."""
    peer = MlflowPeer(Path.cwd(), store)
    peer.import_()
    mlflow = peer.mlflow
    mlflow.set_tracking_uri(peer.uri)
    client = mlflow.MlflowClient()
    exp = client.create_experiment("bench-read")
    return mlflow, client, exp


def _aim_index(aim: Any, hashes: list[str]) -> None:
    """Index finished runs into the repo's meta index, which Aim's readers query: what ``aim up``'s
    background indexer does (not timed; without it, a script sees no runs at all)."""
    from aim.sdk.index_manager import RepoIndexManager

    mgr = RepoIndexManager.get_index_manager(aim.Repo(str(Path.cwd() / "aim")))
    for h in hashes:
        mgr.index(h)


def _mlflow_metrics(rows: list[tuple[int, float, dict[str, float]]]) -> list[Any]:
    from mlflow.entities import Metric

    return [Metric(k, v, int(ts * 1000), step) for step, ts, values in rows for k, v in values.items()]


def read_history(system: str, params: dict[str, Any]) -> dict[str, Any]:
    """One run of ``steps`` × ``metrics`` floats (stored as fast as the peer allows, not timed), read
    back into a pandas DataFrame (one row per step, a column per key) the way the peer's docs show;
    the first read and then the median of ``timed`` warm reads."""
    from .dataset import history_values

    steps, metrics, timed = int(params["steps"]), int(params["metrics"]), int(params.get("timed", 1))
    points = steps * metrics
    keys = [f"m{j}" for j in range(metrics)]
    if system == "wandb":
        raise NotApplicable(NO_QUERY_API)
    t0 = time.perf_counter()
    if system.startswith("mlflow"):
        mlflow, client, exp = _mlflow(system.removeprefix("mlflow-"))
        run_id = client.create_run(exp, run_name="history").info.run_id
        now = time.time()
        per_batch = max(1, 1000 // metrics)  # MLflow takes at most 1000 metrics per log_batch
        for a in range(0, steps, per_batch):
            rows = [(i, now + i, history_values(i, metrics)) for i in range(a, min(steps, a + per_batch))]
            client.log_batch(run_id, metrics=_mlflow_metrics(rows))
        client.set_terminated(run_id)

        def read() -> Any:
            import pandas as pd

            cols = {}
            for k in keys:
                hist = client.get_metric_history(run_id, k)
                cols[k] = pd.Series([m.value for m in hist], index=[m.step for m in hist])
            return pd.DataFrame(cols).rename_axis("step").reset_index()

    elif system == "aim":
        peer = AimPeer(Path.cwd())
        peer.import_()
        peer.init("history", {"lr": 0.01})
        for i in range(steps):
            peer.run.track(history_values(i, metrics), step=i)
        run_hash = peer.run.hash
        peer.finish()
        aim = peer.aim
        _aim_index(aim, [run_hash])

        def read() -> Any:
            import pandas as pd

            run = aim.Run(run_hash, repo=str(Path.cwd() / "aim"), read_only=True)
            wanted = set(keys)  # not Aim's own system metrics
            cols = {m.name: m.dataframe().set_index("step")["value"] for m in run.metrics() if m.name in wanted}
            return pd.DataFrame(cols).rename_axis("step").reset_index()

    else:
        raise ValueError(system)
    t1 = time.perf_counter()
    import pandas  # noqa: F401  (imported before the clock)

    t2 = time.perf_counter()
    df = read()
    first = time.perf_counter() - t2
    warm, df = _timed(read, timed)
    stored = int(df[[k for k in keys if k in df.columns]].notna().sum().sum())
    return {
        "steps": steps,
        "metrics": metrics,
        "points": points,
        "store_s": t1 - t0,
        "first_pandas_s": first,
        "pandas_s": warm,
        "shape": list(df.shape),
        "stored_points": stored,
        "check_count": stored == points and df.shape == (steps, metrics + 1),
    }


def read_runs(system: str, params: dict[str, Any]) -> dict[str, Any]:
    """A project of ``runs`` small runs (created with the peer's client, not timed); then, warm, the
    median of ``timed`` searches for lr > 0.01 sorted by final loss, as the peer's docs show
    (MLflow: ``search_runs`` with lr also logged as a metric, since params are strings; Aim:
    ``query_metrics`` then a sort by last value in Python: it has no server-side sort). Checked:
    exactly the expected runs, in order."""
    from .dataset import LR_THRESHOLD, expected, small_runs

    n, timed = int(params["runs"]), int(params.get("timed", 3))
    if system == "wandb":
        raise NotApplicable(NO_QUERY_API)
    runs = small_runs(n)
    want = expected(runs)
    t0 = time.perf_counter()
    if system.startswith("mlflow"):
        mlflow, client, exp = _mlflow(system.removeprefix("mlflow-"))
        from mlflow.entities import Param

        for r in runs:
            run_id = client.create_run(exp, run_name=r.run_id).info.run_id
            now = time.time()
            client.log_batch(
                run_id,
                metrics=_mlflow_metrics([(0, now, {"lr": r.lr}), *r.rows(now)]),
                params=[Param("lr", repr(r.lr)), Param("batch", "32")],
            )
            client.set_terminated(run_id)

        def search() -> list[str]:
            df = mlflow.search_runs(
                experiment_ids=[exp],
                filter_string=f"metrics.lr > {LR_THRESHOLD}",
                order_by=["metrics.loss ASC"],
            )
            return list(df["tags.mlflow.runName"])

    elif system == "aim":
        peer = AimPeer(Path.cwd())
        peer.import_()
        aim = peer.aim
        hashes = []
        for r in runs:
            peer.init(r.run_id, {"lr": r.lr, "batch": 32})
            for step, _ts, values in r.rows(time.time()):
                peer.run.track(values, step=step)
            hashes.append(peer.run.hash)
            peer.finish()
        _aim_index(aim, hashes)
        from aim.sdk.types import QueryReportMode

        def search() -> list[str]:
            repo = aim.Repo(str(Path.cwd() / "aim"))
            found = [
                (m.values.last_value(), m.run.name)
                for m in repo.query_metrics(
                    f"metric.name == 'loss' and run.hparams.lr > {LR_THRESHOLD}",
                    report_mode=QueryReportMode.DISABLED,
                )
            ]
            return [name for _loss, name in sorted(found)]

    else:
        raise ValueError(system)
    t1 = time.perf_counter()
    got = search()  # warm-up
    warm, got = _timed(search, timed)
    return {
        "runs": n,
        "create_ms_per_run": (t1 - t0) / n * 1000,
        "filter_sort_ms": warm * 1000,
        "matching": len(want),
        "returned": len(got),
        "check_count": got == want,
    }


if __name__ == "__main__":  # pragma: no cover - manual use
    print(json.dumps(write(sys.argv[1], {"steps": 100, "metrics": 10})))
