"""Running one benchmark child: wall time, peak RSS of its whole process tree, its result file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO_ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.01


@dataclass
class ChildResult:
    rc: int
    wall_s: float
    peak_rss_mb: float
    """Peak RSS of the tree up to the child's mark (the whole run when it set none), MB."""
    total_rss_mb: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    stderr_tail: str = ""
    timed_out: bool = False


def tree_rss(proc: psutil.Process) -> int:
    """Sum of RSS over a process and all its descendants (0 for the ones that vanished meanwhile)."""
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


MARK_FILE = "rss.mark"
"""A child touches this file in its working directory when the phase whose memory counts is over
(e.g. after ``finish()``, before it imports a SQL client to check its rows)."""


class RssSampler:
    """Polls the RSS of a process tree on a thread; ``peak`` is the highest sum seen, ``marked`` the
    highest seen before ``mark`` appeared (None when it never did)."""

    def __init__(self, pid: int, interval: float = POLL_S, mark: Path | None = None) -> None:
        self.peak = 0
        self.marked: int | None = None
        self._mark = mark
        self._interval = interval
        self._stop = threading.Event()
        try:
            self._proc: psutil.Process | None = psutil.Process(pid)
        except psutil.Error:
            self._proc = None
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set() and self._proc is not None:
            self.peak = max(self.peak, tree_rss(self._proc))
            if self.marked is None and self._mark is not None and self._mark.exists():
                self.marked = self.peak
            self._stop.wait(self._interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNSTREAM_", "WANDB_", "MLFLOW_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def run_argv(
    argv: list[str], env: dict[str, str], cwd: Path, timeout: float, result_file: Path | None = None
) -> ChildResult:
    """Run ``argv``, timing it from spawn to exit and sampling its tree's RSS."""
    err = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    timed_out = False
    mark = cwd / MARK_FILE
    mark.unlink(missing_ok=True)
    with RssSampler(proc.pid, mark=mark) as rss:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_tree(proc.pid)
            proc.wait()
    wall = time.perf_counter() - t0
    err.seek(0)
    tail = err.read()[-4000:].decode("utf-8", "replace")
    err.close()
    metrics: dict[str, Any] = {}
    if result_file is not None and result_file.exists():
        try:
            metrics = json.loads(result_file.read_text())
        except ValueError:
            metrics = {}
    total = max(rss.peak, metrics.pop("_self_maxrss_kib", 0) * 1024)
    peak = rss.marked if rss.marked is not None else total
    return ChildResult(
        rc=proc.returncode,
        wall_s=wall,
        peak_rss_mb=peak / 1e6,
        total_rss_mb=total / 1e6,
        metrics=metrics,
        stderr_tail=tail,
        timed_out=timed_out,
    )


def _kill_tree(pid: int) -> None:
    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.Error:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass


def run_child(
    system: str,
    scenario: str,
    params: dict[str, Any],
    workdir: Path,
    timeout: float,
    env_extra: dict[str, str] | None = None,
) -> ChildResult:
    """``python -m tests.bench.child SYSTEM SCENARIO`` in a fresh interpreter, in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    result_file = workdir / f"result-{system}-{scenario}.json"
    result_file.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "tests.bench.child", system, scenario, json.dumps(params), str(result_file)]
    return run_argv(argv, child_env(env_extra), workdir, timeout, result_file)


def run_snippet(code: str, workdir: Path, timeout: float, env_extra: dict[str, str] | None = None) -> ChildResult:
    """``python -c CODE``: a whole process, timed from spawn to exit (start-up is the point)."""
    workdir.mkdir(parents=True, exist_ok=True)
    return run_argv([sys.executable, "-c", code], child_env(env_extra), workdir, timeout)
