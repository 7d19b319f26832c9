"""runstream's side of each scenario, run in a fresh interpreter by :mod:`.child`.

The orchestrator brings a local stack up under a temp ``RUNSTREAM_DIR`` before the child starts
(see :mod:`.stackctl`), so these functions find it running. A piece that has not landed raises
:class:`NotBuilt` and the row says so.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import NotBuilt
from .peers import mark_phase_end
from .rscluster import cluster_kill as cluster_kill  # row 12, run by name like the scenarios here
from .rscluster import cluster_pps as cluster_pps
from .stats import percentile, write_phases
from .web import web_ui as web_ui  # row 11, run by name like the scenarios here

PROJECT = "bench"


def row_values(step: int, metrics: int) -> dict[str, float]:
    return {f"m{j}": step * 0.001 + j for j in range(metrics)}


def _import_runstream() -> Any:
    try:
        import runstream
    except ImportError as e:
        raise NotBuilt(f"import runstream: {e}") from e
    if not hasattr(runstream, "init"):
        raise NotBuilt("runstream.init does not exist yet")
    return runstream


def _client() -> Any:
    try:
        from runstream.query.client import QueryClient
        from runstream.settings import load_settings
    except ImportError as e:
        raise NotBuilt(f"query client: {e}") from e
    return QueryClient(load_settings(), start_stack=False)


def _history_counts(client: Any, uids: list[str], timeout: float = 600.0) -> tuple[dict[str, tuple[int, int]], float]:
    """Wait (server side) until everything in the stream now is projected, then count each run's
    history rows: ``{uid: (rows, distinct (step, key))}`` and the time the answer came back."""
    seq = client.stream_last_seq()
    quoted = ", ".join(f"'{u}'" for u in uids)
    res = client.sql(
        f"SELECT run_uid, count(*) AS n, count(DISTINCT (step, key)) AS d FROM history "
        f"WHERE run_uid IN ({quoted}) GROUP BY run_uid",
        wait_seq=seq,
        timeout=timeout,
        max_rows=len(uids) + 1,
    )
    t = time.perf_counter()
    out = {r["run_uid"]: (int(r["n"]), int(r["d"])) for r in res.to_pylist()}
    return out, t


def _stream_bytes() -> tuple[int, int]:
    """(bytes, messages) held by the stream, from JetStream's own accounting."""
    import asyncio

    from runstream.broker.names import STREAM
    from runstream.settings import load_settings
    from runstream.stack import status

    url = status(load_settings()).nats_url

    async def info() -> tuple[int, int]:
        import nats

        nc = await nats.connect(url)
        try:
            st = (await nc.jetstream().stream_info(STREAM)).state
            return int(st.bytes), int(st.messages)
        finally:
            await nc.close()

    return asyncio.run(info())


# -- row 1 -----------------------------------------------------------------------------------------


def hotpath(params: dict[str, Any]) -> dict[str, Any]:
    """1 run × ``steps`` × ``metrics`` floats: µs per ``log()`` call, each call timed."""
    steps, metrics = int(params["steps"]), int(params["metrics"])
    t0 = time.perf_counter()
    rs = _import_runstream()
    t1 = time.perf_counter()
    run = rs.init(project=PROJECT, config={"lr": 0.01, "batch": 32})
    t2 = time.perf_counter()
    per_call = array("q", bytes(8 * steps))
    clock = time.perf_counter_ns
    log = run.log
    t_first = time.perf_counter()
    for i in range(steps):
        row = row_values(i, metrics)  # built outside the timed call, and not all kept in memory
        a = clock()
        log(row)
        per_call[i] = clock() - a
    t3 = time.perf_counter()
    run.finish()
    t4 = time.perf_counter()
    mark_phase_end()
    counts, _ = _history_counts(_client(), [run.uid])
    points = steps * metrics
    return {
        **write_phases(steps, metrics, per_call, t0, t1, t2, t3, t4),
        "flushed_s": t4 - t_first,
        "stored_points": counts.get(run.uid, (0, 0))[0],
        "check_count": counts.get(run.uid, (0, 0))[0] == points,
    }


def _train_step(i: int) -> float:
    """Stand-in for a training step's work: ~0.5 ms of pure-Python arithmetic (holds the GIL, so
    a sampler thread competing for it shows)."""
    acc = 0.0
    for k in range(2_000):
        acc += (i * k % 7) * 0.5
    return acc


