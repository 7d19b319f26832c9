"""The SDK's one background thread: seal spooled rows into batches, publish, heartbeat.

A plain thread with a blocking NATS client (:mod:`runstream.broker.miniclient`): no event loop to
import or start, so user code never sees async and a short script is not slowed by the client's
import. The thread only reads the spool (and appends markers and heartbeats under the spool lock);
the user thread waits for it only in ``finish()`` and when reading ``run.summary``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .outbox import Outbox, Outgoing
from .settings import Settings
from .spool import Spool

READ_AHEAD = 64
"""Events decoded but not yet acknowledged, at most: a stalled broker never grows memory."""
NO_STREAM_S = 10.0
"""How long publishes may find no stream (a leader election takes seconds) before the worker asks
for the stream again, creating it if it was deleted."""
WINDOW = 16
"""Events sent back to back before waiting for their PubAcks (in order, on one connection)."""


class Mirror:
    """What the SDK process knows of its own run: last values and a sample of each series."""

    SAMPLES = 512

    def __init__(self) -> None:
        self.last: dict[str, Any] = {}
        self.series: dict[str, list[float]] = {}
        self.count: dict[str, int] = {}
        """Seq of the last batch that logged each key: an explicit summary value set after it (which
        seals pending rows first) wins until a later batch logs the key again."""
        self._stride: dict[str, int] = {}
        self._seen: dict[str, int] = {}

    def add(self, update: dict[str, Any]) -> None:
        """Fold one batch's ``{"last", "series", "batch"}`` (see :meth:`Outbox._mirror`)."""
        batch = update["batch"]
        for key, value in update["last"].items():
            self.last[key] = value
            self.count[key] = batch
        for key, values in update["series"].items():
            nums = [float(v) for v in values if type(v) in (float, int, bool)]
            if not nums:
                continue
            series = self.series.setdefault(key, [])
            stride = self._stride.get(key, 1)
            seen = self._seen.get(key, 0)
            for v in nums:
                if seen % stride == 0:
                    series.append(v)
                seen += 1
                if len(series) >= 2 * self.SAMPLES:
                    del series[1::2]
                    stride *= 2
            self._stride[key] = stride
            self._seen[key] = seen


