"""The RPC handlers of one server: SQL over the sandbox, health, replay, lineage.

Kept apart from the process plumbing in :mod:`.server` so the handlers read as what they answer.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc
from anyio.abc import TaskStatus

from . import protocol
from .errors import ProjectionLagging, QueryError, QueryTimeout, TooManyQueries
from .sandbox import QueryResult, Sandbox

if TYPE_CHECKING:
    from ..projector.resilience import BrokerLink
    from .rpc import Handler

__all__ = ["MAX_ROWS_LIMIT", "MAX_TIMEOUT_S", "Projection", "ProjectorTask", "QueryService"]

log = logging.getLogger("runstream.query.server")

MAX_ROWS_LIMIT = 1_000_000
"""The most rows one request may ask for; a reply is further capped by the NATS max payload."""
MAX_TIMEOUT_S = 600.0
_PAYLOAD_MARGIN = 64 * 1024
STREAM_INFO_TIMEOUT_S = 2.0
"""How long a look at the stream's last sequence may take (reads must not hang on a broker outage)."""


class Projection(Protocol):
    """What the service needs of the projector (``runstream.projector.Projector``)."""

    @property
    def projected_seq(self) -> int: ...

    async def wait_for_seq(self, seq: int, timeout: float) -> bool: ...

    async def replay(self, progress: Any = None) -> int: ...

    def cursor(self) -> Any: ...

    @property
    def position(self) -> int: ...

    def lag(self) -> int | None: ...

    stream_last_seq: int | None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None: ...


class ProjectorTask:
    """The projector's ``run()`` as a task that can be stopped and started again (for a replay,
    which must not overlap ``run()``)."""

    def __init__(self, projection: Projection, tg: anyio.abc.TaskGroup) -> None:
        self._projection = projection
        self._tg = tg
        self._scope: anyio.CancelScope | None = None
        self._stopped = anyio.Event()

    async def start(self) -> None:
        """Start ``run()``; return once it has caught up with the stream."""
        await self._tg.start(self._run)

    async def _run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._stopped = anyio.Event()
        try:
            with anyio.CancelScope() as self._scope:
                await self._projection.run(task_status=task_status)
        finally:
            self._stopped.set()

    async def stop(self) -> None:
        """Cancel ``run()`` and wait until it has ended."""
        if self._scope is not None:
            self._scope.cancel()
            await self._stopped.wait()