def telemetry(params: dict[str, Any]) -> dict[str, Any]:
    """Row 9: µs per training step (work + ``log()``, a line printed every 20 steps) with the
    system sampler and the console tee off, at the default 15 s interval, and at 0.1 s — one run,
    one process, blocks of each setting interleaved in rotated order. The figures use the process's
    CPU time per step (all its threads: the sampler's and the tee's work counts, other processes'
    does not), each setting against the "off" block of the same round (the median over rounds): on
    this shared 2-core machine even a block's CPU time swings by ±5 % (measured), which buries a
    percent-sized effect — hence also the direct costs (one sample, one teed line) and the overhead
    they give this loop, which are precise. Wall times are kept too.
    Each "on" block starts the sampler and waits for its sources (psutil, NVML) before the clock:
    that start-up is paid once per run (and off ``init()``), not per training step."""
    import io
    import sys

    steps, rounds, metrics = int(params["steps"]), int(params["rounds"]), int(params["metrics"])
    rs = _import_runstream()
    from runstream.telemetry import new_sampler, start_console

    run = rs.init(project=PROJECT, settings={"stats_interval": 0, "console": "off"})
    sink = io.StringIO()  # the "terminal": the child's real stdout is the harness's
    settings = {"off": None, "default": 15.0, "fast": 0.1}
    blocks: dict[str, list[float]] = {k: [] for k in settings}
    wall: dict[str, list[float]] = {k: [] for k in settings}
    real_stdout, step = sys.stdout, 0
    try:
        sys.stdout = sink
        for _ in range(steps):  # warm-up, not counted: first batches, the metadata thread
            _train_step(step)
            run.log(row_values(step, metrics))
            step += 1
        for r in range(rounds):
            names = list(settings)
            names = names[r % 3:] + names[:r % 3]
            for name in names:
                interval = settings[name]
                stops = []
                if interval is not None:  # started, and its sources made, before the clock: the steady
                    sampler = new_sampler(run, interval, {})  # state is what a training loop pays
                    sampler.start()
                    sampler.ready.wait(10)
                    stops = [sampler.stop, start_console(run)]
                t, c = time.perf_counter(), time.process_time()
                for _ in range(steps):
                    _train_step(step)
                    run.log(row_values(step, metrics))
                    if step % 20 == 0:
                        print(f"step {step} loss {1.0 / (step + 1):.4f}")
                    step += 1
                blocks[name].append((time.process_time() - c) / steps * 1e6)
                wall[name].append((time.perf_counter() - t) / steps * 1e6)
                for stop in reversed(stops):
                    stop()
                sink.seek(0)
                sink.truncate()
        sample_us, line_us = _telemetry_costs(run, new_sampler, start_console, sink)
    finally:
        sys.stdout = real_stdout
    run.finish()
    off = statistics.median(blocks["off"])

    def paired(name: str) -> float:
        """Median over rounds of each round's block against that round's "off" block: the rounds
        share the machine's state of the moment, so drift between rounds cancels."""
        return statistics.median(100.0 * (a - b) / b for a, b in zip(blocks[name], blocks["off"], strict=True))

    # what the default costs a step of this loop, from the direct costs: a sample every 15 s, the
    # tee's line every 20 steps (precise where the blocks' ±5 % swings cannot resolve 1 %)
    derived = 100.0 * (sample_us * (off * 1e-6) / 15.0 + line_us / 20.0) / off
    return {
        "off_step_us": off,
        "default_overhead_pct": paired("default"),
        "fast_overhead_pct": paired("fast"),
        "sample_cpu_us": sample_us,
        "tee_line_cpu_us": line_us,
        "default_derived_pct": derived,
        "blocks_cpu_us": blocks,
        "blocks_wall_us": wall,
    }


def _telemetry_costs(run: Any, new_sampler: Any, start_console: Any, sink: Any,
                     samples: int = 200, lines: int = 20_000) -> tuple[float, float]:
    """Process CPU µs of one system sample (sources made, samples spooled), and what the console
    tee adds to one printed line, the worker's sealing and publishing of it included (each print
    measured against the same prints untee'd, the run drained inside both windows)."""
    sampler = new_sampler(run, 15.0, {})
    sampler.start()
    sampler.ready.wait(10)
    c = time.process_time()
    for _ in range(samples):
        sampler.sample_once()
    sampler.flush()
    sample_us = (time.process_time() - c) / samples * 1e6
    sampler.stop()

    def printing(teed: bool) -> float:
        stop = start_console(run) if teed else None
        c = time.process_time()
        for i in range(lines):
            print(f"step {i} loss {1.0 / (i + 1):.4f}")
        if stop is not None:
            stop()
        _drained(run)
        spent = time.process_time() - c
        sink.seek(0)
        sink.truncate()
        return spent

    printing(True)  # warm-up
    plain = min(printing(False) for _ in range(3))
    teed = min(printing(True) for _ in range(3))
    return sample_us, max(0.0, teed - plain) / lines * 1e6


