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

from .errors import CatchUpTimeout, StreamChanged, StreamSetupError
from .fold import Record, fold
from .reaper import Reaper
from .resilience import BrokerLink, backoff_delays, connect_retrying, is_disk_full, retrying
from .source import StreamSource, entity_subjects, last_seq, stream_identity
from .state import ProjectionState
from .store import Store

Progress = Callable[[int, int], None]
log = logging.getLogger("runstream.projector")

_PREFETCH = 8
"""Fetched batches that may wait for the writer (they are then written in one transaction)."""
_PROBE_WAITING_S = 0.25
"""While someone waits for a position the projection has not reached, how often an idle
projector asks its consumer whether anything of its filter is still pending."""
_PROBE_IDLE_S = 2.0
"""Otherwise (for the lag in ``health``), how often an idle projector asks."""
_STREAM_DDL = "CREATE TABLE IF NOT EXISTS projector_stream (name VARCHAR PRIMARY KEY, created VARCHAR)"
STREAM_CHECK_S = 1.0
"""While projecting, how often the stream's identity is checked again (at most)."""
DISK_FULL_RETRY_S = 2.0
"""While DuckDB's disk is full, the longest wait between two tries of the same transaction."""
_PARTITION_DDL = "CREATE TABLE IF NOT EXISTS projector_partition (name VARCHAR PRIMARY KEY, subjects VARCHAR)"


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
        entities: project only these entities (a partition); None: every entity.
        filter_subjects: or a raw subject filter (subjects of the event stream, e.g.
            ``rs.team-*.run.*.*`` is not valid NATS, but ``rs.a.run.*.*`` and ``rs.*.run.abc.*`` are).
        replicas: the replica count the streams are created with / raised to at start.
        link: where broker failures and the connection state are reported (``health``); its
            owner watches its own connection (without one, the projector watches its own).
    """

    def __init__(self, db_path: str | Path, nats_url: str, *, nats_options: dict[str, Any] | None = None,
                 name: str = "main", batch_size: int = 2000, max_transaction_bytes: int = 64 * 1024 * 1024,
                 crash_timeout: float = 300.0,
                 heartbeat_interval: float = 30.0, reaper: bool = False,
                 clock: Callable[[], float] = time.time, entities: list[str] | None = None,
                 filter_subjects: list[str] | None = None, replicas: int = 1,
                 link: BrokerLink | None = None) -> None:
        self.db_path = Path(db_path)
        self.name = name
        self.entities = list(entities) if entities else None
        self.filter_subjects = list(filter_subjects or (entity_subjects(entities) if entities else [])) or None
        self.replicas = max(1, int(replicas))
        self._own_link = link is None
        self.link = link or BrokerLink(nats_url)
        self.source: StreamSource | None = None
        """The consumer of the running :meth:`run` (its pending count is the lag of a partition)."""
        self.nats_url = nats_url
        self.nats_options = dict(nats_options or {})
        self.batch_size = batch_size
        self.max_transaction_bytes = max_transaction_bytes
        self.crash_timeout = crash_timeout
        self.heartbeat_interval = heartbeat_interval
        self.reaper_enabled = reaper
        self.clock = clock
        self.store = Store(self.db_path, name)
        self._check_partition()
        self._state: ProjectionState = self.store.load()
        self._projected = self._state.checkpoint
        self._covered = self._projected
        """Stream seq up to which every event of the filter is projected (a partition's projected
        seq stays behind the stream's last one: the events after it belong to others)."""
        self._wanted = 0
        self.stream_last_seq: int | None = None
        """The stream's last sequence as last seen (None before the first look)."""
        self._advanced = anyio.Event()
        self.points = 0
        """History points written since this object was created."""
        self.on_late: Callable[[list[tuple[str, int]]], Awaitable[None]] | None = None
        """Called with ``(run_uid, stream_seq)`` of events of deleted runs the fold dropped (the
        server deletes them from the stream); a failure is logged, never stops the projector."""
        self._late: list[tuple[str, int]] = []
        self.dropped = 0
        """Events of deleted runs dropped (after their tombstone) since this object was created."""
        self.stalled: dict[str, Any] | None = None
        """Why projecting is paused, while it is (``reason``, ``message``, ``since``): ``disk_full``
        when DuckDB cannot write its file (retried until space returns; reads go on);
        ``stream_changed`` when the event stream is another one than the projection was made from
        (deleted and recreated, or behind the checkpoint): nothing is projected until ``runstream
        replay`` rebuilds from the new stream, or the old one is restored. ``health`` shows it."""
        self._stream_checked = 0.0
        self._stream_created = self._load_stream()

    # -- reading the projection ----------------------------------------------------------------

    @property
    def projected_seq(self) -> int:
        """The last stream sequence whose effects are committed to DuckDB."""
        return self._projected

    @property
    def position(self) -> int:
        """The stream sequence up to which everything of this projection's filter is projected
        (the projected seq, or more for a partition whose consumer has nothing pending)."""
        return max(self._projected, self._covered)

    @property
    def partitioned(self) -> bool:
        return self.filter_subjects is not None

    def lag(self) -> int | None:
        """Events not projected yet: a partition's consumer's pending count, else the stream's
        last sequence (as last seen) minus the projected one; None when unknown."""
        if self.partitioned:
            return None if self.source is None or self.source.pending is None else self.source.pending
        if self.stream_last_seq is None:
            return None
        return max(self.stream_last_seq - self.position, 0)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor on the projection for readers in this process."""
        return self.store.cursor()

    async def wait_for_seq(self, seq: int, timeout: float) -> bool:
        """Wait until the projection holds everything of its filter up to stream sequence ``seq``;
        False if ``timeout`` seconds pass first."""
        self._wanted = max(self._wanted, seq)
        with anyio.move_on_after(timeout):
            while self.position < seq:
                await self._advanced.wait()
            return True
        return self.position >= seq

    async def wait_projected(self, seq: int, timeout: float) -> bool:
        """Wait until an event at stream sequence ``seq`` or later is *projected* (new rows, not
        just a partition's position moving past other entities' events); False on timeout."""
        with anyio.move_on_after(timeout):
            while self._projected < seq:
                await self._advanced.wait()
            return True
        return self._projected >= seq

    def _check_partition(self) -> None:
        """A file projected with another filter cannot go on from its checkpoint (it lacks the
        new entities' earlier events): it is rebuilt from the log."""
        subjects = ",".join(self.filter_subjects or [])
        cur = self.store.cursor()
        try:
            cur.execute(_PARTITION_DDL)
            row = cur.execute("SELECT subjects FROM projector_partition WHERE name = ?", [self.name]).fetchone()
            before = row[0] if row else ("" if self.store.checkpoint() else None)
            if before is not None and before != subjects:
                log.warning("projection %s was of %s, now of %s: rebuilding it from the log", self.db_path,
                            before or "every entity", subjects or "every entity")
                self.store.reset()
            cur.execute("INSERT OR REPLACE INTO projector_partition VALUES (?, ?)", [self.name, subjects])
        finally:
            cur.close()

    def _signal(self) -> None:
        advanced, self._advanced = self._advanced, anyio.Event()
        advanced.set()

    async def _probe(self, source: StreamSource, last_probe: float) -> float:
        """While idle: ask the consumer whether anything is pending; if not, everything of the
        filter up to the stream's last sequence (read just before) is projected."""
        now = time.monotonic()
        every = _PROBE_WAITING_S if self.position < max(self._wanted, self.stream_last_seq or 0) else _PROBE_IDLE_S
        if now - last_probe < every:
            return last_probe
        js = source.js
        try:
            with anyio.fail_after(5):
                created, last = await stream_identity(js)
        except Exception as e:
            self.link.failed("reading the stream's last sequence", e)
            return now
        self.link.ok("reading the stream's last sequence")
        self._same_stream(created, last)
        self.stream_last_seq = last
        pending = await source.probe()
        if pending is not None and pending.num_pending == 0 and pending.delivered_seq <= self._projected:
            if last > self._covered:
                self._covered = last
                self._signal()
        return now

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

    def _load_stream(self) -> str | None:
        """The creation time of the stream this projection follows, as recorded (None: not yet)."""
        cur = self.store.cursor()
        try:
            cur.execute(_STREAM_DDL)
            row = cur.execute("SELECT created FROM projector_stream WHERE name = ?", [self.name]).fetchone()
            return None if row is None else str(row[0])
        finally:
            cur.close()

    def _record_stream(self, created: str | None) -> None:
        cur = self.store.cursor()
        try:
            if created is None:
                cur.execute("DELETE FROM projector_stream WHERE name = ?", [self.name])
            else:
                cur.execute("INSERT OR REPLACE INTO projector_stream VALUES (?, ?)", [self.name, created])
        finally:
            cur.close()
        self._stream_created = created

    def _same_stream(self, created: str, last: int) -> None:
        """Raise :class:`StreamChanged` when the stream is not the one this projection follows
        (another creation time, or a last sequence behind the checkpoint); record the identity of
        the first stream seen."""
        self._stream_checked = time.monotonic()
        recorded = self._stream_created
        if recorded is None:
            self._record_stream(created)
            recorded = created
        why = None
        if recorded != created:
            why = f"it was created at {created}, the projection's stream at {recorded} (deleted and recreated)"
        elif last < self._projected:
            why = f"its last sequence is {last}, behind the projection's checkpoint {self._projected}"
        if why is None:
            if self.stalled is not None and self.stalled["reason"] == "stream_changed":
                log.warning("the event stream is the projection's again: projecting")
                self.stalled = None
            return
        message = (f"the event stream is not the one {self.db_path} was projected from: {why}. Projecting is "
                   "paused so that no new event is skipped; new events are kept in the stream. Way out: "
                   "`runstream replay` rebuilds the projection from the new stream, or restore the old stream")
        if self.stalled is None or self.stalled.get("message") != message:
            self.stalled = {"reason": "stream_changed", "message": message, "since": time.time()}
            log.error("%s", message)
        raise StreamChanged(message)

    async def _check_stream(self, js: Any) -> None:
        created, last = await retrying("reading the stream's last sequence", lambda: stream_identity(js), self.link)
        self.stream_last_seq = last
        self._same_stream(created, last)

    async def _commit(self, records: list[Record]) -> None:
        if time.monotonic() - self._stream_checked > STREAM_CHECK_S and self.source is not None:
            await self._check_stream(self.source.js)
        delays = backoff_delays(0.2, DISK_FULL_RETRY_S)
        while True:
            try:
                seq = await anyio.to_thread.run_sync(self._apply, records)
                break
            except Exception as e:
                if not is_disk_full(e):
                    raise
                if self.stalled is None:
                    message = (f"the disk of {self.db_path} is full ({e}): projecting is paused at stream seq "
                               f"{self._projected}, reads are answered, and it resumes by itself when space "
                               "returns (nothing is lost: the events wait in the stream)")
                    self.stalled = {"reason": "disk_full", "message": message, "since": time.time()}
                    log.error("%s", message)
            await anyio.sleep(next(delays))
        if self.stalled is not None and self.stalled["reason"] == "disk_full":
            log.warning("space is back on the disk of %s: projecting again after %.1fs paused", self.db_path,
                        time.time() - self.stalled["since"])
            self.stalled = None
        self._projected = seq
        self._signal()
        late, self._late = self._late, []
        if late and self.on_late is not None:
            try:
                await self.on_late(late)
            except Exception:
                log.exception("deleting %d late event(s) of deleted runs from the stream failed", len(late))

    async def _connect(self) -> Any:
        return await connect_retrying(self.nats_url, self.link, name=f"runstream-projector-{self.name}",
                                      **self.nats_options)

    async def _ensure_streams(self, js: Any) -> None:
        from runstream.broker.streams import ensure_streams

        nc = getattr(js, "_nc", None)
        info = getattr(nc, "_server_info", None) or {}  # nats-py keeps the server's INFO only there
        if self.replicas > 1 and isinstance(info, dict) and info and not info.get("cluster"):
            raise StreamSetupError(  # a setting no wait can cure, not an outage
                f"RUNSTREAM_STREAM_REPLICAS={self.replicas} but the NATS server at {self.nats_url} is not part "
                "of a cluster (a stream on it has one replica): set RUNSTREAM_STREAM_REPLICAS=1, or point "
                "RUNSTREAM_NATS_URL at a cluster")
        done = await retrying("creating the log's streams", lambda: ensure_streams(js, self.replicas), self.link)
        for d in done:
            if d.created:
                log.info("stream %s created with %d replica(s)", d.name, d.after)
            elif d.after > d.before:
                log.warning("stream %s: replicas raised from %d to %d", d.name, d.before, d.after)

    async def _last_seq(self, js: Any) -> int:
        self.stream_last_seq = await retrying("reading the stream's last sequence", lambda: last_seq(js), self.link)
        return self.stream_last_seq

    async def _consume(self, js: Any, *, until: int | None,
                       on_caught_up: Callable[[], None] | None = None,
                       progress: Progress | None = None) -> None:
        """Fetch and write batches; stop once ``until`` is projected (forever if None)."""
        send, receive = anyio.create_memory_object_stream[list[Record]](_PREFETCH)
        target = until if until is not None else await self._last_seq(js)
        self._wanted = max(self._wanted, target)
        caught_up = on_caught_up
        source = StreamSource(js, filter_subjects=self.filter_subjects, link=self.link, batch_size=self.batch_size)
        self.source = source

        async def fetcher() -> None:
            last_probe = 0.0
            async with send:
                async for recs in source.batches(self._projected + 1):
                    if recs:
                        await send.send(recs)
                    elif receive.statistics().current_buffer_used == 0:
                        last_probe = await self._probe(source, last_probe)
                    if until is not None and recs and recs[-1].stream_seq >= until:
                        return
                    if until is not None and self.position >= until:
                        return

        async def caught_up_watch() -> None:
            nonlocal caught_up
            while caught_up is not None:
                if self.position >= target:
                    caught_up()
                    caught_up = None
                    return
                await self._advanced.wait()

        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, _warm_up)
            tg.start_soon(fetcher)
            tg.start_soon(caught_up_watch)
            async with receive:
                async for first in receive:
                    recs = _coalesce(first, receive, self.max_transaction_bytes)
                    await self._commit(recs)
                    if progress is not None:
                        progress(self._projected, target)
                    if until is not None and self.position >= until:
                        tg.cancel_scope.cancel()
                        return
            if until is not None and self.position >= until:
                tg.cancel_scope.cancel()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Connect, make sure the stream exists, and project forever from the checkpoint.

        ``task_status.started()`` is called once the projection has caught up with the stream's
        last sequence as of the start. Runs the crash reaper too when ``reaper=True``.
        """
        nc = await self._connect()
        try:
            js = nc.jetstream()
            await self._ensure_streams(js)
            async with anyio.create_task_group() as tg:
                if self._own_link:  # a shared link watches its owner's connection (one view, one log)
                    tg.start_soon(self.link.watch, nc)
                if self.reaper_enabled:
                    reaper = Reaper(self.cursor, _publisher(js), crash_timeout=self.crash_timeout,
                                    heartbeat_interval=self.heartbeat_interval, clock=self.clock, link=self.link)
                    tg.start_soon(reaper.run)
                started = False

                def caught_up() -> None:
                    nonlocal started
                    started = True
                    task_status.started()

                while True:
                    try:
                        await self._check_stream(js)
                        await self._consume(js, until=None, on_caught_up=None if started else caught_up)
                    except* StreamChanged:  # from the fetcher's probe, in _consume's task group
                        if not started:  # the server starts and answers reads, saying why it is paused
                            caught_up()
                        await anyio.sleep(STREAM_CHECK_S * 2)
        finally:
            with anyio.CancelScope(shield=True):
                await nc.close()

    async def catch_up(self, timeout: float = 30.0, progress: Progress | None = None) -> int:
        """Project everything up to the stream's last sequence as of now; return the projected seq.

        Unlike :meth:`run`, it does not wait for an unreachable broker: it is bounded.

        Raises:
            CatchUpTimeout: ``timeout`` seconds passed first.
            BrokerUnavailable: NATS does not answer.
        """
        from runstream.broker.jetstream import connect
        from runstream.broker.streams import ensure_streams

        nc = await connect(self.nats_url, name=f"runstream-projector-{self.name}", **self.nats_options)
        try:
            js = nc.jetstream()
            await ensure_streams(js, self.replicas)
            created, target = await stream_identity(js)
            self.stream_last_seq = target
            self._same_stream(created, target)
            if self.position < target:
                with anyio.move_on_after(timeout):
                    await self._consume(js, until=target, progress=progress)
                if self.position < target:
                    raise CatchUpTimeout(self.position, target, timeout)
            return self._projected
        finally:
            with anyio.CancelScope(shield=True):
                await nc.close()

    async def replay(self, progress: Progress | None = None, timeout: float = 3600.0) -> int:
        """Drop every table and rebuild the projection from stream seq 1.

        Do not call it while :meth:`run` is projecting into the same object.
        """
        await anyio.to_thread.run_sync(self.store.reset)
        self._record_stream(None)  # the new stream's identity is recorded at the next look
        if self.stalled is not None and self.stalled["reason"] == "stream_changed":
            log.warning("replay: rebuilding %s from the event stream as it is now", self.db_path)
            self.stalled = None
        self._state = ProjectionState()
        self._projected = self._covered = self._wanted = 0
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
