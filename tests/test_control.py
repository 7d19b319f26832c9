"""The SDK's control channel: the small client's subscriptions and the stop listener, against a
real nats-server (no run, no projector)."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace
from typing import Any

from runstream.broker import NatsServer, wire
from runstream.broker.miniclient import MiniNats
from runstream.broker.names import control_subject
from runstream.control import StopListener
from tests.conftest import wait_for


def test_unsub_cmd() -> None:
    assert wire.unsub_cmd("7") == b"UNSUB 7\r\n" and wire.unsub_cmd("7", 1) == b"UNSUB 7 1\r\n"


def _ask(url: str, subject: str, out: list[Any]) -> threading.Thread:
    def ask() -> None:
        with_client = MiniNats(url).connect()
        try:
            out.append(json.loads(with_client.request(subject, b'{"requested_by": "test"}', timeout=20).payload))
        finally:
            with_client.close()

    t = threading.Thread(target=ask, daemon=True)
    t.start()
    return t


def test_messages_are_kept_across_requests_and_reconnects(nats_server: NatsServer) -> None:
    sub = MiniNats(nats_server.url).connect()
    try:
        sub.subscribe("rsctl.test.a")
        pub = MiniNats(nats_server.url).connect()
        pub.publish("rsctl.test.a", b"one")
        pub.request("$JS.API.INFO", b"")       # a round trip: "one" is on its way to sub
        sub.js_api("INFO")                      # sub reads while waiting for its own reply
        assert [m.payload for m in sub._incoming] == [b"one"]
        assert [m.payload for m in sub.take_messages()] == [b"one"] and sub.take_messages() == []
        sub.close()
        sub.connect()                            # subscriptions are sent again
        sub.js_api("INFO")
        pub.publish("rsctl.test.a", b"two")
        pub.request("$JS.API.INFO", b"")
        assert [m.payload for m in wait_for(sub.take_messages, what="message after reconnect")] == [b"two"]
        pub.close()
    finally:
        sub.close()


def test_stop_listener_answers_every_request_and_interrupts_once(nats_server: NatsServer) -> None:
    run = SimpleNamespace(uid="0" * 10 + "b" * 16, entity="ctl-ent", writer="wtest", _stop_requested=None)
    interrupts: list[int] = []
    listener = StopListener(run, interrupt=lambda: interrupts.append(1))
    client = MiniNats(nats_server.url).connect()
    try:
        listener.serve(client)  # subscribes
        for expect_stopping in (False, True):
            acks: list[Any] = []
            t = _ask(nats_server.url, control_subject(run.entity, run.uid, "stop"), acks)

            def answered(acks: list[Any] = acks) -> bool:
                listener.serve(client)
                return bool(acks)

            wait_for(answered, what="the stop acknowledgement")
            t.join(20)
            assert acks[0]["writer"] == "wtest" and acks[0]["already_stopping"] is expect_stopping
        assert interrupts == [1] and run._stop_requested == {"requested_by": "test"}
    finally:
        client.close()


def test_a_stop_reaches_every_writer_of_a_run(nats_server: NatsServer) -> None:
    """Shared mode: several processes write one run, each its own writer; all of them get the stop
    and the server gathers every acknowledgement."""
    import anyio

    from runstream.broker.jetstream import connect
    from runstream.query.stop import request_stop

    uid = "0" * 10 + "c" * 16
    runs = [SimpleNamespace(uid=uid, entity="ctl-ent", writer=w, _stop_requested=None) for w in ("w1", "w2")]
    interrupted: list[str] = []
    listeners = [StopListener(r, interrupt=lambda w=r.writer: interrupted.append(w)) for r in runs]
    clients = [MiniNats(nats_server.url).connect() for _ in runs]
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            for listener, client in zip(listeners, clients, strict=True):
                listener.serve(client)
            done.wait(0.01)

    for listener, client in zip(listeners, clients, strict=True):
        listener.serve(client)  # subscribed before the request goes out
    t = threading.Thread(target=serve, daemon=True)
    t.start()

    async def ask() -> list[dict[str, Any]]:
        nc = await connect(nats_server.url)
        try:
            return await request_stop(nc, "ctl-ent", uid, {"requested_by": "test"}, timeout=20, grace=2)
        finally:
            await nc.close()

    try:
        acks = anyio.run(ask)
        assert sorted(a["writer"] for a in acks) == ["w1", "w2"]
        assert sorted(interrupted) == ["w1", "w2"]
        nobody = "0" * 10 + "d" * 16
        assert anyio.run(lambda: _nobody(nats_server.url, nobody)) == []  # no responders: at once
    finally:
        done.set()
        t.join(5)
        for c in clients:
            c.close()


async def _nobody(url: str, uid: str) -> list[dict[str, Any]]:
    from runstream.broker.jetstream import connect
    from runstream.query.stop import request_stop

    nc = await connect(url)
    try:
        return await request_stop(nc, "ctl-ent", uid, {}, timeout=20)
    finally:
        await nc.close()
