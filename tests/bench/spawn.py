"""Many writer processes released at once (scenario 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def release_workers(
    system: str,
    procs: int,
    params: dict[str, Any],
    workdir: Path,
    env_extra: dict[str, str] | None = None,
    timeout: float = 1800.0,
    env_each: list[dict[str, str]] | None = None,
) -> tuple[list[dict[str, Any]], float, float]:
    """Start ``procs`` ``many_worker`` children, wait until each is ready (imported, run created),
    release them together, wait for all to exit. ``env_each[i]``, when given, is added to worker
    ``i``'s environment (e.g. a cluster's URL list starting with a different node).

    Returns (their result dicts, release time, time the last one finished logging), wall-clock seconds.
    """
    go = workdir / "go"
    go.unlink(missing_ok=True)
    env = {**os.environ, **(env_extra or {})}
    children = []
    for i in range(procs):
        ready = workdir / f"ready-{i}"
        ready.unlink(missing_ok=True)
        result = workdir / f"worker-{i}.json"
        result.unlink(missing_ok=True)
        p = {**params, "index": i, "go_file": str(go), "ready_file": str(ready)}
        argv = [sys.executable, "-m", "tests.bench.child", system, "many_worker", json.dumps(p), str(result)]
        own = {**env, **env_each[i]} if env_each else env
        children.append(
            (
                subprocess.Popen(argv, env=own, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL),
                ready,
                result,
            )
        )
    deadline = time.monotonic() + timeout
    while not all(r.exists() or c.poll() is not None for c, r, _ in children):
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    t_go = time.time()
    go.touch()
    for c, _, _ in children:
        try:
            c.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            c.kill()
            c.wait()
    t_exit = time.time()
    results = []
    for c, _, result in children:
        try:
            r = json.loads(result.read_text())
        except (OSError, ValueError):
            r = {"error": f"worker exited with code {c.returncode} and no result"}
        results.append(r)
    ends = [r["end"] for r in results if "end" in r]
    return results, t_go, max(ends) if ends else t_exit
