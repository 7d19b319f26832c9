"""Alert delivery end to end: the SDK records alerts, a real server subprocess delivers them to a
local webhook (stdlib http.server) and a local SMTP server (aiosmtpd), records every outcome, and
a replay rebuilds the tables without sending again."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from runstream.api import Api
from runstream.broker import NatsServer
from runstream.cli import main as cli_main
from runstream.query.server import read_http_url
from tests.conftest import wait_for
from tests.query_helpers import ServerProc, start_server, unique


class Webhook:
    """A local webhook receiver recording every JSON body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                n = int(self.headers.get("Content-Length") or 0)
                bodies.append(json.loads(self.rfile.read(n)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def of(self, path: str) -> list[dict[str, Any]]:
        return [b for b in list(self.bodies) if b["runstream"]["path"] == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """aiosmtpd handler keeping every message received."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append((list(envelope.rcpt_tos), envelope.content.decode("utf-8", "replace")))
        return "250 Message accepted"

    def of(self, path: str) -> list[str]:
        return [text for _, text in list(self.messages) if path in text]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    ctl = Controller(box, hostname="127.0.0.1", port=_free_port())
    ctl.start()
    box.port = ctl.port  # type: ignore[attr-defined]
    yield box
    ctl.stop()


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


def _serve(nats: NatsServer, base: Path, webhook_url: str, smtp_port: int) -> tuple[ServerProc, str]:
    env = {"RUNSTREAM_NATS_URL": nats.url, "RUNSTREAM_DIR": str(base / "data"), "RUNSTREAM_RUN_DIR": str(base / "work"),
           "RUNSTREAM_QUIET": "1", "RUNSTREAM_HTTP_PORT": "0", "RUNSTREAM_ALERT_WEBHOOK_URL": webhook_url,
           "RUNSTREAM_SMTP_HOST": "127.0.0.1", "RUNSTREAM_SMTP_PORT": str(smtp_port),
           "RUNSTREAM_SMTP_TO": "ops@example.com", "RUNSTREAM_SMTP_FROM": "runstream@example.com",
           "RUNSTREAM_ALERT_ATTEMPTS": "2", "RUNSTREAM_ALERT_BACKOFF": "0.05", "RUNSTREAM_ALERT_TIMEOUT": "5"}
    srv = start_server(nats, base, {**os.environ, **env})
    url = read_http_url(srv.dir, srv.proc.pid)
    assert url
    return srv, url


@pytest.fixture(scope="module")
def server(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory, webhook: Webhook,
           mailbox: Mailbox) -> Iterator[tuple[ServerProc, str]]:
    srv, url = _serve(nats_server, tmp_path_factory.mktemp("alerts"), webhook.url, mailbox.port)  # type: ignore[attr-defined]
    yield srv, url
    assert srv.stop() == 0, srv.log.read_text()


def _point_at(monkeypatch: pytest.MonkeyPatch, srv: ServerProc, url: str) -> None:
    monkeypatch.setenv("RUNSTREAM_API_URL", url)
    monkeypatch.setenv("RUNSTREAM_SERVER_NAME", srv.name)


def _settled(path: str, n: int) -> Any:
    """The run's ``n`` alerts once none is pending any more (every sink delivered or failed)."""
    alerts = Api().run(path).alerts()
    if len(alerts) != n:
        return None
    for a in alerts:
        if not a["throttled"] and (len(a["deliveries"]) < 2 or
                                   any(d["status"] == "retrying" for d in a["deliveries"])):
            return None
    return alerts


def test_alerts_are_delivered_throttled_listed_and_replayed_without_resending(
        server: tuple[ServerProc, str], rs_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        webhook: Webhook, mailbox: Mailbox, capsys: pytest.CaptureFixture[str]) -> None:
    import runstream

    _point_at(monkeypatch, *server)
    entity = unique("alert")
    run = runstream.init(entity=entity, project="a", id="r1")
    run.alert("loss diverged", "loss is NaN at step 3", level="ERROR")
    run.alert("loss diverged", "still NaN", level="ERROR")                # same title within 60 s
    run.alert("checkpoint", "saved epoch 1", wait_duration=timedelta(0))
    run.finish()
    path = f"{entity}/a/r1"
    alerts = wait_for(lambda: _settled(path, 3), timeout=60, what="alerts delivered")
    by_text = {a["text"]: a for a in alerts}
    assert by_text["still NaN"]["throttled"] and by_text["still NaN"]["deliveries"] == []
    for text in ("loss is NaN at step 3", "saved epoch 1"):
        got = by_text[text]["deliveries"]
        assert [(d["sink"], d["status"], d["attempts"], d["error"]) for d in got] == [
            ("email", "delivered", 1, None), ("webhook", "delivered", 1, None)]
        assert got[0]["delivered_at"] >= by_text[text]["timestamp"]
    hooks = webhook.of(path)
    assert sorted(h["runstream"]["title"] for h in hooks) == ["checkpoint", "loss diverged"]
    diverged = next(h for h in hooks if h["runstream"]["title"] == "loss diverged")
    assert diverged["text"].startswith("🚨 [ERROR] loss diverged: loss is NaN at step 3 (run " + path)
    assert diverged["attachments"][0]["fields"][0] == {"title": "Level", "value": "ERROR", "short": True}
    mails = mailbox.of(path)
    assert len(mails) == 2 and any("Subject: [runstream ERROR] loss diverged" in m for m in mails)
    assert all(rcpt == ["ops@example.com"] for rcpt, text in mailbox.messages if path in text)

    capsys.readouterr()
    assert cli_main(["alerts", f"{entity}/a"]) == 0
    out = capsys.readouterr().out
    assert "throttled" in out and out.count("email delivered; webhook delivered") == 2

    queries = ["SELECT * FROM alerts ORDER BY ALL", "SELECT * FROM alert_deliveries ORDER BY ALL"]
    before = [Api().sql(q, pandas=False).to_pylist() for q in queries]
    assert cli_main(["replay"]) == 0
    assert [Api().sql(q, pandas=False).to_pylist() for q in queries] == before
    # an alert after the replay is delivered, and the replayed ones are not sent again
    later = runstream.init(entity=entity, project="a", id="r2")
    later.alert("after replay", "fine")
    later.finish()
    wait_for(lambda: _settled(f"{entity}/a/r2", 1), timeout=60, what="the later alert delivered")
    assert len(webhook.of(path)) == 2 and len(mailbox.of(path)) == 2
    assert len(webhook.of(f"{entity}/a/r2")) == 1


def test_a_dead_webhook_is_recorded_and_blocks_neither_the_run_nor_email(
        own_nats: NatsServer, tmp_path: Path, rs_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        mailbox: Mailbox) -> None:
    import runstream

    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    try:
        srv, url = _serve(own_nats, tmp_path, f"http://127.0.0.1:{dead.getsockname()[1]}/hook",
                          mailbox.port)  # type: ignore[attr-defined]
        try:
            monkeypatch.setenv("RUNSTREAM_NATS_URL", own_nats.url)
            _point_at(monkeypatch, srv, url)
            entity = unique("dead")
            run = runstream.init(entity=entity, project="a", id="r1")
            run.alert("first", "one")
            run.alert("second", "two", level="WARN")
            run.finish()
            assert run.state == "finished"
            path = f"{entity}/a/r1"
            alerts = wait_for(lambda: _settled(path, 2), timeout=60, what="delivery outcomes")
            for a in alerts:
                hook = next(d for d in a["deliveries"] if d["sink"] == "webhook")
                mail = next(d for d in a["deliveries"] if d["sink"] == "email")
                assert hook["status"] == "failed" and hook["attempts"] == 2 and "unreachable" in hook["error"]
                assert hook["delivered_at"] is None and mail["status"] == "delivered"
            assert Api().run(path).state == "finished"
            assert len(mailbox.of(path)) == 2
        finally:
            assert srv.stop() == 0, srv.log.read_text()
    finally:
        dead.close()
