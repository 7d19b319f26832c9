"""The NATS request/reply responder: one subscription per op, each request handled in its own task.

Subscriptions join a queue group so replicas of one server name share the load. A handler returns a
reply map or raises :class:`~runstream.errors.QueryError` (sent back as an error reply); any other
exception is logged with its traceback and answered as an internal error, and the responder keeps
serving.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
from anyio.abc import TaskStatus

from ..errors import QueryError
from . import protocol
from .errors import error_kind

__all__ = ["Handler", "Responder"]

log = logging.getLogger("runstream.query.rpc")

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class Responder:
    """Serve ``handlers`` (op → async function of the request map) for the server ``name``.

    Args:
        nc: a connected ``nats.aio.client.Client``.
        name: the server name in the subjects.
        handlers: one per op of :data:`protocol.OPS` that this server answers.
    """

    def __init__(self, nc: Any, name: str, handlers: Mapping[str, Handler]) -> None:
        self._nc = nc
        self._name = name
        self._handlers = dict(handlers)

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Subscribe, report started, and answer requests until cancelled."""
        subs = []
        try:
            async with anyio.create_task_group() as tg:
                for op, handler in self._handlers.items():
                    sub = await self._nc.subscribe(protocol.subject(self._name, op), queue=protocol.QUEUE)
                    subs.append(sub)
                    tg.start_soon(self._pump, sub, op, handler, tg)
                await self._nc.flush()
                task_status.started()
        finally:
            with anyio.CancelScope(shield=True):
                for sub in subs:
                    try:
                        await sub.unsubscribe()
                    except Exception as e:  # the connection may be closed already
                        log.debug("unsubscribe failed: %s", e)

    async def _pump(self, sub: Any, op: str, handler: Handler, tg: anyio.abc.TaskGroup) -> None:
        async for msg in sub.messages:
            tg.start_soon(self._answer, msg, op, handler)

    async def _answer(self, msg: Any, op: str, handler: Handler) -> None:
        try:
            reply = await handler(protocol.decode(msg.data))
        except QueryError as e:
            reply = protocol.error_reply(error_kind(e), str(e))
        except ValueError as e:
            reply = protocol.error_reply("error", f"bad {op} request: {e}")
        except Exception as e:
            log.exception("%s request failed", op)
            reply = protocol.error_reply("internal", f"internal error in the runstream server: {e!r}")
        if not msg.reply:
            return
        try:
            await msg.respond(protocol.encode(reply))
        except Exception as e:
            log.warning("could not send the %s reply: %s", op, e)