def _drained(run: Any, timeout: float = 60.0) -> None:
    """Wait until everything the run spooled is published and acknowledged."""
    run._seal(True)
    with run._lock:
        run._seal_lines_locked()
    run._worker.wake()
    deadline = time.monotonic() + timeout
    while run._spool.acked < run._last_seq and time.monotonic() < deadline:
        time.sleep(0.005)


def sigkill_trainer(params: dict[str, Any]) -> dict[str, Any]:
    """The trainer killed by :func:`sigkill`: prints its run uid and spool folder, then each step
    after ``log()`` returned it, until killed."""
    rs = _import_runstream()
    run = rs.init(project=PROJECT, config={"killed": True})
    out = sys.stdout.fileno()
    os.write(out, f"uid {run.uid} {run.dir}\n".encode())
    metrics = int(params["metrics"])
    step = 0
    while True:
        run.log(row_values(step, metrics))
        os.write(out, b"%d\n" % step)
        step += 1


def sigkill(params: dict[str, Any]) -> dict[str, Any]:
    """SIGKILL a trainer mid-run, ``runstream sync`` its spool, check every printed step is in DuckDB."""
    metrics, kill_after = int(params["metrics"]), int(params["kill_after"])
    _import_runstream()
    argv = [
        sys.executable,
        "-m",
        "tests.bench.child",
        "runstream",
        "sigkill_trainer",
        json.dumps(params),
        str(Path.cwd() / "trainer.json"),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    head = proc.stdout.readline().decode().split()
    if not head or head[0] != "uid":
        proc.kill()
        raise RuntimeError(f"trainer did not start: {head}")
    uid, run_dir = head[1], head[2]
    printed = -1
    for line in proc.stdout:
        printed = int(line)
        if printed + 1 >= kill_after:
            break
    os.kill(proc.pid, signal.SIGKILL)
    for line in proc.stdout.read().splitlines():  # what it printed between our read and the kill
        if line.strip():
            printed = int(line)
    proc.wait()
    t0 = time.perf_counter()
    sync = subprocess.run(
        [sys.executable, "-m", "runstream.cli", "sync", run_dir], capture_output=True, text=True, timeout=300
    )
    if sync.returncode != 0:
        raise RuntimeError(f"runstream sync failed ({sync.returncode}): {sync.stderr[-2000:]}")
    t1 = time.perf_counter()
    client = _client()
    seq = client.stream_last_seq()
    res = client.sql(
        f"SELECT count(DISTINCT step) AS steps, count(*) AS n FROM history WHERE run_uid = '{uid}' "
        f"AND step <= {printed}",
        wait_seq=seq,
    ).to_pylist()[0]
    returned = printed + 1
    lost = returned - int(res["steps"])
    return {
        "returned_steps": returned,
        "stored_steps": int(res["steps"]),
        "lost_steps": lost,
        "rows_for_returned": int(res["n"]),
        "sync_s": t1 - t0,
        "check_count": lost == 0 and int(res["n"]) == returned * metrics,
    }


# -- rows 2 and 10 ---------------------------------------------------------------------------------


def probe(params: dict[str, Any]) -> dict[str, Any]:
    """Watch one run while it logs: for every ``every``-th step of key ``m0``, the time from its
    ``log()`` (the row's timestamp) to the first poll that finds it in SQL (an upper bound by at most
    one poll interval)."""
    uid, every, interval = params["uid"], int(params["every"]), float(params["interval"])
    stop = Path(params["stop_file"])
    client = _client()
    seen = -1
    latencies: list[float] = []
    polls = 0
    while True:
        stopping = stop.exists()
        res = client.sql(
            f"SELECT step, timestamp FROM history WHERE run_uid = '{uid}' AND key = 'm0' "
            f"AND step > {seen} AND step % {every} = 0 ORDER BY step",
            max_rows=1_000_000,
        )
        now = time.time()
        polls += 1
        if polls == 1 and params.get("ready_file"):
            Path(params["ready_file"]).touch()  # imported, connected, answered: the trainer may start
        for r in res.to_pylist():
            latencies.append(now - float(r["timestamp"]))
            seen = max(seen, int(r["step"]))
        if stopping:
            break
        time.sleep(interval)
    return {"latencies": latencies, "polls": polls}


def e2e(params: dict[str, Any]) -> dict[str, Any]:
    """First ``log()`` → every row queryable in SQL (points/s); stream bytes per point. With
    ``probe_interval`` set, a probe process polls SQL meanwhile for the log→queryable latency."""
    steps, metrics = int(params["steps"]), int(params["metrics"])
    rs = _import_runstream()
    client = _client()
    run = rs.init(project=PROJECT, config={"lr": 0.01})
    rows = [row_values(i, metrics) for i in range(steps)]
    probing = bool(params.get("probe_interval"))
    stop = Path.cwd() / "probe.stop"
    probe_out = Path.cwd() / "probe.json"
    if probing:
        probe_params = {
            "uid": run.uid,
            "every": max(1, steps // 2000),
            "interval": float(params["probe_interval"]),
            "stop_file": str(stop),
            "ready_file": str(Path.cwd() / "probe.ready"),
        }
        probe_proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.bench.child",
                "runstream",
                "probe",
                json.dumps(probe_params),
                str(probe_out),
            ],
            stdin=subprocess.DEVNULL,
        )
        ready = Path(probe_params["ready_file"])
        deadline = time.monotonic() + 60
        while not ready.exists():  # wait for the probe's first answered poll, not a fixed time
            if probe_proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the latency probe did not start (see its output above)")
            time.sleep(0.01)
    log = run.log
    t_first = time.perf_counter()
    for r in rows:
        log(r)
    t_logged = time.perf_counter()
    run.finish()
    t_finished = time.perf_counter()
    counts, t_queryable = _history_counts(client, [run.uid])
    points = steps * metrics
    n, d = counts.get(run.uid, (0, 0))
    out: dict[str, Any] = {
        "steps": steps,
        "metrics": metrics,
        "points": points,
        "log_s": t_logged - t_first,
        "finish_s": t_finished - t_logged,
        "queryable_s": t_queryable - t_first,
        "e2e_pps": points / (t_queryable - t_first),
        "stored_points": n,
        "distinct_points": d,
        "check_count": n == points and d == points,
    }
    if probing:
        stop.touch()
        probe_proc.wait(120)
        try:
            lat = sorted(json.loads(probe_out.read_text()).get("latencies", []))
        except (OSError, ValueError):
            lat = []
        out.update(
            {
                "latency_samples": len(lat),
                "latency_p50_s": percentile(lat, 50) if lat else None,
                "latency_p95_s": percentile(lat, 95) if lat else None,
                "latency_max_s": lat[-1] if lat else None,
            }
        )
    else:
        stream_bytes, messages = _stream_bytes()
        out.update({"stream_bytes": stream_bytes, "stream_messages": messages, "stream_bpp": stream_bytes / points})
    return out


