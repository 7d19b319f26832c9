"""The figures of the table: which row of issue 3 each belongs to (row 12: issue 12), its unit and its target."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

OPS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, ">=": operator.ge, "==": operator.eq}


@dataclass(frozen=True)
class Target:
    op: str
    value: float
    text: str
    below_peers: tuple[tuple[str, ...], float] | None = None
    """(peers, factor): runstream must also be ``factor``× below each of these peers' medians."""

    def met(self, value: float, peers: dict[str, float]) -> bool:
        return not self.shortfalls(value, peers)

    def shortfalls(self, value: float, peers: dict[str, float]) -> list[str]:
        """What part of the target the value misses (empty when met)."""
        out = []
        if not OPS[self.op](value, self.value):
            out.append(f"not {self.op} {self.value:g}")
        if self.below_peers is not None:
            names, factor = self.below_peers
            for name, v in peers.items():
                if (not names or name in names) and value > 0 and v / value < factor:
                    out.append(f"only {v / value:.3g}× below {name} (needs {factor:g}×)")
        return out


@dataclass(frozen=True)
class Figure:
    key: str
    row: str
    label: str
    unit: str
    target: Target | None = None
    later_issue: bool = False
    """A row added by another issue: it prints "not built" until that issue adds it to the suite."""


ALL_PEERS: tuple[str, ...] = ()

