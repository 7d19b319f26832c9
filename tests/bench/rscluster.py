"""Row 12: runstream on a three-node NATS cluster, run by :mod:`.child` like the scenarios of :mod:`.rs`.

Each scenario brings up, inside its own child (not timed), the cluster of ``deploy/nats/`` on
loopback (:class:`tests.cluster.LocalCluster`, streams at ``RUNSTREAM_STREAM_REPLICAS=3``) and one
``runstream server`` on it, with the pieces of ``make cluster-demo`` (:mod:`tests.cluster_demo`),
and takes both down before it returns (a child killed on timeout takes its process tree with it).

- :func:`cluster_pps`: row 3's workload (writer processes released together, points/s until SQL
  counts every row), each writer's URL list starting with a different node. The orchestrator runs
  the same workload on the embedded R1 stack (:func:`tests.bench.rs.many`) in the same run.
- :func:`cluster_kill`: one paced trainer per node; once each has logged a third of its steps, the
  node leading the event stream is SIGKILLed (the trainers connected to it are read from its
  ``/connz`` just before). Measured: the longest
  ``log()`` of that trainer after the third (it should only spool), the same for the trainers on
  the surviving nodes, its ``finish()``, how long from the kill until a live node leads the event
  stream again (NATS's own Raft election), until the server has every row the trainers had logged
  when the node died, and until it has every row (the trainers log on meanwhile).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import NotBuilt

if TYPE_CHECKING:
    from tests.cluster import LocalCluster
    from tests.cluster_demo import Child

SERVER = "bench"
SDK_CONNECTION = "runstream-sdk "
"""How a trainer's NATS connection names itself (then its run id), as ``/connz`` lists it."""
POLL_S = 0.05
"""Longest pause between two looks at the trainers' progress or the server's row count: the
kill→projected figure is an upper bound by this much."""


def _up(tmp: Path, timeout: float) -> tuple[LocalCluster, Child]:
    """The cluster and a ready server named :data:`SERVER` on it; both stopped again if either
    fails to come up."""
    try:
        from tests.cluster import LocalCluster
        from tests.cluster_demo import server_ready, start_server, wait_until
    except ImportError as e:
        raise NotBuilt(f"the local cluster harness: {e}") from e
    cluster = LocalCluster(tmp / "nodes", nodes=3, timeout=timeout)
    server: Child | None = None
    try:
        cluster.start()
        server = start_server(SERVER, cluster.url_list, tmp)
        wait_until(functools.partial(server_ready, server), timeout, "the server to be ready", [server])
    except BaseException:
        if server is not None:
            server.stop(timeout=30)
        cluster.stop()
        raise
    return cluster, server


def _stream_replicas(cluster: LocalCluster) -> int:
    """Replicas of the event stream, as its leader reports them (0 while it has none)."""
    from runstream.broker.names import STREAM

    leader = cluster.stream_leader(STREAM)
    detail = cluster.stream_detail(cluster.index_of(leader), STREAM) if leader else None
    if detail is None:
        return 0
    return 1 + len((detail.get("cluster") or {}).get("replicas") or [])


def cluster_pps(params: dict[str, Any]) -> dict[str, Any]:
    """Row 3's ``many`` (``procs`` × ``steps`` × ``metrics``) through the R3 cluster: writer ``i``
    starts on node ``i mod 3``; the rows are counted through the cluster like any client would."""
    from runstream.query.client import QueryClient
    from runstream.settings import load_settings
    from tests.cluster_demo import cluster_env

    from .rs import many

    tmp = Path.cwd() / "cluster"
    cluster, server = _up(tmp, float(params.get("timeout", 120)))
    try:
        env = cluster_env(tmp)
        client = QueryClient(load_settings(env=dict(env, RUNSTREAM_NATS_URL=cluster.url_list)), start_stack=False)
        env_each = [
            dict(env, RUNSTREAM_NATS_URL=cluster.rotated_url_list(i % len(cluster.nodes)),
                 RUNSTREAM_RUN_DIR=str(Path.cwd() / "runs"))
            for i in range(int(params["procs"]))
        ]
        out = many(params, client=client, env_each=env_each)
        replicas = _stream_replicas(cluster)
        code = server.stop(timeout=60)
    finally:
        server.stop(timeout=30)
        cluster.stop()
    out.update({"stream_replicas": replicas, "server_exit": code})
    out["check_count"] = bool(out["check_count"]) and replicas == 3 and code == 0
    return out


