"""Alerts without servers: the SDK's checks and throttle, the sinks' payloads, the fold, and the
alerter's decisions over a real DuckDB projection (its sinks are our own recording classes)."""

from __future__ import annotations

import enum
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from runstream.alerts import AlertThrottle, alert_body
from runstream.broker.codec import encode_event, envelope
from runstream.broker.names import run_subject
from runstream.errors import UsageError
from runstream.projector.alerter import ALERTER_WRITER, Alerter, delivery_seq
from runstream.projector.fold import Record, fold
from runstream.projector.sinks import Alert, email_message, webhook_payload
from runstream.projector.state import ProjectionState
from runstream.projector.store import Store

UID = "0" * 10 + "a" * 16


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Level(enum.Enum):
    WARN = "WARN"


def test_throttle_per_title_within_wait_duration() -> None:
    clock = Clock()
    t = AlertThrottle(clock)
    assert not t.throttled("a", 60) and t.throttled("a", 60) and not t.throttled("b", 60)
    clock.now += 59.9
    assert t.throttled("a", 60)
    clock.now += 0.2
    assert not t.throttled("a", 60)  # 60.1 s after the last one *sent*
    assert not t.throttled("c", 0) and not t.throttled("c", 0)


def test_alert_body_checks_and_normalises() -> None:
    t = AlertThrottle(Clock())
    b = alert_body("loss", "nan", "error", timedelta(minutes=2), t)
    assert b["level"] == "ERROR" and b["wait_duration"] == 120.0 and not b["throttled"] and len(b["id"]) == 16
    assert alert_body("x", "", Level.WARN, 5, t)["level"] == "WARN"
    assert alert_body("loss", "again", "INFO", 60, t)["throttled"]
    for args, match in ((("", "t", "INFO", 1), "title"), (("t", 3, "INFO", 1), "text"),
                        (("t", "x", "DEBUG", 1), "level"), (("t", "x", "INFO", -1), "wait_duration"),
                        (("t", "x", "INFO", "soon"), "wait_duration")):
        with pytest.raises(UsageError, match=match):
            alert_body(*args, t)


ALERT = Alert(UID, "nico/proj/r1", "brave-fox-1", "abc123", "loss diverged", "NaN at step 3", "ERROR", 1_700_000_000.0)


def test_webhook_payload_is_slack_shaped_and_complete() -> None:
    p = webhook_payload(ALERT)
    assert p["text"] == "🚨 [ERROR] loss diverged: NaN at step 3 (run nico/proj/r1 (brave-fox-1))"
    assert p["blocks"][0]["text"]["text"] == "🚨 [ERROR] loss diverged"
    att = p["attachments"][0]
    assert att["title"] == "loss diverged" and att["color"] == "#e01e5a" and att["ts"] == 1_700_000_000
    assert {f["title"]: f["value"] for f in att["fields"]} == {"Level": "ERROR", "Run": "nico/proj/r1 (brave-fox-1)"}
    assert p["runstream"]["alert_id"] == "abc123" and p["runstream"]["path"] == "nico/proj/r1"


def test_email_message() -> None:
    m = email_message(ALERT, "rs@example.com", ["a@example.com", "b@example.com"])
    assert m["Subject"] == "[runstream ERROR] loss diverged — nico/proj/r1"
    assert m["To"] == "a@example.com, b@example.com" and m["X-Runstream-Alert-Id"] == "abc123"
    assert "NaN at step 3" in m.get_content() and "2023-11-14 22:13:20 UTC" in m.get_content()


def test_delivery_seq_is_stable_and_distinct() -> None:
    assert delivery_seq("a", "webhook", 1) == delivery_seq("a", "webhook", 1) < 2 ** 56
    assert len({delivery_seq("a", s, n) for s in ("webhook", "email") for n in (1, 2, 3)}) == 6


# -- the fold and the alerter's decisions ---------------------------------------------------------


