"""Where alerts go: a webhook (JSON POST, Slack-compatible) and email (SMTP).

Each sink is a blocking ``send(alert)`` that returns on success and raises
:class:`~.errors.DeliveryError` saying what failed; the :mod:`.alerter` runs it in a worker
thread with a time limit and records the outcome. Building the payloads is pure
(:func:`webhook_payload`, :func:`email_message`), so tests compare them exactly.
"""

from __future__ import annotations

import json
import smtplib
import socket
import ssl
import urllib.error
import urllib.request
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from .errors import DeliveryError

if TYPE_CHECKING:
    from runstream.settings import Settings

__all__ = ["Alert", "EmailSink", "Sink", "WebhookSink", "email_message", "sinks_from_settings", "webhook_payload"]

_COLORS = {"INFO": "#2eb67d", "WARN": "#ecb22e", "ERROR": "#e01e5a"}
_ICONS = {"INFO": "ℹ️", "WARN": "⚠️", "ERROR": "🚨"}


class Alert(NamedTuple):
    """An alert to deliver, as the projection holds it."""

    run_uid: str
    path: str
    run_name: str | None
    alert_id: str
    title: str
    text: str
    level: str
    timestamp: float


class Sink(Protocol):
    """A destination of alerts; ``name`` is its key in ``alert_deliveries.sink``."""

    name: str

    def send(self, alert: Alert) -> None: ...


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def webhook_payload(alert: Alert) -> dict[str, Any]:
    """The JSON a webhook receives: Slack's incoming-webhook shape (``text`` as the fallback,
    ``blocks`` and a coloured ``attachments`` entry) plus a ``runstream`` object with every field."""
    run = f"{alert.path}" + (f" ({alert.run_name})" if alert.run_name else "")
    headline = f"{_ICONS.get(alert.level, '')} [{alert.level}] {alert.title}".strip()
    return {
        "text": f"{headline}: {alert.text} (run {run})",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": headline[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": alert.text or " "}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"run {run} · {_when(alert.timestamp)}"}]},
        ],
        "attachments": [{
            "color": _COLORS.get(alert.level, "#888888"), "title": alert.title, "text": alert.text,
            "fields": [{"title": "Level", "value": alert.level, "short": True},
                       {"title": "Run", "value": run, "short": True}],
            "ts": int(alert.timestamp),
        }],
        "runstream": {"alert_id": alert.alert_id, "run_uid": alert.run_uid, "path": alert.path,
                      "run_name": alert.run_name, "title": alert.title, "text": alert.text,
                      "level": alert.level, "timestamp": alert.timestamp},
    }


def email_message(alert: Alert, sender: str, to: list[str]) -> EmailMessage:
    """The alert as a plain-text email."""
    msg = EmailMessage()
    msg["Subject"] = f"[runstream {alert.level}] {alert.title} — {alert.path}"
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["X-Runstream-Alert-Id"] = alert.alert_id
    run = alert.path + (f" ({alert.run_name})" if alert.run_name else "")
    msg.set_content(f"{alert.title}\n\n{alert.text}\n\nlevel: {alert.level}\nrun:   {run}\n"
                    f"time:  {_when(alert.timestamp)}\n")
    return msg


class WebhookSink:
    """POSTs :func:`webhook_payload` as JSON to ``url``; any 2xx answer counts as delivered."""

    name = "webhook"

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout

    def send(self, alert: Alert) -> None:
        data = json.dumps(webhook_payload(alert)).encode()
        req = urllib.request.Request(self.url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "runstream"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                resp.read()
        except urllib.error.HTTPError as e:
            with e:
                body = e.read()[:200].decode(errors="replace")
            raise DeliveryError(f"webhook {self.url} answered HTTP {e.code}: {body or e.reason}") from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise DeliveryError(f"webhook {self.url} unreachable: {reason}") from None


class EmailSink:
    """Sends :func:`email_message` through an SMTP server.

    Args:
        tls: ``auto`` (STARTTLS when offered), ``starttls`` (required), ``ssl`` (SMTPS), ``none``.
    """

    name = "email"

    def __init__(self, host: str, port: int, to: list[str], *, sender: str | None = None,
                 user: str | None = None, password: str | None = None, tls: str = "auto",
                 timeout: float = 10.0) -> None:
        if tls not in ("auto", "starttls", "ssl", "none"):
            raise ValueError(f"smtp_tls must be auto, starttls, ssl or none, not {tls!r}")
        self.host, self.port, self.to = host, port, to
        self.sender = sender or f"runstream@{socket.gethostname()}"
        self.user, self.password, self.tls, self.timeout = user, password, tls, timeout

    def send(self, alert: Alert) -> None:
        where = f"SMTP server {self.host}:{self.port}"
        try:
            if self.tls == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                                      context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                smtp.ehlo()
                if self.tls == "starttls" or (self.tls == "auto" and smtp.has_extn("starttls")):
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if self.user:
                    smtp.login(self.user, self.password or "")
                smtp.send_message(email_message(alert, self.sender, self.to))
        except (smtplib.SMTPException, OSError) as e:
            raise DeliveryError(f"{where}: {type(e).__name__}: {e}") from None


def sinks_from_settings(s: Settings) -> list[Sink]:
    """The sinks the settings configure: a webhook with ``alert_webhook_url``, email with
    ``smtp_host`` and ``smtp_to``."""
    sinks: list[Sink] = []
    if s.alert_webhook_url:
        sinks.append(WebhookSink(s.alert_webhook_url, s.alert_timeout))
    to = [a.strip() for a in (s.smtp_to or "").split(",") if a.strip()]
    if s.smtp_host and to:
        sinks.append(EmailSink(s.smtp_host, s.smtp_port, to, sender=s.smtp_from, user=s.smtp_user,
                               password=s.smtp_password, tls=s.smtp_tls, timeout=s.alert_timeout))
    return sinks
