"""``runstream status``'s view of the log: each stream's replicas, leader and lagging peers."""

from __future__ import annotations

from typing import Any

import pytest

from runstream.broker.streams import report_lines, stream_row

INFO = {"config": {"name": "RUNSTREAM", "num_replicas": 3}, "state": {"messages": 12, "bytes": 900},
        "cluster": {"name": "rs", "leader": "n2",
                    "replicas": [{"name": "n1", "current": True, "active": 1},
                                 {"name": "n3", "current": False, "offline": True, "lag": 7}]}}


def test_a_stream_row_names_the_leader_the_current_and_the_lagging() -> None:
    assert stream_row("RUNSTREAM", INFO) == {
        "name": "RUNSTREAM", "replicas": 3, "messages": 12, "bytes": 900, "leader": "n2",
        "current": ["n2", "n1"], "lagging": [{"name": "n3", "lag": 7, "offline": True}]}
    assert report_lines([stream_row("RUNSTREAM", INFO)]) == [
        "  RUNSTREAM        R3  12 msgs  leader n2  current 2/3  lagging: n3 offline (lag 7)"]


def test_a_missing_stream_says_so() -> None:
    row = stream_row("KV_rs_paths", {"error": {"code": 404, "err_code": 10059, "description": "stream not found"}})
    assert row == {"name": "KV_rs_paths", "error": "not created yet"}
    assert report_lines([row]) == ["  KV_rs_paths      not created yet"]


@pytest.mark.slow
def test_status_shows_the_cluster_and_every_stream_at_r3(nats_cluster: Any, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    from runstream.broker.miniclient import MiniNats
    from runstream.broker.objects import ObjectStore
    from runstream.cli import main

    c = nats_cluster
    client = MiniNats(c.url_list, replicas=3).connect()
    try:
        client.ensure_log()
        ObjectStore(client).ensure()
    finally:
        client.close()
    monkeypatch.setenv("RUNSTREAM_NATS_URL", c.url_list)
    monkeypatch.setenv("RUNSTREAM_DIR", str(tmp_path / "rs"))
    main(["status"])  # no runstream server runs: the exit code says so; the log's part is shown
    out = capsys.readouterr().out.splitlines()
    from tests.cluster import CLUSTER_NAME

    assert out[out.index("streams") - 2] == f"log       cluster {CLUSTER_NAME!r}, connected to n1 at {c.urls[0]}"
    nodes = next(line for line in out if line.startswith("nodes"))
    assert sorted(nodes.split(None, 1)[1].split(", ")) == sorted(c.urls)
    streams = {line.split()[0]: line for line in out[out.index("streams") + 1:]}
    for name in ("RUNSTREAM", "KV_rs_paths", "OBJ_rs_objects"):
        assert " R3 " in streams[name] and "current 3/3" in streams[name], streams[name]
