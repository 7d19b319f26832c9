"""The broker enforces who may do what (issue 13): a real nats-server with the authorization file
runstream generates from the identities bucket; user A trains with the real SDK under its own key,
user B attacks A's private project with a stock nats-py client holding B's key. Every attempt is
refused by the broker itself (a permissions violation it reports, no reply), and A's data is the
same afterwards."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runstream.broker import NatsServer
from runstream.broker.identities import Identities, Snapshot, bcrypt_hash, nats_user
from runstream.broker.jetstream import connect
from runstream.broker.nats_auth import SERVER_USER, AuthSync, authorization_block, reload_pid
from runstream.broker.streams import ensure_streams

from .conftest import run_async, wait_for


class SecuredBroker:
    """A nats-server requiring credentials, its identities and an :class:`AuthSync` writing its
    authorization file (reloaded with SIGHUP)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.server_password = secrets.token_urlsafe(24)
        self.server_bcrypt = bcrypt_hash(self.server_password)
        self.auth_file = base / "auth.conf"
        self.auth_file.write_text(authorization_block(Snapshot(), self.server_bcrypt))
        self.srv = NatsServer(base / "js", log_file=base / "nats.log", auth_file=self.auth_file).start()

    @property
    def url(self) -> str:
        return self.srv.url

    async def server_conn(self) -> Any:
        return await connect(self.url, user=SERVER_USER, password=self.server_password)

    async def sync(self) -> None:
        """Write the authorization file from the bucket now and reload nats-server."""
        nc = await self.server_conn()
        try:
            await AuthSync(Identities(nc.jetstream()), self.auth_file, self.server_bcrypt,
                           lambda: reload_pid(self.srv.pid or 0)).sync_once()
        finally:
            await nc.close()


def _connect_reply(url: str, **creds: str) -> str:
    """What the broker answers a CONNECT with these credentials (``PONG`` when it lets it in), over
    a plain socket: the broker's own word, no client library in between."""
    import json
    import socket
    from urllib.parse import urlparse

    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=5) as s:
        f = s.makefile("rb")
        assert f.readline().startswith(b"INFO ")
        s.sendall(b"CONNECT " + json.dumps({"verbose": False, "pedantic": False, **creds}).encode()
                  + b"\r\nPING\r\n")
        return f.readline().decode().strip()


def _can_connect(url: str, user: str, password: str) -> bool:
    return _connect_reply(url, user=user, **{"pass": password}) == "PONG"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[SecuredBroker]:
    b = SecuredBroker(tmp_path)
    yield b
    b.srv.stop()


@pytest.fixture
def users(broker: SecuredBroker) -> dict[str, str]:
    """alice and bob with a key each (alice's team ``vision`` has bob as nobody); streams created by
    the server role."""

    async def setup() -> dict[str, str]:
        nc = await broker.server_conn()
        try:
            js = nc.jetstream()
            await ensure_streams(js, 1)
            ids = Identities(js)
            await ids.add_user("alice")
            await ids.add_user("bob")
            _, ka = await ids.create_key("alice")
            _, kb = await ids.create_key("bob")
            return {"alice": ka, "bob": kb}
        finally:
            await nc.close()

    keys = run_async(setup())
    run_async(broker.sync())
    for k in keys.values():
        user = nats_user(k)
        wait_for(lambda u=user, k=k: _can_connect(broker.url, u, k), what="the keys to be accepted")
    return keys


def _nats_user(key: str) -> str:
    return nats_user(key)


def test_nothing_connects_without_credentials_or_with_a_wrong_key(broker: SecuredBroker,
                                                                   users: dict[str, str]) -> None:
    alice = _nats_user(users["alice"])
    refused = "-ERR 'Authorization Violation'"
    assert _connect_reply(broker.url) == refused
    assert _connect_reply(broker.url, user=alice, **{"pass": users["bob"]}) == refused
    assert _connect_reply(broker.url, user=SERVER_USER, **{"pass": "guess"}) == refused
    assert _connect_reply(broker.url, auth_token=users["alice"]) == refused
    assert _connect_reply(broker.url, user=alice, **{"pass": users["alice"]}) == "PONG"