class QueryService:
    """Answers ``sql``, ``health`` and ``replay`` requests for one server.

    Args:
        projection: the running projector.
        runner: the task running it (stopped and restarted around a replay).
        sandbox: the sandbox over the projector's database.
        nc: the NATS connection (for the stream's last sequence and the max payload).
        tg: the task group that replays run in.
        name, db_path, nats_url: reported by ``health``.
        max_concurrent: queries running at once in worker threads.
        link: the broker's state (``health``); entities: the entities held (None: every one).
    """

    def __init__(self, projection: Projection, runner: ProjectorTask, sandbox: Sandbox, nc: Any,
                 tg: anyio.abc.TaskGroup, *, name: str, db_path: Path, nats_url: str,
                 max_concurrent: int = 8, link: BrokerLink | None = None,
                 entities: list[str] | None = None, filter_subjects: list[str] | None = None) -> None:
        self._projection = projection
        self._runner = runner
        self._sandbox = sandbox
        self._nc = nc
        self._js = nc.jetstream(timeout=STREAM_INFO_TIMEOUT_S)
        self._tg = tg
        self._name = name
        self._db_path = db_path
        self._nats_url = nats_url
        self._link = link
        self.entities = entities
        self._filter_subjects = filter_subjects
        self._rebuilt = anyio.Event()
        self._rebuilt.set()
        self._forwarded = 0
        self.http: Handler | None = None
        """The ``http`` op (forwarded HTTP requests), set by the HTTP app when there is one."""
        self._limiter = anyio.CapacityLimiter(max_concurrent)
        self._slots = max_concurrent
        self.per_client = max(1, max_concurrent // 2)
        """SQL queries one client may run at once: half the slots, so no client takes them all."""
        self._running: dict[str, int] = {}
        self._started = time.time()
        self._replay: dict[str, Any] = {"running": False, "done": 0, "total": 0, "error": None,
                                        "finished_at": None, "projected_seq": None}

    @property
    def handlers(self) -> dict[str, Any]:
        return {"sql": self.sql, "health": self.health, "replay": self.replay, "lineage": self.lineage,
                "http": self.forwarded_http}

    async def forwarded_http(self, request: dict[str, Any]) -> dict[str, Any]:
        """An HTTP request that another server forwarded here because this one holds its entity."""
        if self.http is None:
            raise QueryError(f"server {self._name!r} has no HTTP API to answer a forwarded request")
        self._forwarded += 1
        try:
            return await self.http(request)
        finally:
            self._forwarded -= 1

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        """Bounds the worker threads that reads and queries run in."""
        return self._limiter

    async def sql(self, request: dict[str, Any]) -> dict[str, Any]:
        """Run one sandboxed query; see the module :mod:`.protocol` for the reply."""
        sql = request.get("sql")
        if not isinstance(sql, str):
            raise ValueError("'sql' must be a string")
        max_rows = int(request.get("max_rows") or 10_000)
        timeout = float(request.get("timeout") or 30.0)
        wait_seq = request.get("wait_seq")
        result, seq = await self.run_sql(sql, max_rows=max_rows, timeout=timeout,
                                         wait_seq=None if wait_seq is None else int(wait_seq))
        table, truncated = result.table, result.truncated
        payload = protocol.table_to_ipc(table)
        limit = int(getattr(self._nc, "max_payload", 1024 * 1024)) - _PAYLOAD_MARGIN
        while len(payload) > limit and table.num_rows > 0:
            table, truncated = table.slice(0, table.num_rows // 2), True
            payload = protocol.table_to_ipc(table)
        return {"ok": True, "arrow": payload, "truncated": truncated, "projected_seq": seq,
                "rows": table.num_rows, "server": self._name}

    async def run_sql(self, sql: str, *, max_rows: int = 10_000, timeout: float = 30.0,
                      wait_seq: int | None = None, client: str = "nats") -> tuple[QueryResult, int]:
        """One sandboxed query in a worker thread; the result and the projected seq it saw.

        ``client`` names who asks (HTTP: the peer's address; NATS requests share ``nats``): a
        client runs at most :attr:`per_client` queries at once.

        Raises:
            TooManyQueries: ``client`` already runs its share of the slots.
            QueryRefused, QueryTimeout, ProjectionLagging, QueryError: as the sandbox says.
        """
        running = self._running.get(client, 0)
        if running >= self.per_client:
            raise TooManyQueries(f"refused: {running} queries of client {client} are running; one client may run "
                                 f"{self.per_client} of this server's {self._slots} SQL slots at once. Wait for one "
                                 "to end (each ends within its time limit)")
        self._running[client] = running + 1
        try:
            return await self._run_sql(sql, max_rows=max_rows, timeout=timeout, wait_seq=wait_seq)
        finally:
            left = self._running[client] - 1
            if left:
                self._running[client] = left
            else:
                del self._running[client]

    async def _run_sql(self, sql: str, *, max_rows: int, timeout: float,
                       wait_seq: int | None) -> tuple[QueryResult, int]:
        if not 0 <= max_rows <= MAX_ROWS_LIMIT:
            raise QueryError(f"max_rows must be between 0 and {MAX_ROWS_LIMIT}, not {max_rows}")
        if not 0 < timeout <= MAX_TIMEOUT_S:
            raise QueryError(f"timeout must be between 0 and {MAX_TIMEOUT_S:g} seconds, not {timeout:g}")
        deadline = time.monotonic() + timeout
        await self._not_rebuilding(timeout)
        if wait_seq is not None and self._projection.position < int(wait_seq):
            if not await self._projection.wait_for_seq(int(wait_seq), timeout):
                raise ProjectionLagging(
                    f"the projection of server {self._name!r} did not reach stream sequence {int(wait_seq)} "
                    f"within {timeout:g}s (it is at {self._projection.projected_seq}); "
                    "check `runstream status` for the projector's lag")
        seq = self._projection.projected_seq
        query = functools.partial(self._sandbox.query, sql, max_rows=max_rows,
                                  timeout=max(deadline - time.monotonic(), 0.05))
        try:
            result = await anyio.to_thread.run_sync(query, limiter=self._limiter)
        except QueryTimeout as e:
            raise QueryTimeout(f"query interrupted: it ran past its time limit of {timeout:g}s") from e
        return result, seq

    async def lineage(self, request: dict[str, Any]) -> dict[str, Any]:
        """What an SDK resuming, forking or rewinding a run needs (:func:`.reads.run_point`), read
        once the projection holds everything the log held when the request came."""
        from .reads import Reader, run_point

        uid = request.get("run_uid")
        if not isinstance(uid, str):
            raise ValueError("'run_uid' must be a string")
        step = request.get("step")
        timeout = float(request.get("timeout") or 30.0)
        await self._not_rebuilding(timeout)
        last = await self.stream_last_seq()
        if self._projection.position < last and not await self._projection.wait_for_seq(last, timeout):
            raise ProjectionLagging(f"the projection of server {self._name!r} did not reach stream sequence "
                                    f"{last} within {timeout:g}s; check `runstream status`")
        reader = Reader(self._projection.cursor, timeout)
        point = await anyio.to_thread.run_sync(
            lambda: reader.run(run_point, uid, None if step is None else float(step)), limiter=self._limiter)
        return {"ok": True, "run": point}

    async def stream_last_seq(self) -> int:
        """The stream's last sequence now; while the broker does not answer, the last one seen
        (reads go on from the projection; ``health`` says the broker is down)."""
        from nats.js.errors import NotFoundError

        from ..broker.names import STREAM

        what = "reading the stream's last sequence"
        known = self._projection.stream_last_seq
        if not self._nc.is_connected:
            return known if known is not None else self._projection.position
        try:
            info = await self._js.stream_info(STREAM)
        except NotFoundError:
            return 0
        except Exception as e:
            if self._link is not None:
                self._link.failed(what, e)
            return known if known is not None else self._projection.position
        if self._link is not None:
            self._link.ok(what)
        last = int(info.state.last_seq)
        if known is None or last > known:
            self._projection.stream_last_seq = last
        return last

    async def health(self, request: dict[str, Any]) -> dict[str, Any]:
        """Projection position and lag, the broker's state, where the data lives, this process, a
        replay's progress.

        ``projected_seq``: the last stream sequence projected; ``position``: the sequence up to
        which every event this server projects is in (a partition's is ahead of its projected
        seq); ``stream_last_seq``: the stream's last sequence (as last known while the broker is
        down); ``lag``: events not projected yet (a partition: its consumer's pending count);
        ``broker``: ``connected``, ``since``, ``url``, ``last_error``, ``failing``;
        ``forwarded_in_flight``: HTTP requests other servers forwarded here, being answered;
        ``stalled``: None, or why projecting is paused (``reason``, ``message``, ``since``).
        """
        await self.stream_last_seq()
        p = self._projection
        return {"ok": True, "name": self._name, "pid": os.getpid(), "db_path": str(self._db_path),
                "nats_url": self._nats_url, "projected_seq": p.projected_seq, "position": p.position,
                "stream_last_seq": p.stream_last_seq, "lag": p.lag(), "stalled": getattr(p, "stalled", None),
                "entities": self.entities, "filter_subjects": self._filter_subjects,
                "broker": self._link.snapshot() if self._link is not None else None,
                "started_at": self._started, "uptime_s": time.time() - self._started,
                "forwarded_in_flight": self._forwarded, "replay": dict(self._replay)}

    async def replay(self, request: dict[str, Any]) -> dict[str, Any]:
        """Start rebuilding the projection from the log; progress shows in ``health``."""
        if self._replay["running"]:
            return {"ok": True, "started": False, "replay": dict(self._replay)}
        self._replay.update(running=True, done=0, total=await self.stream_last_seq(), error=None,
                            finished_at=None, projected_seq=None)
        self._tg.start_soon(self._run_replay)
        return {"ok": True, "started": True, "replay": dict(self._replay)}

    async def _run_replay(self) -> None:
        def progress(done: int, total: int | None = None) -> None:
            self._replay["done"] = int(done)
            if total is not None:
                self._replay["total"] = int(total)

        log.info("replay started: rebuilding %s from the log", self._db_path)
        self._rebuilt = anyio.Event()
        await self._runner.stop()
        try:
            seq = await self._projection.replay(progress=progress)
        except Exception as e:
            log.exception("replay failed")
            self._replay.update(running=False, error=f"{type(e).__name__}: {e}", finished_at=time.time())
        else:
            self._replay.update(running=False, projected_seq=int(seq), done=int(seq), finished_at=time.time())
            log.info("replay finished: projected up to stream seq %d", seq)
        try:
            await self._runner.start()
        finally:
            self._rebuilt.set()

    async def _not_rebuilding(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) for a replay to end: a rebuilding projection would answer
        with part of the data."""
        if self._rebuilt.is_set():
            return
        with anyio.move_on_after(timeout):
            await self._rebuilt.wait()
            return
        raise ProjectionLagging(f"server {self._name!r} is rebuilding its projection from the log "
                                f"(replay at stream seq {self._replay['done']} of {self._replay['total']}); "
                                "ask again later or another replica")