class Claim:
    """The outcome of registering the run's path, awaited by ``init(id=...)``."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self.error: BaseException | None = None

    def set(self, error: BaseException | None = None) -> None:
        if not self._done.is_set():
            self.error = error
            self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float) -> bool:
        """True when settled within ``timeout``; raises the error it settled with."""
        if not self._done.wait(timeout):
            return False
        if self.error is not None:
            raise self.error
        return True


class Worker(threading.Thread):
    """Background publisher of one run's spool.

    Args:
        seal, append_event: the Run's spool helpers (seal pending rows; spool one event).
        url: the NATS URL, or None when offline (the worker then only keeps the mirror current).
        claim: ``(client) -> None`` registering the run's path; raises RunExistsError if taken.
    """

    def __init__(self, spool: Spool, settings: Settings, url: str | None,
                 seal: Callable[[bool], None], append_event: Callable[[str, dict[str, Any]], int],
                 claim: Callable[[Any], None] | None = None) -> None:
        super().__init__(name=f"runstream-{spool.meta['run_id']}", daemon=True)
        self.spool = spool
        self.settings = settings
        self.url = url
        self.seal = seal
        self.append_event = append_event
        self.claim = claim
        self.mirror = Mirror()
        self.claimed = Claim()
        self.error: BaseException | None = None
        self.last_error: Exception | None = None
        self.published = 0
        self.last_stream_seq = 0
        self.recovered: Any = None
        self._wake = threading.Event()
        self._stopping = False
        self._deadline: float | None = None
        self._synced = threading.Condition()
        self._polled_to = 0
        self._outbox = Outbox(spool)
        self._queue: list[Outgoing] = []
        self.control: Any = None
        """Answers control requests on the connection (a :class:`~.control.StopListener`)."""

    # -- called from the user thread ---------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def sync_mirror(self, timeout: float = 10.0) -> None:
        """Wait until every row spooled so far is reflected in :attr:`mirror`."""
        self.seal(True)
        target = self.spool.durable_end  # rows held in memory on a full disk are not polled yet
        self._wake.set()
        with self._synced:
            self._synced.wait_for(lambda: self._polled_to >= target or not self.is_alive(), timeout)

    def stop(self, timeout: float) -> bool:
        """Drain: publish everything spooled (up to ``timeout`` s), then end. True if it ended."""
        self._deadline = time.monotonic() + timeout
        self._stopping = True
        self._wake.set()
        self.join(timeout + 5)
        return not self.is_alive()

    # -- the thread --------------------------------------------------------------------------------

    def run(self) -> None:
        client = None
        try:
            if self.url is not None:
                from .broker.miniclient import MiniNats

                s = self.settings
                client = MiniNats.for_settings(self.url, s, name=f"runstream-sdk {self.spool.meta['run_id']}")
            else:
                self.claimed.set()
            self._loop(client)
        except BaseException as e:  # surfaced by Run.finish()
            self.error = e
            self.claimed.set(e)
        finally:
            if client is not None:
                client.close()
            with self._synced:
                self._polled_to = 1 << 62
                self._synced.notify_all()

    def _loop(self, client: Any) -> None:
        interval = self.settings.flush_interval
        hb_every = self.settings.heartbeat_interval
        next_hb = time.monotonic() + hb_every
        ready = False      # connected, log ensured and path claimed
        no_stream_since = 0.0
        ensured = False    # the stream exists: a reconnect (failover) need not ask again, which during a
        #                    leader election would wait out a JetStream API timeout before re-sending
        recovered = False
        delay = 0.05
        first = True
        while True:
            if not self._stopping and not (first and client is not None):  # connect at once, then wait
                self._wake.wait(interval)
                self._wake.clear()
            first = False
            self._poll()
            if client is None:
                self._queue.clear()
            else:
                try:
                    if not ready:
                        if not client.connected:
                            client.connect()
                        if not ensured:
                            client.ensure_log()
                            ensured = True
                        if not self.claimed.done():  # once per run, not per connection
                            if self.claim is not None:
                                self.claim(client)
                            self.claimed.set()
                        ready = True
                    self._publish(client)
                    no_stream_since = 0.0
                    if self.control is not None and not self._stopping:
                        self.control.serve(client)
                    if not recovered and not self._queue:
                        recovered = True
                        self._recover_leftovers(client)
                    delay = 0.05
                except Exception as e:
                    from .broker.errors import RunExistsError
                    from .broker.miniclient import NoResponders

                    if isinstance(e, RunExistsError):
                        raise
                    if getattr(e, "code", None) == 503 or isinstance(e, NoResponders):
                        # nothing answers for the stream: an election (seconds), or a stream that was
                        # deleted; past NO_STREAM_S it is asked for (and created) again
                        no_stream_since = no_stream_since or time.monotonic()
                        if time.monotonic() - no_stream_since > NO_STREAM_S:
                            ensured, no_stream_since = False, 0.0
                    self.last_error = e
                    client.close()
                    ready = False
                    if self._stopping and self._past_deadline():
                        return
                    self._wake.wait(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                if not self._stopping and time.monotonic() >= next_hb:
                    next_hb = time.monotonic() + hb_every
                    self.append_event("heartbeat", {})
                    continue
            if self._stopping and (self._past_deadline() or
                                   (not self._queue and self._outbox.cursor >= self.spool.end)):
                return

    def _poll(self) -> None:
        self.seal(self._stopping)  # blocking only when draining; see Run._seal
        spool = self.spool
        if spool.pending and spool.lock.acquire(self._stopping):  # the disk was full: space back?
            try:
                spool.flush_pending()
            finally:
                spool.lock.release()
        if len(self._queue) < READ_AHEAD:
            fresh = self._outbox.poll(spool.durable_end, READ_AHEAD)
            for ev in fresh:
                if ev.columns is not None:
                    self.mirror.add(ev.columns)
            acked = self.spool.acked
            self._queue.extend(ev for ev in fresh if ev.seq > acked)
            with self._synced:
                self._polled_to = self._outbox.cursor
                self._synced.notify_all()

    def _publish(self, client: Any) -> None:
        from .publisher import publish_window

        while self._queue:
            window = self._queue[:WINDOW]
            done, seq = publish_window(client, self.spool, window)
            del self._queue[:done]
            self.published += done
            self.last_stream_seq = max(self.last_stream_seq, seq)
            if len(self._queue) < READ_AHEAD // 2:
                self._poll()

    def _recover_leftovers(self, client: Any) -> None:
        """Send what earlier runs in the same ``runstream-runs/`` folder left in their spools."""
        from .spool import find_spools, is_complete

        root = self.spool.path.parent.parent
        others = [p for p in find_spools(root) if p != self.spool.path and not is_complete(p)]
        if others:
            from .sync import send_spools

            self.recovered = send_spools(client, others, timeout=self.settings.finish_timeout)

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() > self._deadline
