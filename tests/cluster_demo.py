"""``make cluster-demo``: runstream on the three-node cluster of ``deploy/``, one node killed mid-run.

On loopback (``python -m tests.cluster_demo``):

1. the NATS cluster of ``deploy/nats/node.conf.tmpl`` (:class:`tests.cluster.LocalCluster`);
2. two ``runstream server`` replicas on it, ``server-a`` and ``server-b``, each with its own
   directory, at ``RUNSTREAM_STREAM_REPLICAS=3``;
3. trainers (subprocesses: ``runstream.init`` / ``run.log`` / ``finish``), two per node: each one's
   ``RUNSTREAM_NATS_URL`` lists every node, starting with a different one;
4. once every trainer has logged a third of its steps, SIGKILL of the node leading the event
   stream (the node of a third of the trainers);
5. the killed node restarted, until its replica of the event stream is current again;
6. the check: for each replica, the rows in its ``history`` table (read from its DuckDB file after
   the servers stop) against the rows the trainers logged, the rows doubled, and the longest a
   trainer's ``log()`` call took (the stall) and its ``finish()``.

It exits 0 when every replica has every row exactly once, 1 otherwise, and leaves nothing running.
``--keep`` keeps the temporary directory (logs of the nodes, servers and trainers) for a look.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.cluster import LocalCluster

ENTITY, PROJECT = "demo", "cluster"
KEYS = ("loss", "acc")
SERVERS = ("server-a", "server-b")
MARK_EVERY = 10
"""A trainer notes the wall-clock time every this many steps (how many it had logged by a given time)."""


# -- the trainer (a child process: python -m tests.cluster_demo --trainer RUN_ID STEPS) --------------


def trainer(run_id: str, steps: int, pace: float) -> int:
    """Log ``steps`` steps of ``KEYS`` to run ``run_id``; print JSON lines: ``progress`` at a third
    of the steps, then the result (rows logged, longest ``log()`` in all and after the third with
    its wall-clock time, wall-clock time the last ``log()`` returned, ``finish()`` time, and
    ``marks``: ``marks[i]`` is when the ``log()`` of step ``(i + 1) * MARK_EVERY - 1`` returned)."""
    import runstream

    run = runstream.init(entity=ENTITY, project=PROJECT, id=run_id, config={"steps": steps})
    worst = worst_late = 0.0
    worst_late_at = 0.0
    marks: list[float] = []
    third = steps // 3
    for step in range(steps):
        t = time.perf_counter()
        run.log({"loss": 1.0 / (step + 1), "acc": step / steps})
        took = time.perf_counter() - t
        if (step + 1) % MARK_EVERY == 0:
            marks.append(round(time.time(), 4))
        worst = max(worst, took)
        if step > third and took > worst_late:  # after the progress line: the window of the kill
            worst_late, worst_late_at = took, time.time()
        if step == third:
            print(json.dumps({"progress": step}), flush=True)
        if pace:
            time.sleep(pace)  # the training's own work between two steps, not a wait on anything
    logged_at = time.time()
    t = time.perf_counter()
    run.finish()
    finish_s = time.perf_counter() - t
    print(json.dumps({"run_id": run_id, "rows": steps * len(KEYS), "max_log_s": worst, "finish_s": finish_s,
                      "max_log_late_s": worst_late, "max_log_late_at": worst_late_at, "logged_at": logged_at,
                      "marks": marks}),
          flush=True)
    return 0


# -- the demo ------------------------------------------------------------------------------------------


@dataclass
class Child:
    """A subprocess of the demo with its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        return self.proc.returncode


