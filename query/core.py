"""The running parts of one server, opened together: projector, sandbox, RPC responder, readers,
and alert delivery when a sink is configured (:mod:`runstream.projector.alerter`).

:func:`open_core` starts them in one anyio task group and yields a :class:`ServerCore` that the
HTTP layer (:mod:`.http`) serves from; ``runstream server`` adds uvicorn to the same task group,
and in-process tests open it from an ASGI app's lifespan. Leaving the context cancels everything.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from .reads import Reader

if TYPE_CHECKING:
    from ..projector import Projector
    from .sandbox import Sandbox
    from .server import ServerConfig
    from .service import ProjectorTask, QueryService

__all__ = ["META_FIELDS", "ServerCore", "open_core"]

log = logging.getLogger("runstream.query.server")

META_FIELDS = ("name", "notes", "tags", "group", "job_type")
"""What a ``meta`` event may change."""


@dataclass
class ServerCore:
    """Everything the read side serves from, alive while :func:`open_core`'s context is."""

    config: ServerConfig
    projector: Projector
    runner: ProjectorTask
    sandbox: Sandbox
    service: QueryService
    reader: Reader
    nc: Any
    tg: anyio.abc.TaskGroup
    stopping: anyio.Event = field(default_factory=anyio.Event)
    """Set when the server shuts down: live streams end on it."""

    @property
    def projected_seq(self) -> int:
        return self.projector.projected_seq

    async def read(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(cursor, ...)`` of :mod:`.reads` in a worker thread, never blocking the event loop."""
        def call() -> Any:
            return self.reader.run(fn, *args, **kwargs)

        return await anyio.to_thread.run_sync(call, limiter=self.service.limiter)

    async def catch_up(self, timeout: float) -> int:
        """Read-your-writes: wait (at most ``timeout`` s) until the projection holds what the stream
        holds now; return the remaining lag in stream sequences (0 when caught up)."""
        last = await self.service.stream_last_seq()
        if self.projector.position < last:
            await self.projector.wait_for_seq(last, timeout)
        return max(last - self.projector.position, 0)

    def holds(self, entity: str) -> bool:
        """Whether this server projects ``entity`` (a full server holds every one)."""
        if self.config.full:
            return True
        return entity in (self.config.entities or ())

    async def wait_advance(self, seq: int, timeout: float) -> bool:
        """Wait until the projection passes ``seq``; False on timeout or shutdown."""
        advanced = False
        async with anyio.create_task_group() as tg:
            async def advance() -> None:
                nonlocal advanced
                advanced = await self.projector.wait_projected(seq + 1, timeout)
                tg.cancel_scope.cancel()

            async def stop() -> None:
                await self.stopping.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(advance)
            tg.start_soon(stop)
        return advanced

    async def publish_meta(self, run: Mapping[str, Any], changes: Mapping[str, Any]) -> int:
        """Publish a ``meta`` event editing ``run`` (a ``runs`` row); return its stream sequence.

        The editor is its own writer (``api:<random>``, seq 0), so the message id is unique.
        """
        from ..broker.codec import encode_event, envelope
        from ..broker.names import msg_id, run_subject

        body = {k: v for k, v in changes.items() if k in META_FIELDS}
        uid, writer = str(run["run_uid"]), f"api:{secrets.token_hex(6)}"
        env = envelope("meta", uid, writer, 0, time.time(), body)
        ack = await self.nc.jetstream().publish(run_subject(str(run["entity"]), uid, "meta"), encode_event(env),
                                                headers={"Nats-Msg-Id": msg_id(uid, writer, 0)})
        return int(ack.seq)


async def refuse_twin(nc: Any, name: str, window: float = 0.3) -> None:
    """Once subscribed: every server answering ``rsctl.q.<name>.health`` within ``window`` seconds
    must be this process. Catches two servers started under one name at the same moment (both
    passed :func:`refuse_duplicate_name`): both see the other and refuse."""
    import os

    from . import protocol
    from .errors import DuplicateServerName

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish(protocol.subject(name, "health"), protocol.encode({}), reply=inbox)
        await nc.flush()
        with anyio.move_on_after(window):
            while True:
                msg = await sub.next_msg(timeout=window)
                try:
                    other = protocol.decode(msg.data)
                except ValueError:
                    continue
                if other.get("pid") != os.getpid():
                    raise DuplicateServerName(
                        f"another runstream server named {name!r} started at the same time (pid "
                        f"{other.get('pid', '?')}, database {other.get('db_path', '?')}); give each replica its own "
                        "name with --name or RUNSTREAM_SERVER_NAME")
    except TimeoutError:
        return
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def refuse_duplicate_name(nc: Any, name: str, timeout: float = 2.0) -> None:
    """Ask ``rsctl.q.<name>.health``: if a server answers, this one must not start under the same
    name (per-server requests — replay, health, progress — would reach either)."""
    import nats.errors

    from . import protocol
    from .errors import DuplicateServerName

    try:
        msg = await nc.request(protocol.subject(name, "health"), protocol.encode({}), timeout=timeout)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        return
    try:
        other = protocol.decode(msg.data)
    except ValueError:
        other = {}
    where = f"pid {other.get('pid', '?')}, database {other.get('db_path', '?')}"
    raise DuplicateServerName(
        f"a runstream server named {name!r} is already running ({where}); give this one another name "
        "with --name or RUNSTREAM_SERVER_NAME (each replica needs its own name)")


@contextlib.asynccontextmanager
async def open_core(config: ServerConfig) -> AsyncIterator[ServerCore]:
    """Start the projector (caught up with the stream) and the RPC responder; yield the core.

    The body runs inside the core's task group: cancelling ``core.tg.cancel_scope`` stops all.
    """
    from ..projector import Projector
    from ..projector.resilience import BrokerLink, connect_retrying
    from .lifecycle import purge_late
    from .rpc import Responder
    from .sandbox import Sandbox
    from .service import ProjectorTask, QueryService

    config.dir.mkdir(parents=True, exist_ok=True)
    s = config.settings
    link = BrokerLink(config.nats_url)
    projector = Projector(config.db_path, config.nats_url, nats_options=config.nats_options(),
                          name=config.name, crash_timeout=s.crash_timeout,
                          heartbeat_interval=s.heartbeat_interval, reaper=True,
                          entities=list(config.entities) if config.entities else None,
                          filter_subjects=list(config.filter_subjects) if config.filter_subjects else None,
                          replicas=s.stream_replicas, link=link)
    sandbox: Sandbox | None = None
    core: ServerCore | None = None
    try:
        nc = await connect_retrying(config.nats_url, link, name=f"runstream-server-{config.name}",
                                    **config.nats_options())
    except BaseException:
        projector.close()
        raise
    projector.on_late = functools.partial(purge_late, nc)  # events of deleted runs after their tombstone
    try:
        await refuse_duplicate_name(nc, config.name)
        async with anyio.create_task_group() as tg:
            tg.start_soon(link.watch, nc)
            log.info("projecting %s (%s) into %s", config.nats_url, config.describe_partition(), config.db_path)
            runner = ProjectorTask(projector, tg)
            await runner.start()
            sandbox = Sandbox(projector.cursor(), operator_memory_limit=s.sql_memory_limit or None)
            service = QueryService(projector, runner, sandbox, nc, tg, name=config.name,
                                   db_path=config.db_path, nats_url=config.nats_url, link=link,
                                   entities=None if config.full else list(config.entities or ()),
                                   filter_subjects=projector.filter_subjects)
            responder = Responder(nc, config.name, service.handlers,
                                  entities=None if config.full else list(config.entities or ()))
            await tg.start(responder.serve)
            await refuse_twin(nc, config.name)
            core = ServerCore(config, projector, runner, sandbox, service, Reader(projector.cursor), nc, tg)
            from ..projector.alerter import start_alerter

            start_alerter(tg, projector.cursor, nc.jetstream(), service.stream_last_seq, s, config.name,
                          position=lambda: projector.position, link=link)
            try:
                yield core
            finally:
                core.stopping.set()
    finally:
        if core is not None:
            core.stopping.set()
        if sandbox is not None:
            sandbox.interrupt_all()
        projector.close()
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(Exception):
                await nc.close()