# -- row 3 -----------------------------------------------------------------------------------------


def many_worker(params: dict[str, Any]) -> dict[str, Any]:
    steps, metrics, index = int(params["steps"]), int(params["metrics"]), int(params["index"])
    rs = _import_runstream()
    kwargs: dict[str, Any] = {"id": params["shared_id"], "mode": "shared"} if params.get("shared_id") else {}
    run = rs.init(project=PROJECT + "-many", name=f"writer-{index}", config={"index": index}, **kwargs)
    rows = [row_values(i, metrics) for i in range(steps)]
    if kwargs:  # one shared run: each writer its own key range, so nothing overwrites
        rows = [{f"w{index}.{k}": v for k, v in r.items()} for r in rows]
    go = Path(params["go_file"])
    Path(params["ready_file"]).touch()
    while not go.exists():
        time.sleep(0.001)
    t0 = time.time()
    log = run.log
    for r in rows:
        log(r)
    run.finish()
    return {"start": t0, "end": time.time(), "uid": run.uid}


def many(
    params: dict[str, Any], shared: bool = False, *, client: Any = None, env_each: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    """``procs`` writer processes released together: total points/s until every row is queryable;
    zero lost, zero doubled. ``client`` (a ``QueryClient``; default: the local stack's) counts the
    rows; ``env_each[i]`` is added to writer ``i``'s environment (row 12 points them at a cluster)."""
    from .spawn import release_workers

    procs, steps, metrics = int(params["procs"]), int(params["steps"]), int(params["metrics"])
    _import_runstream()
    client = client if client is not None else _client()
    extra = {"shared_id": f"shared{os.getpid()}"} if shared else {}
    results, t_go, _ = release_workers(
        "runstream", procs, {"steps": steps, "metrics": metrics, **extra}, Path.cwd(), env_each=env_each
    )
    errors = [r["error"] for r in results if "error" in r]
    uids = sorted({r["uid"] for r in results if "uid" in r})
    counts, _t = _history_counts(client, uids) if uids else ({}, time.perf_counter())
    t_end = time.time()
    points = procs * steps * metrics
    n = sum(c[0] for c in counts.values())
    d = sum(c[1] for c in counts.values())
    return {
        "procs": procs,
        "points": points,
        "seconds": t_end - t_go,
        "many_pps": points / (t_end - t_go),
        "stored_points": n,
        "lost": points - d,
        "doubled": n - d,
        "errors": errors,
        "check_count": n == points and d == points and not errors,
    }


def shared(params: dict[str, Any]) -> dict[str, Any]:
    from runstream.settings import MODES

    if "shared" not in MODES:
        raise NotBuilt("shared mode: later issue")
    return many(params, shared=True)


# -- row 7 -----------------------------------------------------------------------------------------


def lifecycle(params: dict[str, Any]) -> dict[str, Any]:
    """A run of ``steps`` × ``metrics`` (logged and projected, not timed); then timed: ``init()``
    forking it at the middle step, the fork's first row, and until its whole history (the
    inherited half and its own row) reads back; the same for a rewind of the run itself."""
    steps, metrics = int(params["steps"]), int(params["metrics"])
    rs = _import_runstream()
    from runstream import _lifecycle

    if "fork_from" not in _lifecycle.init.__code__.co_varnames:
        raise NotBuilt("fork_from: lifecycle issue")
    client = _client()
    parent = rs.init(project=PROJECT + "-fork", config={"lr": 0.01})
    log = parent.log
    for i in range(steps):
        log(row_values(i, metrics))
    parent.finish()
    _history_counts(client, [parent.uid])
    middle = steps // 2
    api = _api()
    out: dict[str, Any] = {"points": steps * metrics, "steps": steps, "cut": middle}
    ok = True
    for kind, arg in (("fork", "fork_from"), ("rewind", "resume_from")):
        t0 = time.perf_counter()
        run = rs.init(project=PROJECT + "-fork", **{arg: f"{parent.id}?_step={middle}"})
        t1 = time.perf_counter()
        run.log(row_values(middle + 1, metrics))
        run.finish()
        t2 = time.perf_counter()
        table = api.run(run.path).history(keys=["m0"], pandas=False)
        t3 = time.perf_counter()
        ok &= table.num_rows == middle + 2 and table.column("_step").to_pylist()[-1] == middle + 1
        out.update({f"{kind}_ms": (t1 - t0) * 1000, f"{kind}_finish_ms": (t2 - t1) * 1000,
                    f"{kind}_read_ms": (t3 - t2) * 1000, f"{kind}_rows": table.num_rows})
    stored = client.sql("SELECT count(*) AS n FROM history_numeric").table.column("n")[0].as_py()
    out["points_stored"] = stored
    out["check_count"] = bool(ok)
    return out


# -- row 4 -----------------------------------------------------------------------------------------


def startup(params: dict[str, Any]) -> dict[str, Any]:
    """``import runstream`` from a clean interpreter, ``init()`` with the stack up, ``finish()``."""
    t0 = time.perf_counter()
    rs = _import_runstream()
    t1 = time.perf_counter()
    run = rs.init(project=PROJECT, config={"lr": 0.01})
    t2 = time.perf_counter()
    run.finish()
    t3 = time.perf_counter()
    return {"import_s": t1 - t0, "init_s": t2 - t1, "finish_s": t3 - t2}


EMPTY_RUN = "import runstream; runstream.init(project='bench').finish()"


# -- row 6 -----------------------------------------------------------------------------------------


def replay(params: dict[str, Any]) -> dict[str, Any]:
    """Log ``steps`` × ``metrics`` (not timed), then time ``runstream replay`` of the whole log."""
    steps, metrics = int(params["steps"]), int(params["metrics"])
    rs = _import_runstream()
    client = _client()
    run = rs.init(project=PROJECT, config={"lr": 0.01})
    for i in range(steps):
        run.log(row_values(i, metrics))
    run.finish()
    before, _ = _history_counts(client, [run.uid])
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "runstream.cli", "replay"], capture_output=True, text=True, timeout=1800
    )
    t1 = time.perf_counter()
    if proc.returncode != 0:
        out = (proc.stderr or proc.stdout)[-2000:]
        if "invalid choice" in out:
            raise NotBuilt("`runstream replay` does not exist yet")
        raise RuntimeError(f"runstream replay failed ({proc.returncode}): {out}")
    after, _ = _history_counts(client, [run.uid])
    points = steps * metrics
    return {
        "points": points,
        "replay_s": t1 - t0,
        "replay_pps": points / (t1 - t0),
        "stored_before": before.get(run.uid, (0, 0))[0],
        "stored_after": after.get(run.uid, (0, 0))[0],
        "check_count": before.get(run.uid, (0, 0))[0] == points == after.get(run.uid, (0, 0))[0],
    }


