"""Fault battery: the event stream deleted and recreated under a running projector.

The projection's checkpoint then points past the new stream's events: going on from it would skip
them silently. The projector must notice (the stream's creation time changed, or its last sequence
is behind the checkpoint), pause, say so, and keep the new events for `runstream replay`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from runstream.broker import NatsServer
from runstream.broker.jetstream import connect
from runstream.broker.names import STREAM, new_run_uid
from runstream.broker.streams import ensure_streams
from runstream.projector import Projector
from tests.test_projector_nats import _init

pytestmark = pytest.mark.fault


async def _publish(url: str, events: list[tuple[str, bytes, str]]) -> int:
    nc = await connect(url)
    try:
        js = nc.jetstream()
        await ensure_streams(js, 1)
        seq = 0
        for subject, data, mid in events:
            seq = (await js.publish(subject, data, headers={"Nats-Msg-Id": mid})).seq
        return seq
    finally:
        await nc.close()


async def _recreate_stream(url: str) -> None:
    nc = await connect(url)
    try:
        js = nc.jetstream()
        await js.delete_stream(STREAM)
        await ensure_streams(js, 1)
    finally:
        await nc.close()


def _paths(p: Projector) -> list[str]:
    return [r[0] for r in p.cursor().execute("SELECT path FROM runs ORDER BY path").fetchall()]


def test_a_recreated_stream_pauses_the_projector_until_a_replay_and_loses_nothing(
        own_nats: NatsServer, tmp_path: Path, fault_report: Any) -> None:
    db = tmp_path / "p.duckdb"
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        old = [_init(new_run_uid(), f"old{i}") for i in range(5)]
        await _publish(own_nats.url, old)
        p = Projector(db, own_nats.url)
        async with anyio.create_task_group() as tg:
            await tg.start(p.run)
            assert len(_paths(p)) == 5
            await _recreate_stream(own_nats.url)
            new_seq = await _publish(own_nats.url, [_init(new_run_uid(), "new1")])
            assert new_seq == 1
            with anyio.fail_after(20):
                while p.stalled is None:
                    await anyio.sleep(0.02)
            seen["stalled"] = dict(p.stalled)
            seen["paths_paused"] = _paths(p)
            tg.cancel_scope.cancel()
        p.close()
        # a restarted server finds the same: it starts (reads answered) and says why it is paused
        p = Projector(db, own_nats.url)
        async with anyio.create_task_group() as tg:
            await tg.start(p.run)
            seen["restart_stalled"] = None if p.stalled is None else p.stalled["reason"]
            tg.cancel_scope.cancel()
        seen["replayed_to"] = await p.replay()
        seen["paths_replayed"] = _paths(p)
        async with anyio.create_task_group() as tg:
            await tg.start(p.run)
            more = await _publish(own_nats.url, [_init(new_run_uid(), "new2")])
            assert await p.wait_for_seq(more, timeout=20)
            seen["after"] = p.stalled
            seen["paths_after"] = _paths(p)
            tg.cancel_scope.cancel()
        p.close()

    anyio.run(scenario)
    stalled = seen["stalled"]
    assert stalled["reason"] == "stream_changed"
    assert "deleted and recreated" in stalled["message"] and "runstream replay" in stalled["message"]
    assert seen["paths_paused"] == [f"ent/proj/old{i}" for i in range(5)]
    assert seen["restart_stalled"] == "stream_changed"
    assert seen["replayed_to"] == 1
    assert seen["paths_replayed"] == ["ent/proj/new1"]
    assert seen["after"] is None
    assert seen["paths_after"] == ["ent/proj/new1", "ent/proj/new2"]
    fault_report("event stream deleted and recreated", "projector pauses and says so; replay; 0 new lost",
                 "paused (stream_changed) live and after restart; replay -> new1, new2 projected once")
