"""A small blocking NATS client for the SDK's background thread.

Why not nats-py here: importing it costs 120–240 ms (it loads aiohttp when installed), half of a
whole short training process's budget, and the SDK needs only request/reply (JetStream publishes
with their PubAcks, a KV create and stream lookups) and one subscription to its run's control
subject (stop requests), whose messages it collects between requests. The projector and the server keep nats-py.

Supports ``nats://`` URLs with token or user/password auth, and TLS (``tls://`` or when the server
requires it). Credentials files (JWT + nkey) need the ``nkeys`` package.

**Clusters.** The URL may be a comma-separated list of a cluster's nodes. The client connects to the
first that answers and learns the others from the server's ``INFO`` (``connect_urls``, also sent
again whenever the cluster changes). When its node dies, the next call reconnects to another live
node (the configured ones first, then the advertised ones); callers re-send what was not
acknowledged with the same message ids, so nothing is doubled.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any
from urllib.parse import unquote, urlparse

from . import wire
from .errors import BrokerError, BrokerUnavailable, RunDeletedError, RunExistsError, RunMovedError
from .names import PATHS_BUCKET, STREAM, inbox_prefix, path_key, paths_bucket_config, stream_config
from .paths import PathEntry, parse_path_value
from .urls import advertised, host_port, split_urls

ERR_STREAM_NOT_FOUND = 10059
ERR_WRONG_LAST_SEQUENCE = 10071


class JetStreamError(BrokerError):
    def __init__(self, code: int, err_code: int, description: str) -> None:
        super().__init__(f"JetStream error {err_code} ({code}): {description}")
        self.code = code
        self.err_code = err_code
        self.description = description


class NoResponders(BrokerError):
    pass


class LeaderChanged(BrokerError):
    """A stream elected a new leader while PubAcks were awaited: the publishes are re-sent at once
    (same message ids) instead of waiting out the ack timeout for a leader that died."""


LEADER_SID = "0"
"""The subscription to the event stream's leader-elected advisory (``"1"`` is the reply inbox)."""