class Events:
    """Records of one run's events, numbered as a stream would."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.seq: dict[str, int] = {}

    def add(self, kind: str, body: dict[str, Any], ts: float, writer: str = "w1", seq: int | None = None) -> None:
        if seq is None:
            seq = self.seq[writer] = self.seq.get(writer, 0) + 1
        env = envelope(kind, UID, writer, seq, ts, body)
        self.records.append(Record(len(self.records) + 1, run_subject("nico", UID, kind), encode_event(env)))


def _init(ev: Events, ts: float) -> None:
    ev.add("init", {"entity": "nico", "project": "proj", "run_id": "r1", "name": "brave-fox-1", "start_time": ts}, ts)


def _alert(ev: Events, aid: str, ts: float, throttled: bool = False, title: str = "t") -> None:
    ev.add("alert", {"id": aid, "title": title, "text": "x", "level": "WARN", "wait_duration": 60.0,
                     "throttled": throttled}, ts)


def _outcome(ev: Events, aid: str, sink: str, attempt: int, ok: bool, final: bool, ts: float) -> None:
    ev.add("alert_delivery", {"alert_id": aid, "sink": sink, "attempt": attempt, "ok": ok,
                              "error": None if ok else "refused", "final": final}, ts, writer=ALERTER_WRITER,
           seq=delivery_seq(aid, sink, attempt))


def test_fold_alerts_and_deliveries_without_a_sign_of_life() -> None:
    ev = Events()
    _init(ev, 100.0)
    _alert(ev, "a1", 101.0)
    _outcome(ev, "a1", "webhook", 1, False, False, 500.0)
    _outcome(ev, "a1", "webhook", 2, True, True, 501.0)
    ev.add("stop_requested", {"requested_by": "me", "writers": ["w1"]}, 600.0, writer="api:x", seq=0)
    state = ProjectionState()
    ch = fold(state, ev.records)
    assert not ch.dead_letters
    keys, alerts = ch.upserts["alerts"]
    assert keys == ("run_uid", "alert_id") and alerts[0]["title"] == "t" and alerts[0]["timestamp"] == 101.0
    _, deliveries = ch.upserts["alert_deliveries"]
    assert [(d["status"], d["attempts"], d["delivered_at"]) for d in deliveries] == [
        ("retrying", 1, None), ("delivered", 2, 501.0)]
    assert ch.appends["stop_requests"][0]["writers"] == ["w1"]
    assert state.runs[UID].heartbeat_at == 101.0  # the server's and the Api's events are not the run's


class Recording:
    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.sent.append(alert)


async def _no_publish(subject: str, payload: bytes, headers: dict[str, str]) -> None:
    raise AssertionError("due() decides only")


async def _zero() -> int:
    return 0


def test_alerter_decides_attempts_backoff_and_age_from_the_projection(tmp_path: Path) -> None:
    store = Store(tmp_path / "p.duckdb")
    ev = Events()
    _init(ev, 100.0)
    _alert(ev, "fresh", 1000.0)
    _alert(ev, "quiet", 1000.5, throttled=True)
    _alert(ev, "ancient", 10.0)
    state = ProjectionState()
    store.apply(fold(state, ev.records))
    clock = Clock(1001.0)
    hook, mail = Recording("webhook"), Recording("email")
    alerter = Alerter(store.cursor, _no_publish, [hook, mail], last_seq=_zero, attempts=3, backoff=10.0,
                      max_age=900.0, clock=clock)
    due = alerter.due(clock.now)
    assert due is not None
    assert sorted((d.alert.alert_id, d.sink.name, d.attempt) for d in due) == [
        ("fresh", "email", 1), ("fresh", "webhook", 1)]
    assert due[0].alert.path == "nico/proj/r1" and due[0].entity == "nico"
    n = len(ev.records)
    _outcome(ev, "fresh", "webhook", 1, False, False, 1001.0)
    _outcome(ev, "fresh", "email", 1, True, True, 1001.0)
    store.apply(fold(state, ev.records[n:]))
    assert alerter.due(1005.0) == []                      # backoff: 10 s after attempt 1
    assert [(d.sink.name, d.attempt) for d in alerter.due(1011.5) or []] == [("webhook", 2)]
    n = len(ev.records)
    _outcome(ev, "fresh", "webhook", 2, False, False, 1012.0)
    store.apply(fold(state, ev.records[n:]))
    assert alerter.due(1025.0) == [] and [d.attempt for d in alerter.due(1032.5) or []] == [3]  # doubled
    n = len(ev.records)
    _outcome(ev, "fresh", "webhook", 3, False, True, 1033.0)
    store.apply(fold(state, ev.records[n:]))
    assert alerter.due(99_999.0) == []                    # failed is final
    rows = store.rows("alert_deliveries")
    assert [(r[2], r[3], r[4], r[5]) for r in rows] == [("email", "delivered", 1, None),
                                                         ("webhook", "failed", 3, "refused")]
    alerter.mark = store.checkpoint() + 1                 # e.g. replaying: the projection is behind
    assert alerter.due(99_999.0) is None


def test_sinks_come_from_settings_env_and_config_file(tmp_path: Path) -> None:
    from runstream.projector.sinks import EmailSink, WebhookSink, sinks_from_settings
    from runstream.settings import load_settings

    assert sinks_from_settings(load_settings(env={"RUNSTREAM_DIR": str(tmp_path)})) == []
    (tmp_path / "config.toml").write_text('smtp_host = "mail.example.com"\nsmtp_to = "a@x.org, b@x.org"\n')
    s = load_settings(env={"RUNSTREAM_DIR": str(tmp_path), "RUNSTREAM_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/h",
                           "RUNSTREAM_SMTP_PORT": "2525", "RUNSTREAM_ALERT_TIMEOUT": "3"})
    hook, mail = sinks_from_settings(s)
    assert isinstance(hook, WebhookSink) and hook.url == "http://127.0.0.1:9/h" and hook.timeout == 3.0
    assert isinstance(mail, EmailSink) and (mail.host, mail.port, mail.to) == ("mail.example.com", 2525,
                                                                                ["a@x.org", "b@x.org"])
