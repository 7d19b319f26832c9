"""The NATS request/reply responder: one subscription per subject, each request handled in its own task.

A server answers on its own subjects (``rsctl.q.<name>.<op>``, no queue group: only this server)
and on the shared ones (``rsctl.qa.<op>``, ``rsctl.qe.<entity>.<op>``) in the queue group
:data:`~.protocol.QUEUE`, so replicas share those requests (see :mod:`.protocol`).

A handler returns a reply map or raises :class:`~runstream.errors.QueryError` (sent back as an
error reply); any other exception is logged with its traceback and answered as an internal error,
and the responder keeps serving.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio
from anyio.abc import TaskStatus

from ..errors import QueryError
from . import protocol
from .errors import error_kind

__all__ = ["Handler", "Responder", "shared_subjects"]

log = logging.getLogger("runstream.query.rpc")

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def shared_subjects(entities: Sequence[str] | None) -> list[tuple[str, str]]:
    """``(subject, op)`` of the balanced subjects a server answers: a full server (``entities``
    None) every entity's and the any-server ones, a partition its entities' only. Pure."""
    out: list[tuple[str, str]] = []
    if entities is None:
        out += [(protocol.any_subject(op), op) for op in protocol.ANY_OPS]
        out += [(protocol.entity_subject(protocol.ALL_ENTITIES, op), op) for op in protocol.ENTITY_OPS]
    else:
        out += [(protocol.entity_subject(e, op), op) for e in entities for op in protocol.ENTITY_OPS]
    return out


class Responder:
    """Serve ``handlers`` (op → async function of the request map) for the server ``name``.

    Args:
        nc: a connected ``nats.aio.client.Client``.
        name: the server name in its own subjects.
        handlers: one per op of :data:`protocol.OPS` that this server answers.
        entities: the entities this server holds (None: every one); see :func:`shared_subjects`.
    """

    def __init__(self, nc: Any, name: str, handlers: Mapping[str, Handler], *,
                 entities: Sequence[str] | None = None) -> None:
        self._nc = nc
        self._name = name
        self._handlers = dict(handlers)
        self._entities = None if entities is None else list(entities)
        self._shared: list[Any] = []
        self._tg: anyio.abc.TaskGroup | None = None

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Subscribe, report started, and answer requests until cancelled."""
        subs = []
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for op, handler in self._handlers.items():
                    sub = await self._nc.subscribe(protocol.subject(self._name, op))
                    subs.append(sub)
                    tg.start_soon(self._pump, sub, op, handler, tg)
                await self.join_shared()
                await self._nc.flush()
                task_status.started()
        finally:
            self._tg = None
            with anyio.CancelScope(shield=True):
                for sub in subs + self._shared:
                    try:
                        await sub.unsubscribe()
                    except Exception as e:  # the connection may be closed already
                        log.debug("unsubscribe failed: %s", e)
                self._shared = []

    async def join_shared(self) -> None:
        """Subscribe to the balanced subjects."""
        if self._tg is None or self._shared:
            return
        for subject, op in shared_subjects(self._entities):
            handler = self._handlers.get(op)
            if handler is None:
                continue
            sub = await self._nc.subscribe(subject, queue=protocol.QUEUE)
            self._shared.append(sub)
            self._tg.start_soon(self._pump, sub, op, handler, self._tg)

    async def _pump(self, sub: Any, op: str, handler: Handler, tg: anyio.abc.TaskGroup) -> None:
        try:
            async for msg in sub.messages:
                tg.start_soon(self._answer, msg, op, handler)
        except Exception as e:  # the subscription was drained or closed
            log.debug("subscription %s ended: %s", getattr(sub, "subject", "?"), e)

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
