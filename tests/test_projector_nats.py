"""The projector against a real nats-server and real DuckDB files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import duckdb

from runstream.broker import NatsServer
from runstream.broker.codec import encode_event, encode_log_body, envelope
from runstream.broker.jetstream import connect, ensure_log
from runstream.broker.names import msg_id, new_run_uid, run_subject
from runstream.projector import Projector, Reaper, catch_up, replay_file
from tests.conftest import wait_for


def _event(
    kind: str, uid: str, seq: int, ts: float, body: dict[str, Any], writer: str = "w1", entity: str = "ent"
) -> tuple[str, bytes, str]:
    return (
        run_subject(entity, uid, kind),
        encode_event(envelope(kind, uid, writer, seq, ts, body)),
        msg_id(uid, writer, seq),
    )


def _init(uid: str, run_id: str, ts: float = 1000.0, entity: str = "ent") -> tuple[str, bytes, str]:
    return _event(
        "init",
        uid,
        0,
        ts,
        {
            "entity": entity,
            "project": "proj",
            "run_id": run_id,
            "name": "n",
            "start_time": ts,
            "config": {"lr": 0.1},
        },
        entity=entity,
    )


def publish(url: str, events: list[tuple[str, bytes, str | None]]) -> None:
    async def go() -> None:
        nc = await connect(url)
        try:
            js = nc.jetstream()
            await ensure_log(js)
            for subject, data, mid in events:
                await js.publish(subject, data, headers={"Nats-Msg-Id": mid} if mid else None)
        finally:
            await nc.close()

    anyio.run(go)


def query(db: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def test_catch_up_projects_published_events(nats_server: NatsServer, tmp_path: Path) -> None:
    uid = new_run_uid()
    publish(
        nats_server.url,
        [
            _init(uid, "r1"),
            _event(
                "log",
                uid,
                1,
                1001.0,
                encode_log_body([(0, 1001.0, {"loss": 0.5}), (1, 1002.0, {"loss": 0.25})]),
            ),
            _event("finish", uid, 2, 1010.0, {"exit_code": 0, "state": "finished", "runtime": 10.0}),
        ],
    )
    db = tmp_path / "p.duckdb"
    seq = catch_up(db, nats_server.url)
    assert seq > 0
    assert query(
        db, "SELECT path, state, exit_code, runtime, last_step FROM runs WHERE run_uid = ?", [uid]
    ) == [("ent/proj/r1", "finished", 0, 10.0, 1)]
    assert query(db, "SELECT step, key, value FROM history WHERE run_uid = ? ORDER BY step", [uid]) == [
        (0, "loss", 0.5),
        (1, "loss", 0.25),
    ]
    assert query(db, "SELECT key, value FROM summary WHERE run_uid = ?", [uid]) == [("loss", 0.25)]
    assert query(db, "SELECT key, value FROM config WHERE run_uid = ?", [uid]) == [("lr", 0.1)]
    assert query(db, "SELECT _step, metrics FROM history_wide WHERE run_uid = ? ORDER BY 1", [uid]) == [
        (0, {"loss": 0.5}),
        (1, {"loss": 0.25}),
    ]


def test_malformed_message_lands_in_dead_letters_and_later_events_project(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    uid = new_run_uid()
    publish(
        nats_server.url,
        [
            _init(uid, "r2"),
            (run_subject("ent", uid, "log"), b"\xc1 definitely not msgpack", None),
            _event("log", uid, 1, 1001.0, encode_log_body([(3, 1001.0, {"acc": 0.9})])),
        ],
    )
    db = tmp_path / "p.duckdb"
    catch_up(db, nats_server.url)
    dead = query(
        db, "SELECT reason, payload FROM dead_letters WHERE subject = ?", [run_subject("ent", uid, "log")]
    )
    assert len(dead) == 1 and "not msgpack" in dead[0][0] and dead[0][1] == b"\xc1 definitely not msgpack"
    assert query(db, "SELECT step, value FROM history WHERE run_uid = ?", [uid]) == [(3, 0.9)]


def _public(db: Path, uids: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    marks = ",".join("?" * len(uids))
    return {
        t: [
            tuple(repr(v) for v in r)
            for r in query(db, f"SELECT * FROM {t} WHERE run_uid IN ({marks}) ORDER BY ALL", uids)
        ]
        for t in ("runs", "history", "summary", "config", "metrics")
    }


def test_replay_file_equals_incremental_projection(nats_server: NatsServer, tmp_path: Path) -> None:
    uid = new_run_uid()
    inc = tmp_path / "inc.duckdb"
    publish(
        nats_server.url, [_init(uid, "r3"), _event("log", uid, 1, 1.0, encode_log_body([(5, 1.0, {"x": 1})]))]
    )
    catch_up(inc, nats_server.url)
    publish(
        nats_server.url,
        [
            _event("log", uid, 2, 2.0, encode_log_body([(2, 2.0, {"x": 2}), (5, 2.0, {"x": 5})])),
            _event(
                "log", uid, 2, 2.0, encode_log_body([(9, 2.0, {"x": 99})]), writer="w1"
            ),  # same id: deduped
            _event("define_metric", uid, 3, 3.0, {"name": "x", "summary": ["max", "mean"]}),
        ],
    )
    catch_up(inc, nats_server.url)
    seen: list[tuple[int, int]] = []
    full = tmp_path / "full.duckdb"
    seq = replay_file(full, nats_server.url, progress=lambda done, last: seen.append((done, last)))
    assert seen and seen[-1][0] == seq
    assert _public(inc, [uid]) == _public(full, [uid])
    assert query(full, "SELECT key, value FROM summary WHERE run_uid = ? ORDER BY key", [uid]) == [
        ("x.max", 5.0),
        ("x.mean", 8 / 3),
    ]


def test_reaper_crashes_a_silent_run_and_a_heartbeat_revives_it(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    uid, fresh = new_run_uid(), new_run_uid()
    now = [5000.0]
    publish(nats_server.url, [_init(uid, "r4", ts=1000.0), _init(fresh, "r5", ts=4990.0)])
    db = tmp_path / "p.duckdb"

    async def scenario() -> list[str]:
        p = Projector(db, nats_server.url, crash_timeout=60.0, heartbeat_interval=1.0, clock=lambda: now[0])
        nc = await connect(nats_server.url)
        try:
            await p.catch_up()
            js = nc.jetstream()
            reaper = Reaper(
                p.cursor,
                lambda s, d, h: js.publish(s, d, headers=h),
                crash_timeout=60.0,
                clock=lambda: now[0],
            )
            published = await reaper.tick()
            await reaper.tick()  # the same decision again: deduplicated by its message id
            await p.catch_up()
            states = dict(
                p.cursor()
                .execute("SELECT run_uid, state FROM runs WHERE run_uid IN (?, ?)", [uid, fresh])
                .fetchall()
            )
            assert states == {uid: "crashed", fresh: "running"}
            now[0] = 5100.0
            await js.publish(*_event("heartbeat", uid, 1, 5099.0, {})[:2])
            await p.catch_up()
            states = dict(
                p.cursor().execute("SELECT run_uid, state FROM runs WHERE run_uid = ?", [uid]).fetchall()
            )
            assert states == {uid: "running"}
            return [u for u in published if u in (uid, fresh)]
        finally:
            await nc.close()
            p.close()

    assert anyio.run(scenario) == [uid]
    crashed = query(db, "SELECT count(*) FROM applied WHERE run_uid = ? AND writer = 'reaper'", [uid])
    assert crashed == [(1,)]


def test_run_serves_and_waits_for_new_events(nats_server: NatsServer, tmp_path: Path) -> None:
    uid = new_run_uid()
    db = tmp_path / "p.duckdb"

    async def scenario() -> None:
        p = Projector(db, nats_server.url)
        async with anyio.create_task_group() as tg:
            await tg.start(p.run)
            nc = await connect(nats_server.url)
            ack = await nc.jetstream().publish(*_init(uid, "r6")[:2])
            await nc.close()
            assert await p.wait_for_seq(ack.seq, timeout=10.0)
            assert p.cursor().execute("SELECT state FROM runs WHERE run_uid = ?", [uid]).fetchall() == [
                ("running",)
            ]
            tg.cancel_scope.cancel()
        p.close()

    anyio.run(scenario)


CHILD = """
import sys
from runstream.projector import catch_up
catch_up(sys.argv[1], sys.argv[2], timeout=300)
"""


def test_projector_killed_mid_batch_loses_and_doubles_nothing(own_nats: NatsServer, tmp_path: Path) -> None:
    uids = [new_run_uid() for _ in range(3)]
    events = [_init(u, f"k{i}") for i, u in enumerate(uids)]
    for seq in range(1, 121):
        for u in uids:
            rows = [(seq * 100 + j, float(seq), {"a": float(j), "b": float(seq)}) for j in range(100)]
            events.append(_event("log", u, seq, float(seq), encode_log_body(rows)))
    publish(own_nats.url, events)
    db = tmp_path / "killed.duckdb"
    wal = Path(str(db) + ".wal")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db), own_nats.url], env=env)
    try:
        wait_for(
            lambda: child.poll() is not None or (wal.exists() and wal.stat().st_size > 0),
            timeout=60,
            what="the projector to start writing",
        )
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL, "the projector finished before it could be killed"
    catch_up(db, own_nats.url)
    full = tmp_path / "full.duckdb"
    replay_file(full, own_nats.url)
    assert _public(db, uids) == _public(full, uids)
    assert query(db, "SELECT count(*), count(DISTINCT (run_uid, step, key)) FROM history") == [(72000, 72000)]
    assert query(db, "SELECT count(*) FROM applied") == [(363,)]