# -- row 8 -----------------------------------------------------------------------------------------


def stalled(params: dict[str, Any]) -> dict[str, Any]:
    """Log ``steps`` × ``metrics`` while nats-server is stopped (SIGSTOP): the process tree's peak
    RSS is taken by the orchestrator; then SIGCONT, finish, and check every row arrived."""
    import psutil

    steps, metrics = int(params["steps"]), int(params["metrics"])
    nats_pid = int(params["nats_pid"])
    rs = _import_runstream()
    run = rs.init(project=PROJECT, config={"stalled": True})
    me = psutil.Process()
    rss_start = me.memory_info().rss
    peak = rss_start
    os.kill(nats_pid, signal.SIGSTOP)
    try:
        log = run.log
        t0 = time.perf_counter()
        for i in range(steps):
            log(row_values(i, metrics))
            if i % 10_000 == 0:
                peak = max(peak, me.memory_info().rss)
        t1 = time.perf_counter()
        peak = max(peak, me.memory_info().rss)
    finally:
        os.kill(nats_pid, signal.SIGCONT)
    mark_phase_end()
    run.finish()
    counts, _ = _history_counts(_client(), [run.uid])
    points = steps * metrics
    n = counts.get(run.uid, (0, 0))[0]
    return {
        "points": points,
        "log_us_mean": (t1 - t0) / steps * 1e6,
        "rss_start_mb": rss_start / 1e6,
        "rss_peak_self_mb": peak / 1e6,
        "stored_points": n,
        "check_count": n == points,
    }


