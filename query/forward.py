"""Partitions over HTTP: a request about an entity this server does not project goes, over NATS,
to a server that does.

:class:`EntityRouter` is ASGI middleware in front of the HTTP API. For a route that names an
entity (``/api/runs/{entity}/…``, ``/api/projects/{entity}/…``, ``/api/artifacts/{entity}/…``,
their ``/api/ui/…`` twins, ``?entity=`` of ``/api/projects`` and ``/api/alerts``, and the
``entity`` of a ``POST /api/sql`` body) that this server does not hold, it authenticates the
request here, then sends it whole as an ``http`` RPC on ``rsctl.qe.<entity>.http`` (:mod:`.protocol`):
NATS hands it to one server holding the entity, which runs it through its own app
(:func:`http_handler`). No server holds the entity → 503 naming it. ``POST /api/sql`` without an
entity on a partition goes to a server holding every entity (``rsctl.qa.http``).

The response comes back in pieces, each a request to the forwarder's inbox that the forwarder
acknowledges once it has passed the piece on: ``{"start": {status, headers}}``, then
``{"body": bytes}`` pieces (smaller than the NATS max payload), the last one a plain message
with ``"end": true``. So large
answers and live streams (``…/events``, ``tail``) travel too, at the client's pace; when the
client goes away the acknowledgement says ``stop`` (or nobody answers any more) and the holder
stops producing.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from . import protocol

__all__ = ["FORWARDED", "FORWARD_TIMEOUT_S", "EntityRouter", "entity_of_path", "http_handler"]

log = logging.getLogger("runstream.query.forward")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

FORWARDED = "runstream.forwarded"
"""Scope key of a request another server forwarded (authenticated there; never forwarded again)."""
FORWARD_TIMEOUT_S = 120.0
"""How long the holder may take to start answering (a slow query); then each piece's wait."""
PIECE_ACK_TIMEOUT_S = 60.0
"""How long the holder waits for the forwarder to take one piece before it gives up."""
_PIECE_MARGIN = 64 * 1024

_ENTITY_PATH = re.compile(r"^/api/(?:ui/)?(?:runs|projects|artifacts)/([^/]+)/")
_ENTITY_QUERY_PATHS = ("/api/projects", "/api/alerts")


def entity_of_path(path: str, query_string: bytes = b"") -> str | None:
    """The entity a request is about, from its path or ``?entity=`` (pure); None when none."""
    m = _ENTITY_PATH.match(path)
    if m:
        return m.group(1)
    if path in _ENTITY_QUERY_PATHS:
        values = urllib.parse.parse_qs(query_string.decode("latin-1")).get("entity")
        if values and values[0]:
            return values[0]
    return None


def _json_response(status: int, content: dict[str, Any]) -> tuple[int, list[list[bytes]], bytes]:
    return status, [[b"content-type", b"application/json"]], json.dumps(content).encode()


