"""The benchmark suite itself works: a tiny ``--quick`` run of runstream's side, in a subprocess
(row 12 included: a three-node cluster on loopback, one node SIGKILLed).

No speed is asserted here (figures depend on the machine); what is checked is that every row of
issue 3 is in the JSON, that each built row has a number and each later row says "not built", and
that the benchmark's own checks (rows stored == rows logged, nothing lost after SIGKILL) passed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.figures import FIGURES, ROWS

REPO = Path(__file__).resolve().parents[1]

TINY = ["--quick", "--systems", "runstream", "--reps", "1", "--steps", "2000", "--procs", "3",
        "--proc-steps", "300", "--kill-after", "300", "--stall-steps", "2000", "--server-runs", "30",
        "--read-steps", "500", "--peer-read-steps", "100", "--read-runs", "60", "--peer-read-runs", "20",
        "--web-runs", "30", "--web-points", "1000", "--cluster-steps", "500", "--cluster-kill-steps", "1500"]
BROWSER = Path("/usr/bin/chromium").exists() and importlib.util.find_spec("playwright") is not None


@pytest.mark.slow
def test_quick_bench_runs_and_checks_itself(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "tests.bench", *TINY, "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=360)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    figures = {f["key"]: f for f in report["figures"]}
    assert set(figures) == {f.key for f in FIGURES}
    assert {f["row"] for f in report["figures"]} == set(ROWS)
    for fig in FIGURES:
        cell = figures[fig.key]["systems"]["runstream"]
        if fig.later_issue or fig.key == "3.shared_pps":
            if fig.later_issue:
                assert cell["status"] == "not_built" and "median" not in cell, cell
            continue
        if fig.row == "11" and not BROWSER:  # the web rows need chromium
            assert cell["status"] == "not_installed", (fig.key, cell)
            continue
        assert cell["status"] == "ok", (fig.key, cell)
        assert isinstance(cell["median"], float), (fig.key, cell)
        assert "target_met" in figures[fig.key] or fig.target is None
    assert report["errors"] == []
    assert report["checks"] and all(c["ok"] for c in report["checks"]), report["checks"]
    groups = {c["group"] for c in report["checks"]}
    assert {"write", "sigkill", "e2e", "many", "replay", "stalled", "server_runs", "read_history",
            "read_runs", "cluster", "cluster_kill"} <= groups
    cluster = [o for o in report["outcomes"] if o["group"] == "cluster"]  # row 12: the R3 cluster, then R1
    assert sorted(str(o["metrics"].get("stream_replicas")) for o in cluster) == ["3", "None"], cluster
    kill = next(o["metrics"] for o in report["outcomes"] if o["group"] == "cluster_kill")
    assert kill["on_victim"] and kill["lost"] == 0 and kill["doubled"] == 0, kill
    reads = {o["group"]: o for o in report["outcomes"] if o["group"] in ("read_history", "read_runs")}
    assert reads["read_history"]["metrics"]["big_shape"] == [500, 13], reads["read_history"]["metrics"]
    runs = reads["read_runs"]["metrics"]
    assert runs["big_returned"] == runs["big_matching"] > 0 and all(runs["big_good"].values()), runs
    assert "not built" not in proc.stdout  # every row of the issues is built
    assert "self-checks" in proc.stdout
