"""``make cluster-demo`` in small: one trainer per node, the event stream's leader killed mid-run;
every row lands exactly once in both replicas and nothing is left running."""

from __future__ import annotations

import io

import pytest

from tests.cluster_demo import demo

pytestmark = pytest.mark.slow


def test_the_cluster_demo_counts_every_row_once_in_each_replica() -> None:
    out = io.StringIO()
    code = demo(trainers_per_node=1, steps=600, pace=0.005, timeout=120, keep=False, out=out)
    text = out.getvalue()
    assert code == 0, text
    lines = text.splitlines()
    assert "rows logged      3600 (expected 3600)" in lines, text
    assert "server-a         3600 rows, 0 lost, 0 doubled, exit 0" in lines, text
    assert "server-b         3600 rows, 0 lost, 0 doubled, exit 0" in lines, text
    assert lines[-1] == "result           OK: every row exactly once in each replica", text
