"""Partitions over HTTP: a request about an entity this server does not project goes, over NATS,
to a server that does.

:class:`EntityRouter` is ASGI middleware in front of the HTTP API. For a route that names an
entity (``/api/runs/{entity}/…``, ``/api/projects/{entity}/…``, ``/api/artifacts/{entity}/…``,
their ``/api/ui/…`` twins, ``?entity=`` of ``/api/projects`` and ``/api/alerts``, and the
``entity`` of a ``POST /api/sql`` body) that this server does not hold, it authenticates the
request here, then sends it whole as an ``http`` RPC on ``rsctl.qe.<entity>.http`` (:mod:`.protocol`):
NATS hands it to one server holding the entity, which answers it with its own app
(:func:`http_handler`) and sends the response back. No server holds the entity → 503 naming it.
``POST /api/sql`` without an entity on a partition goes to a server holding every entity
(``rsctl.qa.http``).

Live streams (``…/events``) are not forwarded (a reply is one message): 421, with the advice to
ask a server holding the entity. A response larger than the NATS max payload cannot come back
either: 502 saying so.
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
        if path.endswith("/events"):
            await _send(send, *_json_response(421, {
                "kind": "misdirected",
                "error": f"server {core.config.name!r} does not project entity {entity!r}: live streams are not "
                         "forwarded; connect to the HTTP API of a server holding it"}))
            return
        if body is None:
            body = await _read_body(receive)
        await _send(send, *await _forward(core, entity, scope, body))


async def _forward(core: Any, entity: str | None, scope: Scope, body: bytes) -> tuple[int, list[list[bytes]], bytes]:
    import nats.errors

    subject = protocol.any_subject("http") if entity is None else protocol.entity_subject(entity, "http")
    request = {"method": scope["method"], "path": scope["path"], "query_string": scope.get("query_string", b""),
               "headers": [[k, v] for k, v in scope.get("headers", []) if k.lower() != b"authorization"],
               "body": body}
    try:
        msg = await core.nc.request(subject, protocol.encode(request), timeout=FORWARD_TIMEOUT_S)
    except nats.errors.NoRespondersError:
        if entity is None:
            return _json_response(503, {"kind": "no_server", "error": (
                f"server {core.config.name!r} projects {core.config.describe_partition()} only and no server "
                "holding every entity is running: name an entity in the request (\"entity\": ...) or start "
                "a runstream server without --entities")})
        return _json_response(503, {"kind": "no_server", "error": (
            f"no runstream server holds entity {entity!r}: server {core.config.name!r} projects "
            f"{core.config.describe_partition()}; start one with `runstream server --entities {entity}` "
            "or one without --entities")})
    except nats.errors.TimeoutError:
        return _json_response(504, {"kind": "timeout", "error": (
            f"the server holding entity {entity!r} did not answer within {FORWARD_TIMEOUT_S:g}s")})
    except Exception as e:  # the broker is down: this server cannot reach the entity's holder
        return _json_response(503, {"kind": "unavailable", "error": (
            f"cannot forward the request about entity {entity!r} to a server holding it: {e}")})
    reply = protocol.decode(msg.data)
    if not reply.get("ok"):
        return _json_response(502, {"kind": reply.get("kind") or "error", "error": str(reply.get("error"))})
    return int(reply["status"]), [[bytes(k), bytes(v)] for k, v in reply.get("headers") or []], bytes(reply["body"])


def http_handler(app: ASGIApp, max_payload: Callable[[], int]) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
    """The ``http`` RPC op of a server: run a forwarded request through ``app`` (the HTTP API) in
    this process and return the whole response."""
    async def handle(request: dict[str, Any]) -> dict[str, Any]:
        method, path = str(request["method"]), str(request["path"])
        qs = bytes(request.get("query_string") or b"")
        body = bytes(request.get("body") or b"")
        scope: Scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": qs,
                        "root_path": "", "headers": [(bytes(k), bytes(v)) for k, v in request.get("headers") or []],
                        "client": ("nats", 0), "server": ("nats", 0), FORWARDED: True}
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        out: dict[str, Any] = {"status": 500, "headers": [], "body": b""}
        chunks: list[bytes] = []

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                out["status"] = int(message["status"])
                out["headers"] = [[bytes(k), bytes(v)] for k, v in message.get("headers") or []]
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body") or b""))

        await app(scope, receive, send)
        out["body"] = b"".join(chunks)
        if len(out["body"]) > max_payload() - 64 * 1024:
            return protocol.error_reply("error", (
                f"the response to {method} {path} is {len(out['body'])} bytes, more than NATS carries in one "
                "message: ask a server holding the entity directly, or ask for less (limit, keys, samples)"))
        return {"ok": True, **out}

    return handle


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