RunSpec = tuple[str, dict[str, Any], list[tuple[int, float, dict[str, float]]]]
"""(run_id, config, history rows as ``(step, timestamp, values)``) of one run to publish."""


def publish_runs(nats_url: str, entity: str, project: str, specs: Iterable[RunSpec]) -> list[str]:
    """Publish whole small runs (init, one ``log`` event, finish) straight to the stream with the
    SDK's codec, as a fleet of finished trainers would have (10k ``init()`` calls would take the
    whole budget). Returns their run uids; the caller waits for the projection."""
    import asyncio

    from runstream.broker.codec import encode_event, encode_log_body, envelope
    from runstream.broker.jetstream import ensure_log
    from runstream.broker.names import msg_id, new_run_uid, new_writer_id, run_subject

    uids: list[str] = []

    async def publish_all() -> None:
        import nats

        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        await ensure_log(js)
        pending: list[Any] = []
        for i, (run_id, config, rows) in enumerate(specs):
            uid, writer, now = new_run_uid(), new_writer_id(), time.time()
            uids.append(uid)
            init = {
                "entity": entity,
                "project": project,
                "run_id": run_id,
                "name": f"run-{i}",
                "tags": [],
                "config": config,
                "start_time": now,
                "mode": "online",
            }
            fin = {"exit_code": 0, "state": "finished", "runtime": 5.0}
            events = (("init", init), ("log", encode_log_body(rows)), ("finish", fin))
            for seq, (kind, body) in enumerate(events, start=1):
                payload = encode_event(envelope(kind, uid, writer, seq, now, body))
                pending.append(
                    js.publish(
                        run_subject(entity, uid, kind),
                        payload,
                        headers={"Nats-Msg-Id": msg_id(uid, writer, seq)},
                    )
                )
            if len(pending) >= 600:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        await nc.close()

    asyncio.run(publish_all())
    return uids


