"""What runs: one task per scenario × system, with its sizes and how its figures are read."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import peers
from .procs import ChildResult
from .stackctl import Stack

SYSTEMS = ("runstream", *peers.PEERS)

Extract = Callable[[ChildResult, "Stack | None"], dict[str, float]]


@dataclass
class Task:
    group: str
    system: str
    rows: tuple[str, ...]
    extract: Extract
    child: str | None = None
    snippet: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    stack: bool = False
    timeout: float = 900.0
    feeds: tuple[str, ...] = ()
    """The figure keys this task yields (filled from :data:`FEEDS`)."""

    def __post_init__(self) -> None:
        self.feeds = FEEDS[self.extract.__name__]


def _m(r: ChildResult, key: str) -> float:
    return float(r.metrics[key])


def _peer_write(r: ChildResult, _s: Stack | None) -> dict[str, float]:
    return {
        "1.log_us": _m(r, "log_us_median"),
        "1.log_us_mean": _m(r, "log_us_mean"),
        "1.rss_mb": r.peak_rss_mb,
        "2.e2e_pps": _m(r, "e2e_pps"),
        "8.stalled_rss_mb": r.peak_rss_mb,
        "10.duckdb_bpp": _m(r, "bytes_per_point"),
    }


def _hotpath(r: ChildResult, _s: Stack | None) -> dict[str, float]:
    return {
        "1.log_us": _m(r, "log_us_median"),
        "1.log_us_mean": _m(r, "log_us_mean"),
        "1.rss_mb": r.peak_rss_mb,
    }


def _sigkill(r: ChildResult, _s: Stack | None) -> dict[str, float]:
    return {"1.sigkill_lost": _m(r, "lost_steps")}


def _e2e(r: ChildResult, s: Stack | None) -> dict[str, float]:
    out = {"2.e2e_pps": _m(r, "e2e_pps"), "10.stream_bpp": _m(r, "stream_bpp")}
    if s is not None and s.duckdb_bytes:
        out["10.duckdb_bpp"] = s.duckdb_bytes / _m(r, "points")
    return out


def _latency(r: ChildResult, _s: Stack | None) -> dict[str, float]:
    return {"2.p95_s": _m(r, "latency_p95_s")}


def _peer_many(r: ChildResult, _s: Stack | None) -> dict[str, float]:
    return {"3.many_pps": _m(r, "many_pps")}


def _many(r: ChildResult, _s: Stack | None) -> dict[str, float]:
    out = {"3.many_pps": _m(r, "many_pps")}
    if "lost" in r.metrics:
        out.update({"3.lost": _m(r, "lost"), "3.doubled": _m(r, "doubled")})
    return out


def _shared(r: ChildResult, _s: Stack | None) -> dict[str, float]:
    return {"3.shared_pps": _m(r, "many_pps")}


def _startup(r: ChildResult, _s: Stack | None) -> dict[str, float]:
    return {"4.init_ms": _m(r, "init_s") * 1000, "4.import_ms": _m(r, "import_s") * 1000}


def _empty(r: ChildResult, _s: Stack | None) -> dict[str, float]:
    return {"4.empty_s": r.wall_s}


def _replay(r: ChildResult, _s: Stack | None) -> dict[str, float]:
    return {"6.replay_pps": _m(r, "replay_pps")}


def _lifecycle(r: ChildResult, _s: Stack | None) -> dict[str, float]:
    return {"7.fork_ms": _m(r, "fork_ms"), "7.rewind_ms": _m(r, "rewind_ms"),
            "7.fork_read_ms": _m(r, "fork_read_ms")}


def _stalled(r: ChildResult, _s: Stack | None) -> dict[str, float]:
    return {"8.stalled_rss_mb": r.peak_rss_mb}


def _read_history(r: ChildResult, _s: Stack | None) -> dict[str, float]:
    return {
        "5.history_pandas_s": _m(r, "big_pandas_s"),
        "5.history_arrow_s": _m(r, "big_arrow_s"),
        "5.history_peer_pandas_s": _m(r, "peer_pandas_s"),
    }


def _peer_read_history(r: ChildResult, _s: Stack | None) -> dict[str, float]:
    return {"5.history_peer_pandas_s": _m(r, "pandas_s")}


def _read_runs(r: ChildResult, _s: Stack | None) -> dict[str, float]:
    return {
        "5.filter_sort_ms": _m(r, "big_filter_sort_ms"),
        "5.filter_sort_default_page_ms": _m(r, "big_default_page_ms"),
        "5.filter_sort_sql_ms": _m(r, "big_sql_ms"),
        "5.filter_sort_peer_ms": _m(r, "peer_filter_sort_ms"),
    }


def _peer_read_runs(r: ChildResult, _s: Stack | None) -> dict[str, float]:
    return {"5.filter_sort_peer_ms": _m(r, "filter_sort_ms")}


def _server_runs(r: ChildResult, _s: Stack | None) -> dict[str, float]:
    return {"8.server_rss_mb": _m(r, "server_rss_peak_mb")}


def _telemetry(r: ChildResult, _s: Stack | None) -> dict[str, float]:
    return {"9.overhead_pct": _m(r, "fast_overhead_pct"), "9.default_overhead_pct": _m(r, "default_overhead_pct"),
            "9.step_us": _m(r, "off_step_us"), "9.default_derived_pct": _m(r, "default_derived_pct"),
            "9.sample_us": _m(r, "sample_cpu_us"), "9.tee_line_us": _m(r, "tee_line_cpu_us")}


def _web(r: ChildResult, _s: Stack | None) -> dict[str, float]:
    return {"11.workspace_s": _m(r, "workspace_table_s"), "11.workspace_chart_s": _m(r, "workspace_chart_s"),
            "11.chart_s": _m(r, "chart_s")}


def _cluster_pps(r: ChildResult, _s: Stack | None) -> dict[str, float]:
    return {"12.cluster_pps": _m(r, "many_pps")}


def _cluster_r1(r: ChildResult, _s: Stack | None) -> dict[str, float]:
    return {"12.embedded_pps": _m(r, "many_pps")}


def _cluster_kill(r: ChildResult, _s: Stack | None) -> dict[str, float]:
    return {"12.kill_log_ms": _m(r, "kill_log_ms"), "12.others_log_ms": _m(r, "others_log_ms"),
            "12.kill_finish_s": _m(r, "kill_finish_s"), "12.election_s": _m(r, "election_s"),
            "12.kill_stale_s": _m(r, "stale_s"), "12.kill_project_s": _m(r, "project_s"),
            "12.kill_lost": _m(r, "lost"), "12.kill_doubled": _m(r, "doubled")}


KILL_PACE_S = 0.002
"""Row 12's trainers: seconds of "training" between two steps (``make cluster-demo``'s default)."""

FEEDS = {
    "_peer_write": (
        "1.log_us",
        "1.log_us_mean",
        "1.rss_mb",
        "2.e2e_pps",
        "8.stalled_rss_mb",
        "10.duckdb_bpp",
    ),
    "_hotpath": ("1.log_us", "1.log_us_mean", "1.rss_mb"),
    "_sigkill": ("1.sigkill_lost",),
    "_e2e": ("2.e2e_pps", "10.stream_bpp", "10.duckdb_bpp"),
    "_latency": ("2.p95_s",),
    "_peer_many": ("3.many_pps",),
    "_many": ("3.many_pps", "3.lost", "3.doubled"),
    "_shared": ("3.shared_pps",),
    "_startup": ("4.init_ms", "4.import_ms"),
    "_empty": ("4.empty_s",),
    "_replay": ("6.replay_pps",),
    "_lifecycle": ("7.fork_ms", "7.rewind_ms", "7.fork_read_ms"),
    "_stalled": ("8.stalled_rss_mb",),
    "_server_runs": ("8.server_rss_mb",),
    "_read_history": ("5.history_pandas_s", "5.history_arrow_s", "5.history_peer_pandas_s"),
    "_peer_read_history": ("5.history_peer_pandas_s",),
    "_read_runs": (
        "5.filter_sort_ms",
        "5.filter_sort_default_page_ms",
        "5.filter_sort_sql_ms",
        "5.filter_sort_peer_ms",
    ),
    "_peer_read_runs": ("5.filter_sort_peer_ms",),
    "_telemetry": ("9.overhead_pct", "9.default_overhead_pct", "9.step_us", "9.default_derived_pct", "9.sample_us",
                   "9.tee_line_us"),
    "_web": ("11.workspace_s", "11.workspace_chart_s", "11.chart_s"),
    "_cluster_pps": ("12.cluster_pps",),
    "_cluster_r1": ("12.embedded_pps",),
    "_cluster_kill": ("12.kill_log_ms", "12.others_log_ms", "12.kill_finish_s", "12.election_s",
                      "12.kill_stale_s", "12.kill_project_s", "12.kill_lost", "12.kill_doubled"),
}


def peer_steps(args: argparse.Namespace, system: str, many: bool = False) -> int:
    if system == "mlflow-sqlite":
        return args.mlflow_proc_steps if many else args.mlflow_steps
    if system == "mlflow-file":
        return args.mlflow_proc_steps if many else args.mlflow_file_steps
    return args.peer_proc_steps if many else args.peer_steps


def build(args: argparse.Namespace) -> list[Task]:
    """Every task of one repetition, grouped by scenario (systems rotated later)."""
    m = args.metrics
    tasks: list[Task] = []
    for system in args.systems:
        if system == "runstream":
            cluster_sizes = {"procs": args.cluster_procs, "steps": args.cluster_steps, "metrics": m}
            tasks += [
                Task(
                    "write",
                    system,
                    ("1",),
                    _hotpath,
                    child="hotpath",
                    params={"steps": args.steps, "metrics": m},
                    stack=True,
                ),
                Task(
                    "sigkill",
                    system,
                    ("1",),
                    _sigkill,
                    child="sigkill",
                    params={"metrics": m, "kill_after": args.kill_after},
                    stack=True,
                ),
                Task(
                    "e2e",
                    system,
                    ("2", "10"),
                    _e2e,
                    child="e2e",
                    params={"steps": args.steps, "metrics": m},
                    stack=True,
                ),
                Task(
                    "latency",
                    system,
                    ("2",),
                    _latency,
                    child="e2e",
                    params={"steps": args.steps, "metrics": m, "probe_interval": args.probe_interval},
                    stack=True,
                ),
                Task(
                    "many",
                    system,
                    ("3",),
                    _many,
                    child="many",
                    params={"procs": args.procs, "steps": args.proc_steps, "metrics": m},
                    stack=True,
                ),
                Task(
                    "shared",
                    system,
                    ("3",),
                    _shared,
                    child="shared",
                    params={"procs": args.procs, "steps": args.proc_steps, "metrics": m},
                    stack=True,
                ),
                Task("startup", system, ("4",), _startup, child="startup", stack=True),
                Task(
                    "empty",
                    system,
                    ("4",),
                    _empty,
                    snippet="import runstream; runstream.init(project='bench').finish()",
                    stack=True,
                ),
                Task(
                    "replay",
                    system,
                    ("6",),
                    _replay,
                    child="replay",
                    params={"steps": args.steps, "metrics": m},
                    stack=True,
                ),
                Task(
                    "lifecycle",
                    system,
                    ("7",),
                    _lifecycle,
                    child="lifecycle",
                    params={"steps": args.steps, "metrics": m},
                    stack=True,
                ),
                Task(
                    "stalled",
                    system,
                    ("8",),
                    _stalled,
                    child="stalled",
                    params={"steps": args.stall_steps, "metrics": m},
                    stack=True,
                ),
                Task(
                    "read_history",
                    system,
                    ("5",),
                    _read_history,
                    child="read_history",
                    params={"steps": args.read_steps, "metrics": m, "peer_steps": args.peer_read_steps},
                    stack=True,
                ),
                Task(
                    "read_runs",
                    system,
                    ("5",),
                    _read_runs,
                    child="read_runs",
                    params={"runs": args.read_runs, "peer_runs": args.peer_read_runs},
                    stack=True,
                ),
                Task(
                    "telemetry",
                    system,
                    ("9",),
                    _telemetry,
                    child="telemetry",
                    params={"steps": args.telemetry_steps, "rounds": args.telemetry_rounds, "metrics": m},
                    stack=True,
                ),
                Task(
                    "server_runs",
                    system,
                    ("8",),
                    _server_runs,
                    child="server_runs",
                    params={"runs": args.server_runs},
                    stack=True,
                ),
                Task(
                    "web_ui",
                    system,
                    ("11",),
                    _web,
                    child="web_ui",
                    params={"runs": args.web_runs, "points": args.web_points, "loads": args.web_loads},
                    stack=True,
                ),
                # row 12: one group, so the cluster and the embedded stack take turns going first
                Task("cluster", system, ("12",), _cluster_pps, child="cluster_pps", params=cluster_sizes),
                Task("cluster", system, ("12",), _cluster_r1, child="many", params=cluster_sizes, stack=True),
                Task(
                    "cluster_kill",
                    system,
                    ("12",),
                    _cluster_kill,
                    child="cluster_kill",
                    params={"steps": args.cluster_kill_steps, "pace": KILL_PACE_S},
                ),
            ]
        else:
            tasks += [
                Task(
                    "write",
                    system,
                    ("1", "2", "8", "10"),
                    _peer_write,
                    child="write",
                    params={"steps": peer_steps(args, system), "metrics": m},
                ),
                Task(
                    "many",
                    system,
                    ("3",),
                    _peer_many,
                    child="many",
                    params={"procs": args.procs, "steps": peer_steps(args, system, many=True), "metrics": m},
                ),
                Task("startup", system, ("4",), _startup, child="startup"),
                Task("empty", system, ("4",), _empty, snippet=peers.empty_run_snippet(system)),
                Task(
                    "read_history",
                    system,
                    ("5",),
                    _peer_read_history,
                    child="read_history",
                    params={"steps": args.peer_read_steps, "metrics": m},
                ),
                Task(
                    "read_runs",
                    system,
                    ("5",),
                    _peer_read_runs,
                    child="read_runs",
                    params={"runs": args.peer_read_runs},
                ),
            ]
    wanted = set(args.rows)
    return [t for t in tasks if wanted.intersection(t.rows)]
