"""The projector service: consume the stream from the checkpoint, fold, write, repeat.

Fetched batches are folded and written in DuckDB transactions in a worker thread, so the next
fetches overlap the write: while the writer keeps up, one transaction per fetched batch (low
latency); when it falls behind, every batch waiting for it goes in one transaction (throughput).
The fetcher, the writer and the optional crash reaper run in one anyio task group: if one fails,
the others are cancelled and the error surfaces from ``run()``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import duckdb
import pyarrow as pa
from anyio.streams.memory import MemoryObjectReceiveStream

from runstream.broker.jetstream import connect, ensure_log

from .errors import CatchUpTimeout
from .fold import Record, fold
from .reaper import Reaper
from .source import batches, last_seq
from .state import ProjectionState
from .store import Store

Progress = Callable[[int, int], None]
log = logging.getLogger("runstream.projector")

_PREFETCH = 8
"""Fetched batches that may wait for the writer (they are then written in one transaction)."""


class Projector:
    """Projects the ``RUNSTREAM`` stream into a DuckDB file.

    Args:
        db_path: the DuckDB file (created if missing; this process becomes its only writer).
        nats_url: the NATS server.
        nats_options: extra keyword arguments for :func:`runstream.broker.jetstream.connect`
            (``creds``, ``token``, ``user``, ``password``...).
        name: the projection's name in ``projector_checkpoint``.
        batch_size: most messages fetched at once.
        max_transaction_bytes: when the writer falls behind, fetched batches waiting for it are
            written together in one transaction, up to about this many payload bytes.
        crash_timeout: seconds of silence after which the reaper declares a run crashed.
        heartbeat_interval: the SDK's heartbeat period (paces the reaper).
        reaper: run the crash reaper inside :meth:`run`.
        clock: epoch time source for the reaper.
    """

    def __init__(self, db_path: str | Path, nats_url: str, *, nats_options: dict[str, Any] | None = None,
                 name: str = "main", batch_size: int = 2000, max_transaction_bytes: int = 64 * 1024 * 1024,
                 crash_timeout: float = 300.0,
                 heartbeat_interval: float = 30.0, reaper: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.db_path = Path(db_path)
        self.nats_url = nats_url
        self.nats_options = dict(nats_options or {})
        self.batch_size = batch_size
        self.max_transaction_bytes = max_transaction_bytes
        self.crash_timeout = crash_timeout
        self.heartbeat_interval = heartbeat_interval
        self.reaper_enabled = reaper
        self.clock = clock
        self.store = Store(self.db_path, name)
        self._state: ProjectionState = self.store.load()
        self._projected = self._state.checkpoint
        self._advanced = anyio.Event()
        self.points = 0
        """History points written since this object was created."""
        self.on_late: Callable[[list[tuple[str, int]]], Awaitable[None]] | None = None
        """Called with ``(run_uid, stream_seq)`` of events of deleted runs the fold dropped (the
        server deletes them from the stream); a failure is logged, never stops the projector."""
        self._late: list[tuple[str, int]] = []
        self.dropped = 0
        """Events of deleted runs dropped (after their tombstone) since this object was created."""

    # -- reading the projection ----------------------------------------------------------------

    @property
    def projected_seq(self) -> int:
        """The last stream sequence whose effects are committed to DuckDB."""
        return self._projected

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor on the projection for readers in this process."""
        return self.store.cursor()

    async def wait_for_seq(self, seq: int, timeout: float) -> bool:
        """Wait until ``seq`` is projected; False if ``timeout`` seconds pass first."""
        with anyio.move_on_after(timeout):
            while self._projected < seq:
                await self._advanced.wait()
            return True
        return self._projected >= seq

    def close(self) -> None:
        """Close the DuckDB file."""
        self.store.close()

    # -- writing -------------------------------------------------------------------------------

    def _apply(self, records: list[Record]) -> int:
        changes = fold(self._state, records)
        try:
            self.store.apply(changes)
        except Exception:
            self._state = self.store.load()  # the fold ran ahead of what was committed
            raise
        self.points += changes.points
        self._late.extend(changes.late)
        self.dropped += changes.dropped
        return changes.checkpoint

    async def _commit(self, records: list[Record]) -> None:
        seq = await anyio.to_thread.run_sync(self._apply, records)
        self._projected = seq
        advanced, self._advanced = self._advanced, anyio.Event()
        advanced.set()
        late, self._late = self._late, []
        if late and self.on_late is not None:
            try:
                await self.on_late(late)
            except Exception:
                log.exception("deleting %d late event(s) of deleted runs from the stream failed", len(late))

    async def _connect(self) -> Any:
        nc = await connect(self.nats_url, name="runstream-projector", **self.nats_options)
        return nc

    async def _consume(self, js: Any, *, until: int | None,
                       on_caught_up: Callable[[], None] | None = None,
                       progress: Progress | None = None) -> None:
        """Fetch and write batches; stop once ``until`` is projected (forever if None)."""
        send, receive = anyio.create_memory_object_stream[list[Record]](_PREFETCH)
        target = until if until is not None else await last_seq(js)
        caught_up = on_caught_up

        async def fetcher() -> None:
            async with send:
                async for recs in batches(js, self._projected + 1, batch_size=self.batch_size):
                    if recs:
                        await send.send(recs)
                    if until is not None and recs and recs[-1].stream_seq >= until:
                        return

        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, _warm_up)
            tg.start_soon(fetcher)
            if caught_up is not None and self._projected >= target:
                caught_up()
                caught_up = None
            async with receive:
                async for first in receive:
                    recs = _coalesce(first, receive, self.max_transaction_bytes)
                    await self._commit(recs)
                    if progress is not None:
                        progress(self._projected, target)
                    if caught_up is not None and self._projected >= target:
                        caught_up()
                        caught_up = None
                    if until is not None and self._projected >= until:
                        tg.cancel_scope.cancel()
                        return

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Connect, make sure the stream exists, and project forever from the checkpoint.

        ``task_status.started()`` is called once the projection has caught up with the stream's
        last sequence as of the start. Runs the crash reaper too when ``reaper=True``.
        """
        nc = await self._connect()
        try:
            js = nc.jetstream()
            await ensure_log(js)
            async with anyio.create_task_group() as tg:
                if self.reaper_enabled:
                    reaper = Reaper(self.cursor, _publisher(js), crash_timeout=self.crash_timeout,
                                    heartbeat_interval=self.heartbeat_interval, clock=self.clock)
                    tg.start_soon(reaper.run)
                await self._consume(js, until=None, on_caught_up=task_status.started)
        finally:
            with anyio.CancelScope(shield=True):
                await nc.close()

    async def catch_up(self, timeout: float = 30.0, progress: Progress | None = None) -> int:
        """Project everything up to the stream's last sequence as of now; return the projected seq.

        Raises:
            CatchUpTimeout: ``timeout`` seconds passed first.
        """
        nc = await self._connect()
        try:
            js = nc.jetstream()
            await ensure_log(js)
            target = await last_seq(js)
            if self._projected < target:
                with anyio.move_on_after(timeout):
                    await self._consume(js, until=target, progress=progress)
                if self._projected < target:
                    raise CatchUpTimeout(self._projected, target, timeout)
            return self._projected
        finally:
            with anyio.CancelScope(shield=True):
                await nc.close()

    async def replay(self, progress: Progress | None = None, timeout: float = 3600.0) -> int:
        """Drop every table and rebuild the projection from stream seq 1.

        Do not call it while :meth:`run` is projecting into the same object.
        """
        await anyio.to_thread.run_sync(self.store.reset)
        self._state = ProjectionState()
        self._projected = 0
        seq = await self.catch_up(timeout, progress)
        await anyio.to_thread.run_sync(self.store.compact)
        return seq


def _warm_up() -> None:
    """Pay pyarrow's one-time cost (its first conversion of a Python list imports pandas when it
    is installed: ~0.25 s) while the first fetch is in flight, not inside the first commit."""
    pa.array([0.0])


def _coalesce(first: list[Record], receive: MemoryObjectReceiveStream[list[Record]],
              max_bytes: int) -> list[Record]:
    """``first`` plus every batch already waiting behind it, up to ``max_bytes`` of payload.

    While the writer keeps up, each fetched batch is its own (small, low-latency) transaction;
    once it falls behind, the backlog goes in one big transaction: a commit's fixed cost is paid
    once, and DuckDB writes large appends straight to row groups instead of through its WAL.
    """
    recs = first
    size = sum(len(r.data) for r in first if isinstance(r.data, bytes))
    while size < max_bytes:
        try:
            more = receive.receive_nowait()
        except (anyio.WouldBlock, anyio.EndOfStream):
            break
        if recs is first:
            recs = list(first)
        recs.extend(more)
        size += sum(len(r.data) for r in more if isinstance(r.data, bytes))
    return recs


def _publisher(js: Any) -> Callable[[str, bytes, dict[str, str]], Any]:
    async def publish(subject: str, payload: bytes, headers: dict[str, str]) -> Any:
        return await js.publish(subject, payload, headers=headers)

    return publish


def catch_up(db_path: str | Path, nats_url: str, *, timeout: float = 30.0,
             nats_options: dict[str, Any] | None = None) -> int:
    """Project the stream up to its current last sequence into ``db_path``, then close.

    For tests and the CLI when no server process owns the file. Returns the projected seq.
    """
    p = Projector(db_path, nats_url, nats_options=nats_options)
    try:
        return anyio.run(p.catch_up, timeout)
    finally:
        p.close()


def replay_file(db_path: str | Path, nats_url: str, progress: Progress | None = None, *,
                nats_options: dict[str, Any] | None = None) -> int:
    """Rebuild ``db_path`` from the whole stream (``progress(done_seq, last_seq)``); return the seq."""
    p = Projector(db_path, nats_url, nats_options=nats_options)
    try:
        return anyio.run(p.replay, progress)
    finally:
        p.close()