def server_runs(params: dict[str, Any]) -> dict[str, Any]:
    """``runs`` small runs (init, 5 rows × 3 keys, finish) published straight to the stream
    (:func:`publish_runs`), then the server's RSS once all are projected (peak sampled throughout)."""
    import psutil

    from runstream.settings import load_settings
    from runstream.stack import status

    n_runs = int(params["runs"])
    st = status(load_settings())
    server = psutil.Process(st.server_pid)
    peak = [server.memory_info().rss]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                peak[0] = max(peak[0], server.memory_info().rss)
            except psutil.Error:
                return
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    def specs() -> Iterator[RunSpec]:
        now = time.time()
        for i in range(n_runs):
            config = {"lr": 10 ** -(1 + i % 4), "batch": 2 ** (i % 7), "seed": i}
            rows = [(s, now + s, {"loss": 1.0 / (s + 1 + i % 13), "acc": s / 5, "lr": 0.1}) for s in range(5)]
            yield f"r{i:06d}", config, rows

    t0 = time.perf_counter()
    publish_runs(st.nats_url, "bench", "bench-10k", specs())
    t1 = time.perf_counter()
    client = _client()
    seq = client.stream_last_seq()
    res = client.sql(
        "SELECT count(*) AS n, count(*) FILTER (WHERE state = 'finished') AS f FROM runs WHERE project = 'bench-10k'",
        wait_seq=seq,
        timeout=600,
    ).to_pylist()[0]
    t2 = time.perf_counter()
    q0 = time.perf_counter()
    client.sql(
        "SELECT r.run_id FROM runs r JOIN config c USING (run_uid) JOIN summary s USING (run_uid) "
        "WHERE c.key = 'lr' AND c.value > 0.01 AND s.key = 'loss' ORDER BY s.value LIMIT 10"
    )
    q1 = time.perf_counter()
    rss_now = server.memory_info().rss
    done.set()
    sampler.join()
    return {
        "runs": n_runs,
        "publish_s": t1 - t0,
        "projected_s": t2 - t1,
        "runs_projected": int(res["n"]),
        "runs_finished": int(res["f"]),
        "server_rss_mb": rss_now / 1e6,
        "server_rss_peak_mb": peak[0] / 1e6,
        "filter_sort_ms": (q1 - q0) * 1000,
        "check_count": int(res["n"]) == n_runs == int(res["f"]),
    }


# -- row 5 -----------------------------------------------------------------------------------------


def _timings(fn: Any, reps: int) -> tuple[list[float], Any]:
    """``fn()`` ``reps`` times (warm: the caller ran it once before), seconds each, and the last result."""
    out, res = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        res = fn()
        out.append(time.perf_counter() - t0)
    return out, res


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2]


def _api() -> Any:
    rs = _import_runstream()
    if not hasattr(rs, "Api"):
        raise NotBuilt("runstream.Api does not exist yet")
    return rs.Api()


def read_history(params: dict[str, Any]) -> dict[str, Any]:
    """A run of ``steps`` × ``metrics`` floats (logged with the SDK and projected, not timed), and one
    of ``peer_steps`` (the peers' size): ``Api().run(path).history()`` → pandas (all keys, every row),
    and → Arrow; warm, the median of ``timed`` calls each, the first call reported apart."""
    from .dataset import history_values

    steps, metrics, small = int(params["steps"]), int(params["metrics"]), int(params["peer_steps"])
    timed = int(params.get("timed", 3))
    rs = _import_runstream()
    runs = {}
    for name, n in (("big", steps), ("peer", small)):
        run = rs.init(project=PROJECT + "-read", name=name, config={"lr": 0.01})
        log = run.log
        for i in range(n):
            log(history_values(i, metrics))
        run.finish()
        runs[name] = (run, n)
    counts, _ = _history_counts(_client(), [r.uid for r, _ in runs.values()])
    api = _api()
    import pandas  # noqa: F401  (imported before the clock, as in a notebook that already uses it)

    out: dict[str, Any] = {"steps": steps, "metrics": metrics, "points": steps * metrics, "peer_steps": small}
    ok = True
    for name, (run, n) in runs.items():
        points = n * metrics
        ok &= counts.get(run.uid, (0, 0))[0] == points
        handle = api.run(run.path)
        t0 = time.perf_counter()
        df = handle.history(pandas=True)
        first = time.perf_counter() - t0
        pandas_s, df = _timings(lambda h=handle: h.history(pandas=True), timed)
        arrow_s, table = _timings(lambda h=handle: h.history(pandas=False), timed)
        keys = [f"m{j}" for j in range(metrics)]
        shape_ok = (
            df.shape == (n, metrics + 3)
            and set(keys) <= set(df.columns)
            and int(df[keys].notna().sum().sum()) == points
            and list(df["_step"]) == list(range(n))
            and table.num_rows == n
        )
        ok &= shape_ok
        out[f"{name}_first_pandas_s"] = first
        out[f"{name}_pandas_s"] = _median(pandas_s)
        out[f"{name}_pandas_all_s"] = pandas_s
        out[f"{name}_arrow_s"] = _median(arrow_s)
        out[f"{name}_shape"] = list(df.shape)
        out[f"{name}_shape_ok"] = shape_ok
    out["stored_points"] = counts.get(runs["big"][0].uid, (0, 0))[0]
    out["check_count"] = bool(ok)
    return out