def spawn_child(name: str, args: list[str], env: dict[str, str], log: Path) -> Child:
    """``python ARGS`` with stdout and stderr appended to ``log`` (run in its folder)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        proc = subprocess.Popen([sys.executable, *args], env=env, stdout=fh, stderr=fh, stdin=subprocess.DEVNULL,
                                cwd=log.parent)
    return Child(name, proc, log)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, children: Sequence[Child] = (),
               max_interval: float = 0.5) -> Any:
    """Poll ``predicate`` (backing off from 50 ms to ``max_interval``) until it returns something
    truthy, and return that.

    Raises:
        RuntimeError: one of ``children`` exited with an error meanwhile (the message ends with its log).
        TimeoutError: not within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    interval = min(0.05, max_interval)
    while True:
        value = predicate()
        if value:
            return value
        for c in children:
            if c.proc.poll() is not None and c.proc.returncode != 0:
                raise RuntimeError(f"{c.name} exited with {c.proc.returncode} while waiting for {what}; "
                                   f"see {c.log}:\n{_tail(c.log)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
        interval = min(interval * 2, max_interval)


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def cluster_env(tmp: Path) -> dict[str, str]:
    """This process's environment for a child on the cluster: no ``RUNSTREAM_*`` of ours, streams
    at three replicas, quiet, ``RUNSTREAM_DIR`` under ``tmp``, this repository importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNSTREAM_")}
    env.update({"RUNSTREAM_STREAM_REPLICAS": "3", "RUNSTREAM_QUIET": "1", "RUNSTREAM_DIR": str(tmp / "home"),
                "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent.parent),
                                               env.get("PYTHONPATH", "")]).rstrip(os.pathsep)})
    return env


def start_server(name: str, url_list: str, tmp: Path) -> Child:
    d = tmp / name
    d.mkdir(parents=True)
    env = dict(cluster_env(tmp), RUNSTREAM_SERVER_NAME=name)
    return spawn_child(name, ["-m", "runstream.query.server", "--dir", str(d), "--nats-url", url_list, "--name", name,
                         "--http-port", "0"], env, d / "server.log")


def server_ready(srv: Child) -> bool:
    from runstream.query.server import READY_FILE

    ready = srv.log.parent / READY_FILE
    return bool(ready.exists() and ready.read_text().strip() == str(srv.proc.pid))


def start_trainers(cluster: LocalCluster, tmp: Path, per_node: int, steps: int, pace: float,
                   timeout: float) -> list[Child]:
    """``per_node`` trainer processes starting on each node of ``cluster`` (their URL list begins
    with it); each one's node name is in ``extra["node"]``, its folder under ``tmp/trainers``."""
    trainers: list[Child] = []
    for node in range(len(cluster.nodes)):
        for k in range(per_node):
            run_id = f"n{node + 1}-t{k}"
            d = tmp / "trainers" / run_id
            env = dict(cluster_env(tmp), RUNSTREAM_NATS_URL=cluster.rotated_url_list(node),
                       RUNSTREAM_RUN_DIR=str(d), RUNSTREAM_STATS_INTERVAL="0", RUNSTREAM_CONSOLE="off",
                       RUNSTREAM_CODE_SNAPSHOT="0", RUNSTREAM_FINISH_TIMEOUT=str(int(timeout)))
            child = spawn_child(run_id, ["-m", "tests.cluster_demo", "--trainer", run_id, str(steps), str(pace)],
                                env, d / "trainer.log")
            child.extra["node"] = cluster.nodes[node].name
            trainers.append(child)
    return trainers


def kill_leader_mid_run(cluster: LocalCluster, trainers: Sequence[Child], timeout: float,
                        poll: float = 0.5, before_kill: Callable[[str], Any] | None = None) -> tuple[str, float, float]:
    """Once every trainer has logged a third of its steps, SIGKILL the node leading the event
    stream; return its name and when it died (``time.monotonic()``, ``time.time()``). ``poll`` is
    the longest pause between two looks at the trainers' progress; ``before_kill(name)`` runs just
    before the kill (e.g. to list who is connected to that node)."""
    from runstream.broker.names import STREAM

    wait_until(lambda: all(any("progress" in x for x in t.lines()) for t in trainers), timeout,
               "every trainer to log a third of its steps", trainers, max_interval=poll)
    victim = str(wait_until(lambda: cluster.stream_leader(STREAM), timeout, f"a leader of {STREAM}",
                            max_interval=poll))
    if before_kill is not None:
        before_kill(victim)
    cluster.kill(cluster.index_of(victim))
    return victim, time.monotonic(), time.time()


def trainer_results(trainers: Sequence[Child]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The result line of each trainer that exited 0 with one (by name), and a sentence for each
    that did not."""
    results: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    for t in trainers:
        res = [x for x in t.lines() if "rows" in x]
        if t.proc.returncode != 0 or not res:
            failures.append(f"{t.name} exited with {t.proc.returncode} and no result; see {t.log}:\n{_tail(t.log)}")
            continue
        results[t.name] = res[-1]
    return results, failures


def history_rows(srv: Child) -> int | None:
    """Rows of the demo's keys in a live server's ``history`` (over its HTTP API); None if it
    does not answer now."""
    per_run = history_rows_per_run(srv)
    return None if per_run is None else sum(per_run.values())


def history_rows_per_run(srv: Child) -> dict[str, int] | None:
    """Rows of the demo's keys in a live server's ``history`` by run id (runs without rows left
    out); None if it does not answer now."""
    from runstream import Api
    from runstream.query.server import read_http_url

    url = read_http_url(srv.log.parent, srv.proc.pid)
    if not url:
        return None
    try:
        table = Api(base_url=url, fresh=False, timeout=10).sql(
            f"SELECT r.run_id, count(*) AS n FROM history h JOIN runs r USING (run_uid) "
            f"WHERE r.entity = '{ENTITY}' AND r.project = '{PROJECT}' AND h.key IN {KEYS!r} GROUP BY r.run_id",
            pandas=False)
    except Exception:
        return None
    return {str(r["run_id"]): int(r["n"]) for r in table.to_pylist()}


def replica_check(db: Path) -> dict[str, Any]:
    """From a stopped server's DuckDB file: rows per run of the demo's keys, rows doubled (the same
    (run, step, key) stored twice, or an event applied twice), runs not finished."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        keys = ", ".join(f"'{k}'" for k in KEYS)
        per_run = dict(con.execute(
            f"SELECT r.run_id, count(h.step) FROM runs r LEFT JOIN history h ON h.run_uid = r.run_uid "
            f"AND h.key IN ({keys}) WHERE r.entity = ? AND r.project = ? GROUP BY r.run_id",
            [ENTITY, PROJECT]).fetchall())
        (stored_twice,) = con.execute(
            f"SELECT count(*) - count(DISTINCT (n.run, n.step, n.key)) FROM history_numeric n "
            f"JOIN history_key_ids k ON k.id = n.key WHERE k.key IN ({keys})").fetchone() or (0,)
        (applied_twice,) = con.execute(
            "SELECT count(*) - count(DISTINCT (run_uid, writer, seq)) FROM applied").fetchone() or (0,)
        states = dict(con.execute("SELECT run_id, state FROM runs WHERE entity = ? AND project = ?",
                                  [ENTITY, PROJECT]).fetchall())
    finally:
        con.close()
    return {"per_run": per_run, "doubled": int(stored_twice) + int(applied_twice), "states": states}


def stream_replicas(cluster: LocalCluster) -> list[str]:
    """``NAME Rn (leader X)`` for each stream of the log, as its leader reports it."""
    from runstream.broker.streams import log_stream_configs

    out = []
    for cfg in log_stream_configs():
        name = cfg["name"]
        leader = cluster.stream_leader(name)
        detail = cluster.stream_detail(cluster.index_of(leader), name) if leader else None
        if detail is None:
            out.append(f"{name} (no leader)")
            continue
        replicas = 1 + len((detail.get("cluster") or {}).get("replicas") or [])
        out.append(f"{name} R{replicas} (leader {leader})")
    return out


def demo(trainers_per_node: int, steps: int, pace: float, timeout: float, keep: bool, out: IO[str]) -> int:
    from runstream.broker.names import STREAM
    from runstream.query.server import DB_FILE
    from tests.cluster import ClusterError, LocalCluster

    def say(msg: str) -> None:
        print(msg, file=out, flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="runstream-cluster-demo-"))
    cluster = LocalCluster(tmp / "cluster", nodes=3, timeout=timeout)
    children: list[Child] = []
    ok = False
    try:
        cluster.start()
        say(f"cluster   3 nodes on loopback: {cluster.url_list}  (meta leader {cluster.meta_leader(0)})")

        servers = [start_server(name, cluster.rotated_url_list(i), tmp) for i, name in enumerate(SERVERS)]
        children += servers
        for srv in servers:
            wait_until(functools.partial(server_ready, srv), timeout, f"{srv.name} to be ready", [srv])
        say(f"servers   {', '.join(SERVERS)} ready (RUNSTREAM_STREAM_REPLICAS=3)")
        say(f"streams   {', '.join(stream_replicas(cluster))}")

        trainers = start_trainers(cluster, tmp, trainers_per_node, steps, pace, timeout)
        children += trainers
        say(f"trainers  {len(trainers)} x {steps} steps x {len(KEYS)} keys, {trainers_per_node} starting on each node")

        victim, killed_at, _ = kill_leader_mid_run(cluster, trainers, timeout)
        on_victim = [t.name for t in trainers if t.extra["node"] == victim]
        say(f"kill      SIGKILL {victim} (leader of {STREAM}; first node of trainers {', '.join(on_victim)})")

        wait_until(lambda: all(t.proc.poll() is not None for t in trainers), timeout * 3, "the trainers to finish")
        results, failures = trainer_results(trainers)
        for failure in failures:
            say(f"trainer   {failure}")
        logged = sum(r["rows"] for r in results.values()) if len(results) == len(trainers) else None
        expected = len(trainers) * steps * len(KEYS)

        def converged() -> bool:
            return all(history_rows(s) == expected for s in servers)

        try:
            wait_until(converged, timeout, "both replicas to hold every row", servers)
            say(f"project   both replicas hold {expected} rows {time.monotonic() - killed_at:.1f}s after the kill")
        except TimeoutError as e:
            say(f"project   {e}: {', '.join(f'{s.name} {history_rows(s)}' for s in servers)} of {expected}")

        t = time.monotonic()
        cluster.restart(cluster.index_of(victim))
        try:
            cluster.wait_for(lambda: cluster.replica_current(STREAM, victim), f"{victim} to catch up on {STREAM}")
            say(f"rejoin    {victim} restarted; its {STREAM} replica is current after {time.monotonic() - t:.1f}s")
        except ClusterError as e:
            say(f"rejoin    {str(e).splitlines()[0]}")

        codes = {s.name: s.stop() for s in servers}
        checks = {s.name: replica_check(s.log.parent / DB_FILE) for s in servers}
        worst_log = max((r["max_log_s"] for r in results.values()), default=float("nan"))
        worst_finish = max((r["finish_s"] for r in results.values()), default=float("nan"))

        say("")
        say(f"rows logged      {logged if logged is not None else 'unknown (a trainer failed)'} "
            f"(expected {expected})")
        ok = logged == expected
        for name, check in checks.items():
            rows = sum(check["per_run"].values())
            lost = expected - rows if rows <= expected else 0
            short = sorted(f"{r}:{n}" for r, n in check["per_run"].items() if n != steps * len(KEYS))
            unfinished = sorted(r for r, s in check["states"].items() if s != "finished")
            say(f"{name:<16} {rows} rows, {lost} lost, {check['doubled']} doubled, exit {codes[name]}"
                + (f"; short runs {short}" if short else "")
                + (f"; not finished {unfinished}" if unfinished else ""))
            ok = ok and rows == expected and check["doubled"] == 0 and len(check["per_run"]) == len(trainers)
            ok = ok and codes[name] == 0
        say(f"stall            longest log() {worst_log * 1000:.1f} ms, longest finish() {worst_finish:.2f} s")
        if on_victim:
            on = [results[n] for n in on_victim if n in results]
            if on:
                say(f"                 on the killed node: longest log() "
                    f"{max(r['max_log_s'] for r in on) * 1000:.1f} ms, finish() {max(r['finish_s'] for r in on):.2f} s")
        say(f"result           {'OK: every row exactly once in each replica' if ok else 'FAILED'}")
        return 0 if ok else 1
    finally:
        for c in children:
            c.stop(timeout=30)
        cluster.stop()
        if keep or not ok:
            say(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.cluster_demo", description=__doc__.splitlines()[0])
    p.add_argument("--trainer", nargs=3, metavar=("RUN_ID", "STEPS", "PACE"), help=argparse.SUPPRESS)
    p.add_argument("--trainers-per-node", type=int, default=2)
    p.add_argument("--steps", type=int, default=3000, help="steps per trainer (default 3000)")
    p.add_argument("--pace", type=float, default=0.002, help="seconds of 'training' per step (default 0.002)")
    p.add_argument("--timeout", type=float, default=120.0, help="deadline of each wait, seconds (default 120)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory and its logs")
    args = p.parse_args(argv)
    if args.trainer:
        run_id, steps, pace = args.trainer
        return trainer(run_id, int(steps), float(pace))
    return demo(args.trainers_per_node, args.steps, args.pace, args.timeout, args.keep, sys.stdout)


if __name__ == "__main__":
    raise SystemExit(main())
