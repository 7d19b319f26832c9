"""The NATS cluster of ``deploy/nats/``, rendered for loopback and run as three local processes
(:mod:`tests.cluster`): it forms, and an R3 stream survives the SIGKILL of its leader and heals
when the node comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from runstream.broker.jetstream import connect
from tests.cluster import LocalCluster

pytestmark = pytest.mark.slow

STREAM = "CLUSTERTEST"
SUBJECT = "ct.events"
BEFORE, AFTER = 100, 100  # messages published before and after the leader dies

T = TypeVar("T")


def test_cluster_forms_with_one_meta_leader(nats_cluster: LocalCluster) -> None:
    names = [n.name for n in nats_cluster.nodes]
    assert names == ["n1", "n2", "n3"]
    assert 4222 not in [p for n in nats_cluster.nodes for p in (n.client_port, n.cluster_port, n.monitor_port)]
    assert nats_cluster.url_list == ",".join(nats_cluster.urls)

    leaders = {nats_cluster.meta_leader(i) for i in range(3)}
    assert len(leaders) == 1
    assert leaders <= set(names)
    for n in nats_cluster.nodes:
        assert nats_cluster.node_of(n.url) is n
        assert nats_cluster.index_of(n.name) == n.index
        jsz = nats_cluster.monitor(n.index, "/jsz")
        assert jsz["meta_cluster"]["cluster_size"] == 3
        routez = nats_cluster.monitor(n.index, "/routez")
        assert {r["remote_name"] for r in routez["routes"]} == set(names) - {n.name}


async def _retrying(what: str, attempt: Callable[[], Awaitable[T]], deadline: float) -> T:
    """Await ``attempt()`` until it succeeds or the deadline passes. While a stream or the meta group
    elects a leader, JetStream requests go unanswered (timeouts, no responders): a client retries,
    as the SDK and the server do."""
    from nats.errors import Error as NatsError

    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return await attempt()
        except (NatsError, TimeoutError) as e:
            last = e
            await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: no success before the deadline; last error: {last!r}")


async def _publish(js: Any, i: int, deadline: float) -> int:
    """Publish message ``i`` with its own message id (so a retry is deduplicated); return the
    stream sequence of its ack."""
    ack = await _retrying(f"publish m{i}", lambda: js.publish(
        SUBJECT, f"m{i}".encode(), timeout=2.0, headers={"Nats-Msg-Id": f"m{i}"}), deadline)
    return int(ack.seq)


async def _read_all(js: Any, count: int) -> list[str]:
    """Every message of the stream, in order, through an ordered consumer."""
    sub = await js.subscribe(SUBJECT, stream=STREAM, ordered_consumer=True)
    try:
        return [(await sub.next_msg(timeout=10)).data.decode() for _ in range(count)]
    finally:
        await sub.unsubscribe()


def test_r3_stream_survives_its_leader_sigkill_and_the_node_catches_up(nats_cluster: LocalCluster) -> None:
    cluster = nats_cluster

    async def setup() -> str:
        from nats.js.api import StreamConfig

        nc = await connect(cluster.url_list)
        try:
            await nc.jetstream().add_stream(StreamConfig(name=STREAM, subjects=[SUBJECT], num_replicas=3))
        finally:
            await nc.close()
        return cluster.wait_for(lambda: cluster.stream_leader(STREAM), f"a leader of {STREAM}")

    leader = asyncio.run(setup())
    killed = cluster.index_of(leader)
    for n in cluster.nodes:  # all three replicas in sync before the kill
        cluster.wait_for(lambda n=n: cluster.replica_current(STREAM, n.name), f"{n.name} current in {STREAM}")

    async def publish_kill_publish_read() -> tuple[list[int], list[str]]:
        # The client is on the leader's node (first in its list), so the kill also cuts it off.
        nc = await connect(cluster.rotated_url_list(killed))
        try:
            assert nc.connected_url.port == cluster.nodes[killed].client_port
            js = nc.jetstream()
            deadline = time.monotonic() + 120
            seqs = [await _publish(js, i, deadline) for i in range(BEFORE)]
            cluster.kill(killed)
            seqs += [await _publish(js, i, deadline) for i in range(BEFORE, BEFORE + AFTER)]
            assert nc.connected_url.port != cluster.nodes[killed].client_port
            info = await _retrying("stream info", lambda: js.stream_info(STREAM), deadline)
            assert info.state.messages == BEFORE + AFTER
            assert info.cluster.leader != leader
            return seqs, await _retrying("read", lambda: _read_all(js, BEFORE + AFTER), deadline)
        finally:
            await nc.close()

    seqs, read = asyncio.run(publish_kill_publish_read())
    assert seqs == list(range(1, BEFORE + AFTER + 1))
    assert read == [f"m{i}" for i in range(BEFORE + AFTER)]
    new_leader = cluster.stream_leader(STREAM)
    assert new_leader is not None and new_leader != leader
    assert not cluster.replica_current(STREAM, leader)

    cluster.restart(killed)
    cluster.wait_for(lambda: cluster.replica_current(STREAM, leader), f"{leader} to catch up on {STREAM}",
                     timeout=120)
    own = cluster.stream_detail(killed, STREAM)
    assert own is not None
    assert own["state"]["messages"] == BEFORE + AFTER
    assert own["state"]["last_seq"] == BEFORE + AFTER
