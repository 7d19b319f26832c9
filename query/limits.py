"""The HTTP request size limit: every route refuses a body over :data:`MAX_BODY_BYTES` with 413.

A pure ASGI middleware (outermost), so nothing behind it — the forwarder, FastAPI's body parsing,
a route — ever holds more than the limit: a declared ``Content-Length`` over it is answered at
once (the body read and dropped, piece by piece, so the client reads the answer rather than a
reset connection), and a chunked body is counted as it arrives and cut off past the limit.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["DRAIN_BYTES", "MAX_BODY_BYTES", "BodyLimit", "too_large_message"]

MAX_BODY_BYTES = 16 * 1024 * 1024
"""The largest request body any route accepts (16 MiB; an edit past what NATS carries in one
message, 8 MiB on the embedded server, is refused with 413 as well)."""


DRAIN_BYTES = 256 * 1024 * 1024
"""A refused body is read and dropped up to this much (bounded memory: piece by piece), so the
client gets the 413; past it the connection is closed on the client."""


def too_large_message(size: int | None, limit: int) -> str:
    got = f"{size / 1e6:.1f} MB" if size is not None else "more"
    return (f"request body too large: {got}, the limit is {limit / 1e6:.1f} MB ({limit} bytes); "
            "send less (a SQL query, an edit or a filter is far smaller)")


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Answer 413 (JSON ``{"error", "kind": "too_large"}``) to a request whose body passes ``limit``."""

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers") or []:
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    size = 0
                if size > self.limit:
                    await _drain(receive, DRAIN_BYTES)
                    await _refuse(send, too_large_message(size, self.limit))
                    return
        seen = 0
        started = False

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        async def watched(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if not started:
                await _drain(receive, DRAIN_BYTES)
                await _refuse(send, too_large_message(None, self.limit))


async def _drain(receive: Any, most: int) -> None:
    """Read and drop the rest of the body (up to ``most`` bytes), so that the client, still
    sending, reads the 413 instead of a reset connection."""
    seen = 0
    while seen <= most:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _refuse(send: Any, message: str) -> None:
    body = json.dumps({"error": message, "kind": "too_large"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