FIGURES: tuple[Figure, ...] = (
    Figure(
        "1.log_us",
        "1",
        "run.log() per call, median (10 floats, 1 run)",
        "µs",
        Target("<=", 3, "≤ 3 µs, ≥100× below W&B", (("wandb",), 100)),
    ),
    Figure("1.log_us_mean", "1", "run.log() per call, mean incl. flush stalls", "µs"),
    Figure("1.rss_mb", "1", "peak RSS of the logging process tree", "MB"),
    Figure(
        "1.sigkill_lost",
        "1",
        "returned log() steps lost after SIGKILL + sync",
        "steps",
        Target("==", 0, "0 lost"),
    ),
    Figure(
        "2.e2e_pps",
        "2",
        "first log → all rows queryable (peers: flushed)",
        "points/s",
        Target(">=", 1_000_000, "≥ 1M points/s"),
    ),
    Figure("2.p95_s", "2", "p95 log → queryable latency while logging", "s", Target("<=", 1, "≤ 1 s")),
    Figure(
        "3.many_pps",
        "3",
        "N processes, one run each: points/s to all queryable",
        "points/s",
        Target(">=", 1_000_000, "≥ 1M points/s"),
    ),
    Figure("3.lost", "3", "N processes: points lost", "points", Target("==", 0, "0")),
    Figure("3.doubled", "3", "N processes: points doubled", "points", Target("==", 0, "0")),
    Figure(
        "3.shared_pps",
        "3",
        "N processes, one shared run: points/s",
        "points/s",
        Target(">=", 1_000_000, "≥ 1M points/s"),
    ),
    Figure("4.init_ms", "4", "init() with the stack up", "ms", Target("<=", 20, "≤ 20 ms")),
    Figure("4.import_ms", "4", "import (fresh interpreter)", "ms", Target("<=", 100, "≤ 100 ms")),
    Figure(
        "4.empty_s",
        "4",
        "whole empty-run process",
        "s",
        Target("<=", 0.25, "≤ 0.25 s, ≥7× below every peer", ((), 7)),
    ),
    Figure("5.history_pandas_s", "5", "1M-point history → pandas (all keys, warm)", "s", Target("<=", 0.3, "≤ 0.3 s")),
    Figure("5.history_arrow_s", "5", "1M-point history → Arrow (warm)", "s"),
    Figure("5.history_peer_pandas_s", "5", "history → pandas, peers' size (peer_read_steps)", "s"),
    Figure(
        "5.filter_sort_ms",
        "5",
        "10k runs: lr > 0.01 by config, sorted by summary loss",
        "ms",
        Target("<=", 50, "≤ 50 ms"),
    ),
    Figure("5.filter_sort_default_page_ms", "5", "same, Api.runs default per_page=50", "ms"),
    Figure("5.filter_sort_sql_ms", "5", "same question in api.sql", "ms"),
    Figure("5.filter_sort_peer_ms", "5", "lr > 0.01 sorted by loss at the peers' run count", "ms"),
    Figure(
        "6.replay_pps",
        "6",
        "`runstream replay` of the whole log",
        "points/s",
        Target(">=", 2_000_000, "≥ 2M points/s"),
    ),
    Figure("7.fork_ms", "7", "init(fork_from=) at the middle of a 1M-point run", "ms", Target("<=", 50, "≤ 50 ms")),
    Figure("7.rewind_ms", "7", "init(resume_from=) (rewind) of a 1M-point run", "ms", Target("<=", 50, "≤ 50 ms")),
    Figure("7.fork_read_ms", "7", "the fork's whole history (500k inherited steps) read back", "ms"),
    Figure(
        "8.stalled_rss_mb",
        "8",
        "SDK tree RSS, broker stalled (peers: not stalled)",
        "MB",
        Target("<=", 80, "≤ 80 MB"),
    ),
    Figure("8.server_rss_mb", "8", "server RSS with N runs projected (peak)", "MB", Target("<=", 1000, "≤ 1 GB")),
    Figure("9.default_derived_pct", "9", "default 15 s sampler + tee: cost per step from the direct costs", "%",
           Target("<=", 1, "≤ 1 %")),
    Figure("9.sample_us", "9", "CPU per system sample (psutil; NVML when present)", "µs"),
    Figure("9.tee_line_us", "9", "CPU the console tee adds per printed line (worker included)", "µs"),
    Figure("9.default_overhead_pct", "9", "interleaved blocks: sampler at the default 15 s + tee vs off", "%"),
    Figure("9.overhead_pct", "9", "interleaved blocks: sampler at 0.1 s + console tee vs off", "%"),
    Figure("9.step_us", "9", "CPU per training step, sampler and tee off (the baseline)", "µs"),
    Figure("10.stream_bpp", "10", "bytes per point in the stream", "B", Target("<=", 16, "≤ 16 B")),
    Figure("10.duckdb_bpp", "10", "bytes per point in DuckDB (peers: on disk)", "B", Target("<=", 8, "≤ 8 B")),
    Figure("11.workspace_s", "11", "web: workspace of N runs → all in the table", "s"),
    Figure("11.workspace_chart_s", "11", "web: workspace of N runs → first chart drawn", "s"),
    Figure("11.chart_s", "11", "web: run page of an N-point run → chart drawn", "s"),
    Figure("12.cluster_pps", "12", "3-node R3 cluster: N writers → all rows queryable", "points/s"),
    Figure("12.embedded_pps", "12", "the same workload on the embedded R1 stack", "points/s"),
    Figure(
        "12.kill_log_ms",
        "12",
        "longest log() of a trainer whose node is SIGKILLed",
        "ms",
        Target("<=", 100, "≤ 100 ms: log() only spools"),
    ),
    Figure("12.others_log_ms", "12", "same window, trainers on the surviving nodes", "ms"),
    Figure("12.kill_finish_s", "12", "finish() of the trainer whose node was killed", "s"),
    Figure("12.election_s", "12", "SIGKILL → a new leader of the event stream (NATS)", "s"),
    Figure("12.kill_stale_s", "12", "SIGKILL → every row logged before it queryable", "s"),
    Figure("12.kill_project_s", "12", "SIGKILL → every row queryable (trainers log on)", "s"),
    Figure("12.kill_lost", "12", "node killed: rows lost", "points", Target("==", 0, "0")),
    Figure("12.kill_doubled", "12", "node killed: rows doubled", "points", Target("==", 0, "0")),
)

BY_KEY = {f.key: f for f in FIGURES}
ROWS = tuple(dict.fromkeys(f.row for f in FIGURES))