class MiniNats:
    """One connection at a time; every call blocks the calling thread (use it from one thread only).

    Args:
        url: a NATS URL, or a comma-separated list of a cluster's nodes.
        replicas: replicas of the streams this client creates when they are missing
            (``RUNSTREAM_STREAM_REPLICAS``).
    """

    def __init__(self, url: str, *, token: str | None = None, user: str | None = None,
                 password: str | None = None, creds: str | None = None, name: str = "runstream",
                 connect_timeout: float = 2.0, replicas: int = 1) -> None:
        self.configured = split_urls(url)
        """The URLs given, in order of preference."""
        self.discovered: list[str] = []
        """Nodes the cluster advertised (``INFO.connect_urls``) that were not configured."""
        self.url = self.configured[0]
        """The node connected to (or tried last)."""
        self.replicas = replicas
        self.reconnects = 0
        """Connections opened after the first (failovers and reconnects)."""
        self._connects = 0
        first = urlparse(self.configured[0])
        self._scheme = first.scheme
        self._url_user = unquote(first.username) if first.username else None
        self._url_password = unquote(first.password) if first.password else None
        self.token = token
        self.user = user
        self.password = password
        self.creds = creds
        self.name = name
        self.connect_timeout = connect_timeout
        self._sock: socket.socket | None = None
        self._parser = wire.Parser()
        # under the user's own inbox prefix: the broker lets a user's key read replies there only
        self._inbox = f"{inbox_prefix(user or self._url_user)}.{os.urandom(8).hex()}"
        self._next = 0
        self._subs: dict[str, str] = {}
        """sid → subject of this client's own subscriptions (sent again on every connect)."""
        self._leader_elected = False
        self._incoming: list[wire.Msg] = []
        """Messages of those subscriptions, kept until :meth:`take_messages`."""
        self.server_info: dict[str, Any] = {}

    @classmethod
    def for_settings(cls, url: str, settings: Any, *, name: str = "runstream") -> MiniNats:
        """A client with the credentials and replica count of runstream's ``Settings``."""
        return cls(url, token=settings.nats_token, user=settings.nats_user, password=settings.nats_password,
                   creds=settings.nats_creds, name=name, replicas=settings.stream_replicas)

    # -- connection ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def candidates(self) -> list[str]:
        """Where to connect, in order: the node last used first, then the configured nodes, then
        the ones the cluster advertised."""
        out = [self.url]
        for u in self.configured + self.discovered:
            if u not in out:
                out.append(u)
        return out

    def connect(self) -> MiniNats:
        """Connect to the first node that answers (see :meth:`candidates`).

        Raises:
            BrokerUnavailable: no node answered; the message names every URL tried.
        """
        self.close()
        errors: list[str] = []
        for url in self.candidates():
            host, port = host_port(url)
            try:
                sock = socket.create_connection((host, port), timeout=self.connect_timeout)
            except OSError as e:
                errors.append(f"{url}: {e}")
                continue
            self.url = url
            try:
                self._handshake(sock, url, host)
            except (OSError, TimeoutError, ValueError) as e:
                errors.append(f"{url}: {e}")
                continue
            if self._connects:
                self.reconnects += 1
            self._connects += 1
            return self
        # the node that failed last is not retried first next time
        rest = self.candidates()
        if len(rest) > 1:
            self.url = rest[1]
        where = "; ".join(errors)
        raise BrokerUnavailable(f"cannot reach NATS at {where}")

    def _handshake(self, sock: socket.socket, url: str, host: str) -> None:
        u = urlparse(url)
        self._sock = sock
        self._parser = wire.Parser()
        try:
            info = self._expect("INFO", self.connect_timeout)
            self.server_info = info
            self._learn(info)
            if u.scheme == "tls" or info.get("tls_required"):
                import ssl

                ctx = ssl.create_default_context()
                self._sock = ctx.wrap_socket(sock, server_hostname=host)
            opts: dict[str, Any] = {"verbose": False, "pedantic": False, "headers": True,
                                    "no_responders": True, "protocol": 1, "name": self.name,
                                    "lang": "python-runstream", "version": "0.1"}
            user = self.user or (unquote(u.username) if u.username else self._url_user)
            password = self.password or (unquote(u.password) if u.password else self._url_password)
            if self.token:
                opts["auth_token"] = self.token
            elif user and password is None:
                opts["auth_token"] = user
            elif user:
                opts["user"], opts["pass"] = user, password
            if self.creds:
                opts.update(_sign_creds(self.creds, info.get("nonce", "")))
            subs = b"".join(wire.sub_cmd(subject, sid) for sid, subject in self._subs.items())
            subs += wire.sub_cmd(f"$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.{STREAM}", LEADER_SID)
            self._send(wire.connect_cmd(opts) + b"PING\r\n" + wire.sub_cmd(f"{self._inbox}.*", "1") + subs)
            self._expect("PONG", self.connect_timeout)
        except BaseException:
            self.close()
            raise

    def _learn(self, info: dict[str, Any]) -> None:
        """Remember the nodes a server advertises (its ``INFO``, at connect and on changes)."""
        for url in advertised(info.get("connect_urls"), self._scheme):
            if url not in self.configured and url not in self.discovered:
                self.discovered.append(url)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    # -- request / reply -------------------------------------------------------------------------

    def request(self, subject: str, payload: bytes, *, headers: dict[str, str] | None = None,
                timeout: float = 5.0) -> wire.Msg:
        """Publish with a reply inbox and wait for the one reply."""
        if self._sock is None:
            self.connect()
        self._next += 1
        reply = f"{self._inbox}.{self._next}"
        try:
            self._send(wire.pub_cmd(subject, payload, reply, headers))
            deadline = time.monotonic() + timeout
            while True:
                for op, arg in self._read(deadline):
                    if op == "MSG" and arg.subject == reply:
                        if arg.status == 503:
                            raise NoResponders(f"no responders on {subject!r} (is the stream there?)")
                        return arg  # type: ignore[no-any-return]
        except (OSError, TimeoutError, ValueError) as e:
            self.close()
            raise BrokerUnavailable(f"NATS at {self.url}: {e}") from e

    def js_api(self, api: str, body: dict[str, Any] | None = None, timeout: float = 5.0) -> dict[str, Any]:
        msg = self.request(f"$JS.API.{api}", json.dumps(body or {}).encode(), timeout=timeout)
        data = json.loads(msg.payload or b"{}")
        err = data.get("error")
        if err:
            raise JetStreamError(int(err.get("code", 0)), int(err.get("err_code", 0)), str(err.get("description")))
        return dict(data)

    def js_publish(self, subject: str, payload: bytes, *, msg_id: str | None = None,
                   headers: dict[str, str] | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """Publish to a stream and return its PubAck (``stream``, ``seq``, ``duplicate``)."""
        hdrs = dict(headers or {})
        if msg_id:
            hdrs["Nats-Msg-Id"] = msg_id
        msg = self.request(subject, payload, headers=hdrs or None, timeout=timeout)
        data = json.loads(msg.payload or b"{}")
        err = data.get("error")
        if err:
            raise JetStreamError(int(err.get("code", 0)), int(err.get("err_code", 0)), str(err.get("description")))
        return dict(data)

    def js_publish_many(self, items: list[tuple[str, bytes, str]], *, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Publish ``(subject, payload, msg_id)`` items back to back, then collect their PubAcks.

        One round trip (and one wait for the GIL) for the whole window instead of one per event.
        The server stores them in order; the replies are returned in the items' order. An item the
        stream refused comes back as ``{"error": ...}``; a lost connection raises, and re-sending the
        window is safe (message ids).
        """
        if self._sock is None:
            self.connect()
        base = self._next
        self._next += len(items)
        replies = [f"{self._inbox}.{base + i + 1}" for i in range(len(items))]
        wanted = {r: i for i, r in enumerate(replies)}
        out: list[dict[str, Any] | None] = [None] * len(items)
        self._leader_elected = False
        try:
            self._send(b"".join(wire.pub_cmd(subj, payload, reply, {"Nats-Msg-Id": mid})
                                for (subj, payload, mid), reply in zip(items, replies, strict=True)))
            deadline = time.monotonic() + timeout
            missing = len(items)
            while missing:
                for op, arg in self._read(deadline):
                    if op == "MSG" and arg.subject in wanted:
                        i = wanted.pop(arg.subject)
                        if arg.status == 503:
                            out[i] = {"error": {"code": 503, "err_code": 0, "description": "no responders"}}
                        else:
                            out[i] = json.loads(arg.payload or b"{}")
                        missing -= 1
                if missing and self._leader_elected:
                    raise LeaderChanged(f"the event stream elected a new leader while {missing} PubAck(s) "
                                        "were awaited; re-sending")
        except (OSError, TimeoutError, ValueError) as e:
            self.close()
            raise BrokerUnavailable(f"NATS at {self.url}: {e}") from e
        return [o or {} for o in out]

    # -- subscriptions ---------------------------------------------------------------------------

    def subscribe(self, subject: str) -> str:
        """Subscribe to ``subject`` (again after every reconnect); return the subscription id.

        Its messages are kept as they arrive (also while waiting for a reply) and handed out by
        :meth:`take_messages`.
        """
        sid = str(len(self._subs) + 2)  # "1" is the reply inbox
        self._subs[sid] = subject
        if self._sock is not None:
            try:
                self._send(wire.sub_cmd(subject, sid))
            except OSError as e:
                self.close()
                raise BrokerUnavailable(f"NATS at {self.url}: {e}") from e
        return sid

    def publish(self, subject: str, payload: bytes) -> None:
        """A plain publish (no reply expected), e.g. an answer to a request."""
        if self._sock is None:
            self.connect()
        try:
            self._send(wire.pub_cmd(subject, payload))
        except (OSError, ValueError) as e:
            self.close()
            raise BrokerUnavailable(f"NATS at {self.url}: {e}") from e

    def take_messages(self) -> list[wire.Msg]:
        """The subscriptions' messages received so far, reading what the socket holds without
        waiting for more."""
        if self._sock is not None:
            import select

            try:
                while select.select([self._sock], [], [], 0)[0] or _tls_pending(self._sock):
                    self._read(time.monotonic() + 1.0)
            except (OSError, TimeoutError, ValueError) as e:
                self.close()
                raise BrokerUnavailable(f"NATS at {self.url}: {e}") from e
        out, self._incoming = self._incoming, []
        return out

    # -- the log ---------------------------------------------------------------------------------

    def ensure_log(self, replicas: int | None = None) -> None:
        """Create the event stream and the path bucket unless they exist (with ``replicas``, by
        default the client's)."""
        r = self.replicas if replicas is None else replicas
        self._ensure_stream(STREAM, stream_config(r))
        self._ensure_stream(f"KV_{PATHS_BUCKET}", paths_bucket_config(r))

    def _ensure_stream(self, name: str, config: dict[str, Any]) -> None:
        try:
            self.js_api(f"STREAM.INFO.{name}")
            return
        except JetStreamError as e:
            if e.err_code != ERR_STREAM_NOT_FOUND and e.code != 404:
                raise
        try:
            self.js_api(f"STREAM.CREATE.{name}", config)
        except JetStreamError:
            self.js_api(f"STREAM.INFO.{name}")  # created meanwhile by another process

    def claim_path(self, entity: str, project: str, run_id: str, run_uid: str) -> None:
        """Create-if-absent of ``path → uid`` in the KV bucket.

        Raises:
            RunDeletedError: the path was a deleted run's (its id is never reused).
            RunMovedError: the path was another run's that moved away (the id stays reserved).
            RunExistsError: the path is another run's (or this run's: callers confirm with
                :meth:`resolve_path`). A path this run moved away from is no conflict.
        """
        subject = f"$KV.{PATHS_BUCKET}.{path_key(entity, project, run_id)}"
        try:
            self.js_publish(subject, run_uid.encode(), headers={"Nats-Expected-Last-Subject-Sequence": "0"})
        except JetStreamError as e:
            if e.err_code != ERR_WRONG_LAST_SEQUENCE:
                raise
            path = f"{entity}/{project}/{run_id}"
            entry = self.path_entry(entity, project, run_id)
            if entry is not None and entry.status == "deleted":
                raise RunDeletedError(path) from e
            if entry is not None and entry.status == "moved":
                if entry.uid == run_uid:
                    return  # this run's old path (e.g. a spool synced after a move): its events carry the uid
                raise RunMovedError(path, entry.to) from e
            raise RunExistsError(path) from e

    def path_entry(self, entity: str, project: str, run_id: str) -> PathEntry | None:
        """The path's KV entry (live, moved or deleted), or None when it was never claimed."""
        subject = f"$KV.{PATHS_BUCKET}.{path_key(entity, project, run_id)}"
        try:
            data = self.js_api(f"STREAM.MSG.GET.KV_{PATHS_BUCKET}", {"last_by_subj": subject})
        except JetStreamError as e:
            if e.code == 404:
                return None
            raise
        msg = data.get("message", {})
        raw = msg.get("data")
        if not raw:
            return None
        import base64

        return parse_path_value(base64.b64decode(raw), int(msg.get("seq") or 0))

    def resolve_path(self, entity: str, project: str, run_id: str) -> str | None:
        """The uid the path is a live alias of; None when unclaimed, moved away or deleted."""
        entry = self.path_entry(entity, project, run_id)
        return entry.uid if entry is not None and entry.live else None

    # -- socket IO -------------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        self._sock.sendall(data)

    def _read(self, deadline: float) -> list[tuple[str, Any]]:
        assert self._sock is not None
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no reply from NATS in time")
        self._sock.settimeout(left)
        data = self._sock.recv(1 << 16)  # raises TimeoutError (socket.timeout) at the deadline
        if not data:
            raise OSError("connection closed by the server")
        ops = self._parser.feed(data)
        mine = False
        for op, arg in ops:
            if op == "PING":
                self._send(b"PONG\r\n")
            elif op == "INFO":
                self._learn(arg)  # the cluster changed: a node joined or left
            elif op == "ERR":
                raise BrokerError(f"NATS server error: {arg}")
            elif op == "MSG" and arg.sid == LEADER_SID:
                self._leader_elected = True
                mine = True
            elif op == "MSG" and arg.sid in self._subs:
                self._incoming.append(arg)
                mine = True
        if mine:
            return [(op, arg) for op, arg in ops
                    if not (op == "MSG" and (arg.sid in self._subs or arg.sid == LEADER_SID))]
        return ops

    def _expect(self, want: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            for op, arg in self._read(deadline):
                if op == want:
                    return arg


def _tls_pending(sock: socket.socket) -> bool:
    """Bytes a TLS socket has decrypted already (``select`` does not see them)."""
    pending = getattr(sock, "pending", None)
    return bool(pending is not None and pending())


def _sign_creds(path: str, nonce: str) -> dict[str, str]:
    """JWT + nkey signature of the server's nonce, from a ``.creds`` file."""
    try:
        import nkeys  # type: ignore[import-not-found]
    except ImportError as e:
        raise BrokerError("NATS credentials files need the 'nkeys' package (pip install nkeys)") from e
    with open(path) as fh:
        lines = [ln.strip() for ln in fh]

    def after(marker: str) -> str:
        for i, ln in enumerate(lines):
            if marker in ln and i + 1 < len(lines):
                return lines[i + 1]
        raise BrokerError(f"{path}: no {marker} block in the credentials file")

    jwt, seed = after("BEGIN NATS USER JWT"), after("BEGIN USER NKEY SEED")
    import base64

    kp = nkeys.from_seed(seed.encode())
    sig = base64.b64encode(kp.sign(nonce.encode())).decode()
    return {"jwt": jwt, "sig": sig.rstrip("=").replace("+", "-").replace("/", "_")}
