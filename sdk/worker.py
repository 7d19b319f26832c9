"""The SDK's one background thread: seal spooled rows into batches, publish, heartbeat.

It owns an asyncio loop, so user code never sees async. The thread only reads the spool (and
appends markers and heartbeats under the spool lock); the user thread never waits for it except in
``finish()`` and when reading ``run.summary``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable
from typing import Any

from .broker.codec import encode_event, envelope
from .outbox import Outbox, Outgoing
from .publisher import Publisher
from .settings import Settings
from .spool import Spool

READ_AHEAD = 64
"""Events decoded but not yet acknowledged, at most: a stalled broker never grows memory."""


class Mirror:
    """What the SDK process knows of its own run: last values and a sample of each series."""

    SAMPLES = 512

    def __init__(self) -> None:
        self.last: dict[str, Any] = {}
        self.series: dict[str, list[float]] = {}
        self._stride: dict[str, int] = {}
        self._count: dict[str, int] = {}
        self.count: dict[str, int] = {}
        """Rows seen per key (any type): tells an explicit summary value from a newer logged one."""

    def add(self, columns: dict[str, Any]) -> None:
        for key, values in columns["cols"].items():
            present = values
            if not present:
                continue
            self.count[key] = self.count.get(key, 0) + len(present)
            self.last[key] = present[-1]
            nums = [float(v) for v in present if type(v) in (float, int, bool)]
            if not nums:
                continue
            series = self.series.setdefault(key, [])
            stride = self._stride.setdefault(key, 1)
            count = self._count.get(key, 0)
            for v in nums:
                if count % stride == 0:
                    series.append(v)
                count += 1
                if len(series) >= 2 * self.SAMPLES:
                    del series[1::2]
                    stride *= 2
            self._stride[key] = stride
            self._count[key] = count


class Worker(threading.Thread):
    """Background publisher of one run's spool.

    Args:
        seal, append_event: the Run's spool helpers (seal pending rows; spool one event).
        url: the NATS URL, or None when offline (the worker then only keeps the mirror current).
        claim: coroutine factory ``(js) -> None`` registering the run's path; raises if taken.
    """

    def __init__(self, spool: Spool, settings: Settings, url: str | None,
                 seal: Callable[[], None], append_event: Callable[[str, dict[str, Any]], int],
                 claim: Callable[[Any], Any] | None = None, clock: Callable[[], float] = time.time) -> None:
        super().__init__(name=f"runstream-{spool.meta['run_id']}", daemon=True)
        self.spool = spool
        self.settings = settings
        self.url = url
        self.seal = seal
        self.append_event = append_event
        self.claim = claim
        self.clock = clock
        self.mirror = Mirror()
        self.claimed: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.error: BaseException | None = None
        self.last_error: Exception | None = None
        self.published = 0
        self.recovered: Any = None
        self.last_stream_seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._deadline: float | None = None
        self._ready = threading.Event()
        self._synced = threading.Condition()
        self._polled_to = 0
        self._outbox = Outbox(spool)
        self._queue: list[Outgoing] = []
        self._recovery: asyncio.Task[None] | None = None

    # -- called from the user thread ---------------------------------------------------------------

    def start(self) -> None:
        super().start()
        self._ready.wait(5)

    def wake(self) -> None:
        loop, ev = self._loop, self._wake
        if loop is not None and ev is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:
                pass

    def sync_mirror(self, timeout: float = 10.0) -> None:
        """Wait until every row spooled so far is reflected in :attr:`mirror`."""
        self.seal()
        target = self.spool.end
        self.wake()
        with self._synced:
            self._synced.wait_for(lambda: self._polled_to >= target or not self.is_alive(), timeout)

    def stop(self, timeout: float) -> bool:
        """Drain: publish everything spooled (up to ``timeout`` s), then end. True if all acked."""
        self._deadline = time.monotonic() + timeout
        self._stopping = True
        self.wake()
        self.join(timeout + 5)
        return self.pending() == 0

    def pending(self) -> int:
        """Events spooled but not acknowledged."""
        last = self._outbox.last_seq
        return max(0, last - self.spool.acked) if self.url else last

    # -- the thread --------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # surfaced by Run.finish()
            self.error = e
            if not self.claimed.done():
                self.claimed.set_exception(e)
        finally:
            self._ready.set()
            with self._synced:
                self._polled_to = 1 << 62
                self._synced.notify_all()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._ready.set()
        nc = None
        publisher: Publisher | None = None
        try:
            if self.url is not None:
                nc, js = await self._connect()
                if nc is None:
                    return
                publisher = Publisher(js, self.spool, on_error=self._note_error)
                await self._claim(js)
                hb = asyncio.create_task(self._heartbeats())
                self._recovery = asyncio.create_task(self._recover_leftovers(js))
            else:
                if not self.claimed.done():
                    self.claimed.set_result(None)
                hb = None
            await self._pump(publisher)
            if hb is not None:
                hb.cancel()
            if self._recovery is not None:
                remaining = (self._deadline - time.monotonic()) if self._deadline else 5.0
                try:
                    await asyncio.wait_for(self._recovery, max(0.1, remaining))
                except (TimeoutError, Exception):
                    pass
            if publisher is not None:
                self.last_stream_seq = publisher.last_stream_seq
        finally:
            if nc is not None:
                try:
                    await asyncio.wait_for(nc.close(), 2)
                except Exception:  # closing a dead connection must not mask the run's outcome
                    pass

    async def _connect(self) -> tuple[Any, Any]:
        from .broker.jetstream import connect, ensure_log

        s = self.settings
        delay = 0.1
        while True:
            try:
                nc = await connect(self.url or "", creds=s.nats_creds, token=s.nats_token, user=s.nats_user,
                                   password=s.nats_password, name=f"runstream-sdk {self.spool.meta['run_id']}",
                                   connect_timeout=2.0)
                js = nc.jetstream()
                await ensure_log(js)
                return nc, js
            except Exception as e:
                self._note_error(e)
                if self._stopping and self._past_deadline():
                    if not self.claimed.done():
                        self.claimed.set_exception(e)
                    return None, None
                await self._nap(delay)
                delay = min(delay * 2, 2.0)

    async def _claim(self, js: Any) -> None:
        """Register the run's path; retried through outages, fatal only when the id is taken."""
        from .broker.errors import RunExistsError

        delay = 0.1
        while self.claim is not None:
            try:
                await self.claim(js)
                break
            except RunExistsError as e:
                if not self.claimed.done():
                    self.claimed.set_exception(e)
                raise
            except Exception as e:
                self._note_error(e)
                if self._stopping and self._past_deadline():
                    raise
                await self._nap(delay)
                delay = min(delay * 2, 2.0)
        if not self.claimed.done():
            self.claimed.set_result(None)

    async def _recover_leftovers(self, js: Any) -> None:
        """Send what earlier runs in the same ``runstream/`` folder left in their spools."""
        from .sync import find_spools, send_spools

        root = self.spool.path.parent.parent
        others = [p for p in find_spools(root) if p != self.spool.path]
        if others:
            report = await send_spools(js, others, timeout=self.settings.finish_timeout)
            self.recovered = report

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            if self._stopping:
                return
            self.append_event("heartbeat", {})
            self.wake()

    async def _pump(self, publisher: Publisher | None) -> None:
        assert self._wake is not None
        interval = self.settings.flush_interval
        while True:
            if not self._stopping:
                try:
                    await asyncio.wait_for(self._wake.wait(), interval)
                except TimeoutError:
                    pass
                self._wake.clear()
            self.seal()
            if len(self._queue) < READ_AHEAD:
                end = self.spool.end
                fresh = self._outbox.poll(end, READ_AHEAD)
                for ev in fresh:
                    if ev.columns is not None:
                        self.mirror.add(ev.columns)
                self._queue.extend(ev for ev in fresh if ev.seq > self.spool.acked)
                with self._synced:
                    self._polled_to = self._outbox.cursor
                    self._synced.notify_all()
            if publisher is None:
                self._queue.clear()
            else:
                while self._queue:
                    ev = self._queue[0]
                    deadline = self._loop_deadline()
                    if not await publisher.publish(ev, deadline=deadline):
                        return
                    self._queue.pop(0)
                    self.published += 1
                    self.last_stream_seq = publisher.last_stream_seq
            if self._stopping and not self._queue and self._outbox.cursor >= self.spool.end:
                return
            if self._stopping and self._past_deadline():
                return

    # -- helpers -----------------------------------------------------------------------------------

    def _note_error(self, e: Exception) -> None:
        self.last_error = e

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() > self._deadline

    def _loop_deadline(self) -> float | None:
        if self._deadline is None or self._loop is None:
            return None
        return self._loop.time() + max(0.0, self._deadline - time.monotonic())

    async def _nap(self, seconds: float) -> None:
        assert self._wake is not None
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass
        self._wake.clear()


def encode_simple_event(type_: str, run_uid: str, writer: str, seq: int, ts: float,
                        body: dict[str, Any]) -> bytes:
    return encode_event(envelope(type_, run_uid, writer, seq, ts, body))