def cluster_kill(params: dict[str, Any]) -> dict[str, Any]:
    """One trainer per node, ``steps`` steps of two keys each, ``pace`` seconds of "training"
    between steps; the event stream's leader SIGKILLed once each trainer is a third through."""
    from runstream.broker.names import STREAM
    from runstream.query.server import DB_FILE
    from tests.cluster_demo import (
        KEYS,
        MARK_EVERY,
        history_rows_per_run,
        kill_leader_mid_run,
        replica_check,
        start_trainers,
        trainer_results,
        wait_until,
    )

    steps, pace = int(params["steps"]), float(params["pace"])
    timeout = float(params.get("timeout", 120))
    tmp = Path.cwd() / "cluster"
    cluster, server = _up(tmp, timeout)
    trainers: list[Child] = []
    try:
        replicas = _stream_replicas(cluster)
        trainers = start_trainers(cluster, tmp, 1, steps, pace, timeout)
        connected: list[str] = []  # trainers connected to the victim just before it died

        def look(victim: str) -> None:
            conns = cluster.monitor(cluster.index_of(victim), "/connz") or {}
            names = {str(c.get("name")) for c in conns.get("connections") or []}
            connected.extend(t.name for t in trainers if f"{SDK_CONNECTION}{t.name}" in names)

        victim, killed_at, killed_wall = kill_leader_mid_run(cluster, trainers, timeout, POLL_S, look)
        expected = len(trainers) * steps * len(KEYS)
        elected: list[float] = []  # when a live node first led the event stream again
        timeline: list[tuple[float, dict[str, int]]] = []  # (when, rows per run) as the server answered

        def projected() -> bool:
            if not elected and cluster.stream_leader(STREAM) not in (None, victim):
                elected.append(time.monotonic())
            counts = history_rows_per_run(server)
            if counts is None:
                return False
            timeline.append((time.monotonic(), counts))
            return sum(counts.values()) >= expected

        wait_until(projected, timeout * 3, "the server to hold every row logged", [server, *trainers],
                   max_interval=POLL_S)
        projected_at, projected_wall = time.monotonic(), time.time()
        if not elected:
            wait_until(lambda: cluster.stream_leader(STREAM), timeout, f"a new leader of {STREAM}")
            elected.append(time.monotonic())
        wait_until(lambda: all(t.proc.poll() is not None for t in trainers), timeout * 3, "the trainers to finish")
        results, failures = trainer_results(trainers)
        code = server.stop(timeout=60)
        check = replica_check(server.log.parent / DB_FILE)
    finally:
        for t in trainers:
            t.stop(timeout=30)
        server.stop(timeout=30)
        cluster.stop()
    if not connected or not all(results[n]["logged_at"] > killed_wall for n in connected if n in results):
        raise RuntimeError(
            f"no trainer was logging through {victim} when it was killed (connected: {connected or 'none'}): "
            f"the stall figure would measure nothing; give the trainers more steps (--cluster-kill-steps)"
        )
    on_victim = [results[t.name] for t in trainers if t.name in connected and t.name in results]
    others = [results[t.name] for t in trainers if t.name not in connected and t.name in results]
    # rows each trainer had logged when the node died (a lower bound by < MARK_EVERY steps), and
    # the first answer of the server that held all of them
    before = {name: MARK_EVERY * len(KEYS) * sum(m <= killed_wall for m in r["marks"]) for name, r in results.items()}
    caught_up = next((t for t, counts in timeline if all(counts.get(n, 0) >= k for n, k in before.items())), None)
    stored = sum(check["per_run"].values())
    unfinished = sorted(r for r, s in check["states"].items() if s != "finished")
    last_log = max((r["logged_at"] for r in results.values()), default=float("nan"))
    return {
        "trainers": len(trainers),
        "steps": steps,
        "pace_s": pace,
        "victim": victim,
        "on_victim": connected,
        "points": expected,
        "stored_points": stored,
        "lost": max(0, expected - stored),
        "doubled": check["doubled"],
        "unfinished": unfinished,
        "failures": failures,
        "server_exit": code,
        "stream_replicas": replicas,
        # the trainer on the killed node: its longest log() after the third (the kill's window), and
        # when that was relative to the kill
        "kill_log_ms": max((r["max_log_late_s"] for r in on_victim), default=float("nan")) * 1000,
        "kill_log_after_kill_s": max((r["max_log_late_at"] for r in on_victim), default=float("nan")) - killed_wall,
        "kill_finish_s": max((r["finish_s"] for r in on_victim), default=float("nan")),
        "others_log_ms": max((r["max_log_late_s"] for r in others), default=float("nan")) * 1000,
        "max_log_any_ms": max((r["max_log_s"] for r in results.values()), default=float("nan")) * 1000,
        "election_s": elected[0] - killed_at,
        "stale_s": (caught_up if caught_up is not None else float("nan")) - killed_at,
        "rows_before_kill": sum(before.values()),
        "project_s": projected_at - killed_at,
        "logging_after_kill_s": last_log - killed_wall,
        "last_log_project_s": projected_wall - last_log,
        "check_count": stored == expected and check["doubled"] == 0 and not failures and not unfinished
        and code == 0 and len(check["per_run"]) == len(trainers) and replicas == 3,
    }