def read_runs(params: dict[str, Any]) -> dict[str, Any]:
    """A project of ``runs`` small runs and one of ``peer_runs`` (the peers' size), published straight
    to the stream (:func:`publish_runs`) and projected (not timed); then, warm, the median of
    ``timed`` calls of ``Api().runs(filters={"config.lr": {"$gt": 0.01}},
    order="+summary_metrics.loss")`` fully iterated (largest page, and the default page), and of the
    same question in ``api.sql``. Checked: the ids, in order, are exactly the expected ones."""
    from runstream.settings import load_settings
    from runstream.stack import status

    from .dataset import LR_THRESHOLD, expected, small_runs

    n_runs, n_peer = int(params["runs"]), int(params["peer_runs"])
    timed = int(params.get("timed", 5))
    _import_runstream()
    st = status(load_settings())
    entity = "bench"
    projects = {
        "big": (f"{PROJECT}-runs-{n_runs}", small_runs(n_runs)),
        "peer": (f"{PROJECT}-runs-{n_peer}", small_runs(n_peer)),
    }
    t0 = time.perf_counter()
    for project, runs in projects.values():
        now = time.time()
        publish_runs(st.nats_url, entity, project, ((r.run_id, {"lr": r.lr, "batch": 32}, r.rows(now)) for r in runs))
    t1 = time.perf_counter()
    client = _client()
    seq = client.stream_last_seq()
    names = ", ".join(f"'{p}'" for p, _ in projects.values())
    res = client.sql(
        f"SELECT project, count(*) AS n FROM runs WHERE entity = '{entity}' AND project IN ({names}) GROUP BY project",
        wait_seq=seq,
        timeout=600,
    ).to_pylist()
    t2 = time.perf_counter()
    projected = {r["project"]: int(r["n"]) for r in res}
    api = _api()
    filters = {"config.lr": {"$gt": LR_THRESHOLD}}
    out: dict[str, Any] = {"runs": n_runs, "peer_runs": n_peer, "publish_s": t1 - t0, "projected_s": t2 - t1}
    ok = all(projected.get(p) == len(runs) for p, runs in projects.values())
    for name, (project, runs) in projects.items():
        want = expected(runs)

        def listed(per_page: int, project: str = project) -> list[str]:
            return [
                r.id
                for r in api.runs(
                    f"{entity}/{project}", filters=filters, order="+summary_metrics.loss", per_page=per_page
                )
            ]

        def sql(project: str = project, cap: int = len(runs) + 1) -> list[str]:
            df = api.sql(
                "SELECT r.run_id FROM runs r JOIN config c USING (run_uid) JOIN summary s USING (run_uid) "
                f"WHERE r.entity = '{entity}' AND r.project = '{project}' AND c.key = 'lr' "
                f"AND c.value > {LR_THRESHOLD} AND s.key = 'loss' ORDER BY s.value",
                max_rows=cap,
            )
            return list(df["run_id"])

        got = {"page": listed(10_000), "sql": sql()}  # warm-up, and checked
        big_page, got["page"] = _timings(lambda: listed(10_000), timed)
        default_page, got["default"] = _timings(lambda: listed(50), max(1, timed // 2))
        sql_s, got["sql"] = _timings(sql, timed)
        good = {k: v == want for k, v in got.items()}
        ok &= all(good.values())
        out.update(
            {
                f"{name}_matching": len(want),
                f"{name}_returned": len(got["page"]),
                f"{name}_good": good,
                f"{name}_filter_sort_ms": _median(big_page) * 1000,
                f"{name}_filter_sort_all_ms": [x * 1000 for x in big_page],
                f"{name}_default_page_ms": _median(default_page) * 1000,
                f"{name}_sql_ms": _median(sql_s) * 1000,
            }
        )
    out["runs_projected"] = projected
    out["check_count"] = bool(ok)
    return out