class EntityRouter:
    """Forward requests about entities this server does not hold (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get(FORWARDED):
            await self.app(scope, receive, send)
            return
        starlette_app = scope.get("app")
        core = getattr(getattr(starlette_app, "state", None), "core", None)
        if core is None or core.config.full:
            await self.app(scope, receive, send)
            return
        path, qs = scope["path"], scope.get("query_string", b"")
        entity = entity_of_path(path, qs)
        body: bytes | None = None
        to_any = False
        if entity is None and path == "/api/sql" and scope["method"] == "POST":
            body = await _read_body(receive)
            entity = _sql_entity(body)
            to_any = entity is None
        if (entity is None and not to_any) or (entity is not None and core.holds(entity)):
            await self.app(scope, _replay_body(body, receive) if body is not None else receive, send)
            return
        denied = _auth_error(starlette_app, scope)
        if denied is not None:
            await _send(send, *denied)
            return
        if body is None:
            body = await _read_body(receive)
        await _forward(core, entity, scope, body, receive, send)


def _no_server(core: Any, entity: str | None) -> tuple[int, list[list[bytes]], bytes]:
    if entity is None:
        return _json_response(503, {"kind": "no_server", "error": (
            f"server {core.config.name!r} projects {core.config.describe_partition()} only and no server "
            "holding every entity is running: name an entity in the request (\"entity\": ...) or start "
            "a runstream server without --entities")})
    return _json_response(503, {"kind": "no_server", "error": (
        f"no runstream server holds entity {entity!r}: server {core.config.name!r} projects "
        f"{core.config.describe_partition()}; start one with `runstream server --entities {entity}` "
        "or one without --entities")})


async def _forward(core: Any, entity: str | None, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
    """Send the request to a holder and relay its response, piece by piece, to ``send``."""
    import anyio
    import nats.errors

    nc = core.nc
    subject = protocol.any_subject("http") if entity is None else protocol.entity_subject(entity, "http")
    inbox = nc.new_inbox()
    pieces = await nc.subscribe(inbox)
    request = {"method": scope["method"], "path": scope["path"], "query_string": scope.get("query_string", b""),
               "headers": [[k, v] for k, v in scope.get("headers", []) if k.lower() != b"authorization"],
               "body": body, "pieces_to": inbox}
    outcome: dict[str, Any] = {}
    gone = anyio.Event()
    started = False

    async def ask() -> None:  # its reply comes once the whole response is sent (or it failed)
        try:
            msg = await nc.request(subject, protocol.encode(request), timeout=FORWARD_TIMEOUT_S)
            outcome["reply"] = protocol.decode(msg.data)
        except Exception as e:
            outcome["error"] = e
        await nc.publish(inbox, protocol.encode({"asked": True}))  # wake the relay

    async def watch_client(scope: anyio.CancelScope) -> None:
        while True:
            if (await receive())["type"] == "http.disconnect":
                gone.set()  # stop relaying: the holder's next piece finds nobody and it stops too
                scope.cancel()
                return

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            tg.start_soon(watch_client, tg.cancel_scope)
            while True:
                try:
                    msg = await pieces.next_msg(timeout=FORWARD_TIMEOUT_S if not started else PIECE_ACK_TIMEOUT_S)
                except nats.errors.TimeoutError:
                    if not started:
                        await _send(send, *_json_response(504, {"kind": "timeout", "error": (
                            f"the server holding entity {entity!r} did not answer within {FORWARD_TIMEOUT_S:g}s")}))
                    break  # a holder gone mid-stream: the response just ends
                piece = protocol.decode(msg.data)
                if piece.get("asked"):
                    if started:
                        continue  # the pieces were all sent before the reply; "end" follows or came
                    await _send(send, *_failed(core, entity, outcome))
                    break
                if gone.is_set():
                    await msg.respond(protocol.encode({"stop": True}))
                    break
                if "start" in piece:
                    started = True
                    head = piece["start"]
                    await send({"type": "http.response.start", "status": int(head["status"]),
                                "headers": [(bytes(k), bytes(v)) for k, v in head.get("headers") or []]})
                elif piece.get("end"):  # the last piece, not acknowledged
                    await send({"type": "http.response.body", "body": bytes(piece.get("body") or b""),
                                "more_body": False})
                    break
                elif "body" in piece:
                    await send({"type": "http.response.body", "body": bytes(piece["body"]), "more_body": True})
                await msg.respond(protocol.encode({"ok": True}))
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await _refuse_waiting(pieces)  # a holder waiting on a piece learns at once to stop
            try:
                await pieces.unsubscribe()
            except Exception as e:  # the connection may be gone
                log.debug("unsubscribe failed: %s", e)


async def _refuse_waiting(pieces: Any) -> None:
    """Answer ``stop`` to the pieces already delivered to the inbox and not taken."""
    import nats.errors

    while True:
        try:
            msg = await pieces.next_msg(timeout=0.01)
        except (nats.errors.TimeoutError, TimeoutError):
            return
        except Exception as e:  # the connection is gone
            log.debug("draining the forwarded pieces failed: %s", e)
            return
        if msg.reply:
            try:
                await msg.respond(protocol.encode({"stop": True}))
            except Exception as e:
                log.debug("could not refuse a piece: %s", e)


def _failed(core: Any, entity: str | None, outcome: dict[str, Any]) -> tuple[int, list[list[bytes]], bytes]:
    """The response when the holder sent nothing: nobody holds the entity, or it failed."""
    import nats.errors

    error = outcome.get("error")
    if isinstance(error, nats.errors.NoRespondersError):
        return _no_server(core, entity)
    if isinstance(error, nats.errors.TimeoutError):
        return _json_response(504, {"kind": "timeout", "error": (
            f"the server holding entity {entity!r} did not answer within {FORWARD_TIMEOUT_S:g}s")})
    if error is not None:  # the broker is down: this server cannot reach the entity's holder
        return _json_response(503, {"kind": "unavailable", "error": (
            f"cannot forward the request about entity {entity!r} to a server holding it: {error}")})
    reply = outcome.get("reply") or {}
    return _json_response(502, {"kind": reply.get("kind") or "error",
                                "error": str(reply.get("error") or "the holder sent no response")})


def http_handler(app: ASGIApp, nc: Any) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
    """The ``http`` RPC op of a server: run a forwarded request through ``app`` (the HTTP API) in
    this process, sending the response to the forwarder piece by piece (see the module docstring);
    the RPC reply comes at the end."""
    import anyio

    async def handle(request: dict[str, Any]) -> dict[str, Any]:
        method, path = str(request["method"]), str(request["path"])
        to = request.get("pieces_to")
        if not isinstance(to, str):
            raise ValueError("'pieces_to' must be the forwarder's inbox")
        qs = bytes(request.get("query_string") or b"")
        body = bytes(request.get("body") or b"")
        scope: Scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": qs,
                        "root_path": "", "headers": [(bytes(k), bytes(v)) for k, v in request.get("headers") or []],
                        "client": ("nats", 0), "server": ("nats", 0), FORWARDED: True}
        limit = max(int(getattr(nc, "max_payload", 1024 * 1024)) - _PIECE_MARGIN, 1024)
        stopped = anyio.Event()
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await stopped.wait()
            return {"type": "http.disconnect"}

        async def piece(message: dict[str, Any]) -> None:
            try:
                ack = protocol.decode((await nc.request(to, protocol.encode(message),
                                                        timeout=PIECE_ACK_TIMEOUT_S)).data)
            except Exception:  # the forwarder went away
                ack = {"stop": True}
            if ack.get("stop"):
                stopped.set()
                raise _Stopped

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                await piece({"start": {"status": int(message["status"]),
                                       "headers": [[bytes(k), bytes(v)] for k, v in message.get("headers") or []]}})
            elif message["type"] == "http.response.body":
                data = bytes(message.get("body") or b"")
                last = not message.get("more_body")
                parts = [data[i:i + limit] for i in range(0, len(data), limit)] or [b""]
                for part in parts[:-1]:
                    await piece({"body": part})
                if last:  # nothing to wait for: the forwarder may be gone as soon as it has it
                    await nc.publish(to, protocol.encode({"body": parts[-1], "end": True}))
                    await nc.flush()
                elif parts[-1]:
                    await piece({"body": parts[-1]})

        try:
            await app(scope, receive, send)
        except Exception:  # _Stopped, maybe inside the exception groups of a streaming response
            if stopped.is_set():
                return {"ok": True, "stopped": True}
            raise
        return {"ok": True}

    return handle


class _Stopped(Exception):
    """The forwarder stopped taking the response (its client went away)."""


def _sql_entity(body: bytes) -> str | None:
    try:
        parsed = json.loads(body or b"{}")
    except ValueError:
        return None
    entity = parsed.get("entity") if isinstance(parsed, dict) else None
    return str(entity) if entity else None


def _auth_error(app: Any, scope: Scope) -> tuple[int, list[list[bytes]], bytes] | None:
    """The HTTP API's key check, done here before forwarding (the holder trusts the forwarder)."""
    import hmac

    key = getattr(getattr(app, "state", None), "api_key", None)
    if not key:
        return None
    auth = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
    scheme, _, given = auth.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), key.encode()):
        return None
    status, headers, body = _json_response(401, {"kind": "unauthorized", "error": (
        "missing or wrong API key: send Authorization: Bearer <key> (RUNSTREAM_API_KEY)")})
    return status, [*headers, [b"www-authenticate", b"Bearer"]], body


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replay_body(body: bytes, receive: Receive) -> Receive:
    done = False

    async def again() -> Message:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


async def _send(send: Send, status: int, headers: list[list[bytes]], body: bytes) -> None:
    hdrs = [(k, v) for k, v in headers if k.lower() not in (b"content-length", b"transfer-encoding")]
    hdrs.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})
