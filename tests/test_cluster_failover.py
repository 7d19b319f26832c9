"""Trainers on a real 3-node cluster (rendered from ``deploy/nats/``): the SDK's client follows the
cluster when its node dies, re-sends what was not acknowledged with the same message ids, and every
step lands exactly once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from runstream.broker.errors import BrokerError, BrokerUnavailable
from runstream.broker.miniclient import MiniNats, NoResponders
from runstream.broker.names import STREAM
from tests.sdk_helpers import env_with, project, run_gated

pytestmark = pytest.mark.slow


def test_the_client_skips_a_dead_node_and_learns_the_others(nats_cluster: Any) -> None:
    c = nats_cluster
    c.kill(0)
    client = MiniNats(c.url_list, replicas=3).connect()
    try:
        assert client.url == c.urls[1]
        assert set(client.configured + client.discovered) >= set(c.urls[1:])
        # n1 may have led the JetStream meta group: its API answers once a new leader is elected
        c.wait_for(lambda: _ensure_or_none(client), "the JetStream API after n1's death")
        assert client.js_api(f"STREAM.INFO.{STREAM}")["config"]["num_replicas"] == 3
        first = client.js_publish("rs.e.run.u1.log", b"x", msg_id="u1:w:1")
        c.restart(0)  # an R3 stream needs two live nodes in step: n1 must have caught up before n2 dies
        c.wait_for(lambda: c.replica_current(STREAM, "n1"), "n1's replica of the stream current again")
        c.kill(1)
        # the call that meets the dead connection fails (the caller re-sends); the next one
        # connects to the node that is left
        with pytest.raises(BrokerUnavailable):
            client.js_publish("rs.e.run.u1.log", b"x", msg_id="u1:w:1", timeout=30)
        again = c.wait_for(lambda: _publish_or_none(client, "u1:w:1"), "a publish through n1 or n3")
        assert client.url in (c.urls[0], c.urls[2])
        assert again["duplicate"] is True and again["seq"] == first["seq"]
    finally:
        client.close()


def test_a_client_given_only_one_node_learns_the_cluster(nats_cluster: Any) -> None:
    c = nats_cluster
    client = MiniNats(c.urls[2]).connect()
    try:
        assert client.discovered and set(client.discovered) <= set(c.urls)
        c.kill(2)
        c.wait_for(lambda: _connect_or_none(client), "a connection to an advertised node")
        assert client.url in c.urls[:2]
        assert client.reconnects == 1
    finally:
        client.close()


def _publish_or_none(client: MiniNats, mid: str) -> dict[str, Any] | None:
    try:
        return client.js_publish("rs.e.run.u1.log", b"x", msg_id=mid, timeout=10)
    except (BrokerUnavailable, NoResponders):  # no leader of the stream yet
        return None


def _project_or_none(tmp_path: Path, urls: str) -> Any:
    try:
        return project(tmp_path, urls)
    except Exception:  # nats-py's timeouts and 'stream not found' from a node without a meta leader yet
        return None


def _ensure_or_none(client: MiniNats) -> bool:
    try:
        client.ensure_log()
        return True
    except BrokerError:
        client.close()
        return False


def _connect_or_none(client: MiniNats) -> bool:
    try:
        client.connect()
        return True
    except BrokerUnavailable:
        return False


TRAINER = """
import json, sys
import runstream
from runstream.spool import is_complete

run = runstream.init(entity="team", project="fo", id=sys.argv[1])
for step in range(2000):
    run.log({"loss": step / 2})
print("half", flush=True)
sys.stdin.readline()          # the parent kills a node meanwhile
for step in range(2000, 4000):
    run.log({"loss": step / 2})
run.finish()
w = run._worker
print(json.dumps({"all_acked": is_complete(run.spool_path), "error": repr(w.error) if w.error else None}))
"""


@pytest.mark.parametrize("victim", ["own node", "stream leader"])
def test_a_trainer_whose_node_dies_logs_every_step_exactly_once(nats_cluster: Any, tmp_path: Path,
                                                                 victim: str) -> None:
    """The finish timeout is 600 s: a trainer that did not fail over would leave its events in the
    spool (``all_acked`` false) instead of sending them."""
    c = nats_cluster
    env = env_with(dict(os.environ), RUNSTREAM_NATS_URL=c.rotated_url_list(1), RUNSTREAM_STREAM_REPLICAS="3",
                   RUNSTREAM_DIR=str(tmp_path / "rs"), RUNSTREAM_CONSOLE="off", RUNSTREAM_QUIET="1",
                   RUNSTREAM_FINISH_TIMEOUT="600", RUNSTREAM_STATS_INTERVAL="0", RUNSTREAM_CODE_SNAPSHOT="0")
    run_id = "fo-" + victim.replace(" ", "-")
    killed: list[int] = []

    def kill_a_node() -> None:
        leader = c.wait_for(lambda: c.stream_leader(STREAM), "a leader of the event stream")
        killed.append(1 if victim == "own node" else c.index_of(leader))
        c.kill(killed[0])

    out, err = run_gated(TRAINER, env, tmp_path, kill_a_node, run_id)
    idx = killed[0]
    assert json.loads(out.strip().splitlines()[-1]) == {"all_acked": True, "error": None}, err
    # the cluster may still be electing (the meta group, the stream) after the kill: the projection
    # is retried until the JetStream API answers again
    con = c.wait_for(lambda: _project_or_none(tmp_path, ",".join(u for i, u in enumerate(c.urls) if i != idx)),
                     "a projection of the stream once the cluster answers again")
    rows = con.execute("SELECT count(*), count(DISTINCT step), min(step), max(step), sum(value) FROM history h "
                       "JOIN runs r USING (run_uid) WHERE r.run_id = ? AND h.key = 'loss'", [run_id]).fetchone()
    assert rows == (4000, 4000, 0, 3999, sum(s / 2 for s in range(4000)))
    assert con.execute("SELECT state FROM runs WHERE run_id = ?", [run_id]).fetchone() == ("finished",)