def test_a_users_key_trains_with_the_real_sdk(broker: SecuredBroker, users: dict[str, str], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    run = _train_as(broker, users["alice"], "alice", tmp_path, monkeypatch)
    counts = run_async(_counts(broker, run["uid"]))
    assert counts["paths"] == 1 and counts["objects"] == 1 and counts["events"] >= 3


def _train_as(broker: SecuredBroker, key: str, entity: str, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    import runstream

    for k, v in {"RUNSTREAM_NATS_URL": broker.url, "RUNSTREAM_NATS_USER": _nats_user(key),
                 "RUNSTREAM_NATS_PASSWORD": key, "RUNSTREAM_DIR": str(tmp_path / "data"),
                 "RUNSTREAM_RUN_DIR": str(tmp_path / "work"), "RUNSTREAM_QUIET": "1",
                 "RUNSTREAM_CODE_SNAPSHOT": "0", "RUNSTREAM_DISABLE_STATS": "1",
                 "RUNSTREAM_CONSOLE": "off"}.items():
        monkeypatch.setenv(k, v)
    (tmp_path / "weights.bin").write_bytes(b"secret weights of " + entity.encode())
    r = runstream.init(entity=entity, project="private", config={"api_token": "s3cret"})
    for step in range(5):
        r.log({"loss": 1.0 / (step + 1)})
    r.save(str(tmp_path / "weights.bin"), policy="now", base_path=str(tmp_path))
    r.finish()
    return {"uid": r.uid, "id": r.id}


async def _counts(broker: SecuredBroker, uid: str) -> dict[str, int]:
    nc = await broker.server_conn()
    try:
        js = nc.jetstream()
        ev = await js.stream_info("RUNSTREAM", subjects_filter=f"rs.*.run.{uid}.*")
        paths = await js.stream_info("KV_rs_paths")
        objs = await js.stream_info("OBJ_rs_objects", subjects_filter="$O.rs_objects.M.>")
        ident = await js.stream_info("KV_rs_identities")
        return {"events": sum((ev.state.subjects or {}).values()), "paths": paths.state.messages,
                "objects": len(objs.state.subjects or {}), "identities": ident.state.messages,
                "entity_msgs": sum(((await js.stream_info("RUNSTREAM", subjects_filter="rs.alice.>")).state.subjects
                                    or {}).values())}
    finally:
        await nc.close()


def test_user_b_attacks_user_a_and_the_broker_refuses_each_attempt(
        broker: SecuredBroker, users: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a_run = _train_as(broker, users["alice"], "alice", tmp_path, monkeypatch)
    uid = a_run["uid"]
    before = run_async(_counts(broker, uid))
    violations = run_async(_attack(broker.url, users["bob"], uid, a_run["id"]))
    after = run_async(_counts(broker, uid))
    assert after == before
    bob = _nats_user(users["bob"])
    assert violations["refused"] == {what: why.lower() for what, why in {
        "subscribe rs.alice.>": "Permissions Violation for Subscription to \"rs.alice.>\"",
        "subscribe _INBOX.>": "Permissions Violation for Subscription to \"_INBOX.>\"",
        "subscribe rsctl.run.alice.*.stop": "Permissions Violation for Subscription to \"rsctl.run.alice.*.stop\"",
        "read events (consumer)": "Permissions Violation for Publish to \"$JS.API.CONSUMER.CREATE.RUNSTREAM\"",
        "forge finish": f"Permissions Violation for Publish to \"rs.alice.run.{uid}.finish\"",
        "forge delete": f"Permissions Violation for Publish to \"rs.alice.run.{uid}.delete\"",
        "stop": f"Permissions Violation for Publish to \"rsctl.run.alice.{uid}.stop\"",
        "purge RUNSTREAM": "Permissions Violation for Publish to \"$JS.API.STREAM.PURGE.RUNSTREAM\"",
        "delete RUNSTREAM": "Permissions Violation for Publish to \"$JS.API.STREAM.DELETE.RUNSTREAM\"",
        "delete KV_rs_paths": "Permissions Violation for Publish to \"$JS.API.STREAM.DELETE.KV_rs_paths\"",
        "delete OBJ_rs_objects": "Permissions Violation for Publish to \"$JS.API.STREAM.DELETE.OBJ_rs_objects\"",
        "delete KV_rs_identities": "Permissions Violation for Publish to \"$JS.API.STREAM.DELETE.KV_rs_identities\"",
        "update RUNSTREAM": "Permissions Violation for Publish to \"$JS.API.STREAM.UPDATE.RUNSTREAM\"",
        "claim A's path": "Permissions Violation for Publish to \"$KV.rs_paths.alice.private.b-run\"",
        "overwrite A's artifact head": "Permissions Violation for Publish to \"$KV.rs_artifacts.alice.private.m.head\"",
        "read objects by sequence": "Permissions Violation for Publish to \"$JS.API.DIRECT.GET.OBJ_rs_objects\"",
        "read object chunks (consumer)":
            "Permissions Violation for Publish to \"$JS.API.CONSUMER.CREATE.OBJ_rs_objects\"",
        "read identities": "Permissions Violation for Publish to \"$JS.API.DIRECT.GET.KV_rs_identities\"",
        "query rsctl.qa.sql": "Permissions Violation for Publish to \"rsctl.qa.sql\"",
        "query rsctl.qe.alice.sql": "Permissions Violation for Publish to \"rsctl.qe.alice.sql\"",
    }.items()}  # as nats-py reports them: lower-cased
    assert violations["received"] == 0
    # and bob's own entity works: a publish there is acknowledged
    assert violations["own publish acked"] is True
    assert bob.startswith("rsk_")


async def _attack(url: str, key: str, uid: str, run_id: str) -> dict[str, Any]:
    import nats
    from nats.js.api import ConsumerConfig

    from runstream.broker.codec import encode_event, envelope

    errors: list[str] = []

    async def on_error(e: Exception) -> None:
        errors.append(str(e))

    user = _nats_user(key)
    nc = await nats.connect(url, user=user, password=key, inbox_prefix=f"_INBOX.{user}", error_cb=on_error,
                            max_reconnect_attempts=0)
    js = nc.jetstream(timeout=0.5)
    refused: dict[str, str] = {}
    received = 0

    async def expect_refusal(what: str, coro: Any) -> None:
        n = len(errors)
        try:
            await coro
        except Exception:
            pass
        deadline = time.monotonic() + 5
        while len(errors) == n and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        refused[what] = errors[n].strip().strip("'").replace("nats: ", "") if len(errors) > n else "ACCEPTED"

    async def count(msg: Any) -> None:
        nonlocal received
        received += 1

    body = encode_event(envelope("finish", uid, "wforged", 99, time.time(), {"exit_code": 0}))
    await expect_refusal("subscribe rs.alice.>", nc.subscribe("rs.alice.>", cb=count))
    await expect_refusal("subscribe _INBOX.>", nc.subscribe("_INBOX.>", cb=count))
    await expect_refusal("subscribe rsctl.run.alice.*.stop", nc.subscribe("rsctl.run.alice.*.stop", cb=count))
    await expect_refusal("read events (consumer)", js.add_consumer("RUNSTREAM", ConsumerConfig(
        filter_subject="rs.alice.>", deliver_policy=nats.js.api.DeliverPolicy.ALL)))
    await expect_refusal("forge finish", js.publish(f"rs.alice.run.{uid}.finish", body))
    await expect_refusal("forge delete", js.publish(f"rs.alice.run.{uid}.delete", body))
    await expect_refusal("stop", nc.request(f"rsctl.run.alice.{uid}.stop", b"{}", timeout=0.5))
    await expect_refusal("purge RUNSTREAM", js.purge_stream("RUNSTREAM"))
    await expect_refusal("delete RUNSTREAM", js.delete_stream("RUNSTREAM"))
    await expect_refusal("delete KV_rs_paths", js.delete_stream("KV_rs_paths"))
    await expect_refusal("delete OBJ_rs_objects", js.delete_stream("OBJ_rs_objects"))
    await expect_refusal("delete KV_rs_identities", js.delete_stream("KV_rs_identities"))
    await expect_refusal("update RUNSTREAM", js.update_stream(nats.js.api.StreamConfig(name="RUNSTREAM",
                                                                                        subjects=["rs.>"])))
    await expect_refusal("claim A's path", js.publish("$KV.rs_paths.alice.private.b-run", uid.encode(),
                                                      headers={"Nats-Expected-Last-Subject-Sequence": "0"}))
    await expect_refusal("overwrite A's artifact head", js.publish("$KV.rs_artifacts.alice.private.m.head", b"0"))
    await expect_refusal("read objects by sequence",
                         nc.request("$JS.API.DIRECT.GET.OBJ_rs_objects", b'{"seq": 1}', timeout=0.5))
    await expect_refusal("read object chunks (consumer)", js.add_consumer("OBJ_rs_objects", ConsumerConfig(
        filter_subject="$O.rs_objects.C.>")))
    await expect_refusal("read identities",
                         nc.request("$JS.API.DIRECT.GET.KV_rs_identities", b'{"seq": 1}', timeout=0.5))
    await expect_refusal("query rsctl.qa.sql", nc.request("rsctl.qa.sql", b'{"sql": "SELECT 1"}', timeout=0.5))
    await expect_refusal("query rsctl.qe.alice.sql",
                         nc.request("rsctl.qe.alice.sql", b'{"sql": "SELECT 1"}', timeout=0.5))
    own = envelope("init", "0" * 10 + "e" * 16, "wbob", 0, time.time(), {})
    ack = await js.publish(f"rs.bob.run.{'0' * 10 + 'e' * 16}.init", encode_event(own), timeout=5)
    await nc.close()
    return {"refused": refused, "received": received, "own publish acked": ack.seq > 0}


def test_a_revoked_key_is_disconnected_and_refused_within_seconds(broker: SecuredBroker,
                                                                  users: dict[str, str]) -> None:
    """bob is connected (a raw socket: the broker's own words); the server role revokes his key and
    its :class:`AuthSync` (watching the bucket) rewrites the file and reloads nats-server, which
    disconnects him; his key is refused from then on, alice's still works."""
    import socket
    from urllib.parse import urlparse

    key = users["bob"]
    user = _nats_user(key)
    u = urlparse(broker.url)
    sock = socket.create_connection((u.hostname, u.port), timeout=10)
    f = sock.makefile("rb")
    assert f.readline().startswith(b"INFO ")
    sock.sendall(b'CONNECT {"verbose": false, "user": "' + user.encode() + b'", "pass": "' + key.encode()
                 + b'"}\r\nPING\r\n')
    assert f.readline() == b"PONG\r\n"

    def until_closed() -> tuple[list[bytes], float]:
        lines = []
        while line := f.readline():
            lines.append(line.strip())
        return lines, time.monotonic()

    async def scenario() -> tuple[list[bytes], float]:
        server = await broker.server_conn()
        sync = AuthSync(Identities(server.jetstream()), broker.auth_file, broker.server_bcrypt,
                        lambda: reload_pid(broker.srv.pid or 0))
        task = asyncio.create_task(sync.run())
        sync.watching = asyncio.Event()
        try:
            await asyncio.wait_for(sync.watching.wait(), timeout=10)
            closed = asyncio.create_task(asyncio.to_thread(until_closed))
            t0 = time.monotonic()
            await Identities(server.jetstream()).revoke_key(user)
            lines, at = await asyncio.wait_for(closed, timeout=15)
            return lines, at - t0
        finally:
            task.cancel()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), timeout=10)
            await asyncio.wait_for(server.close(), timeout=10)

    try:
        lines, took = run_async(scenario())
    finally:
        f.close()
        sock.close()
    assert lines == []  # closed by the reload (nats-server says nothing to a removed user)
    assert took < 5.0
    assert _can_connect(broker.url, user, key) is False
    assert _can_connect(broker.url, _nats_user(users["alice"]), users["alice"]) is True
