"""Reading the stream: an ephemeral JetStream pull consumer positioned by the DuckDB checkpoint.

The consumer uses ``ack_policy=none``: the checkpoint stored with the rows is the position, so
nothing is acknowledged and a restart simply starts a new consumer at ``checkpoint + 1``.

Nothing the broker does ends the source: creating the consumer, fetching and asking for the
consumer's state are retried with backoff (reported to a :class:`~.resilience.BrokerLink`), and a
consumer that vanished (a node restarted, a leader moved, the connection came back) is replaced by
a new one where the projection stands.

A *partition* reads only some entities: the consumer's ``filter_subjects`` are those entities' run
subjects. Its progress is then measured by the consumer's pending count, not by the stream's last
sequence (which a filtered consumer never has to reach): see :meth:`StreamSource.probe`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, NamedTuple

import anyio

from runstream.broker.names import STREAM, SUBJECT_PREFIX, encode_token, stream_subjects

from .fold import Record
from .resilience import BrokerLink, backoff_delays

FETCH_BYTES = 16 * 1024 * 1024
"""Roughly how many payload bytes one fetch asks for (the batch count adapts to message size)."""
CHECK_IDLE_S = 5.0
"""While idle, how often the consumer is checked to still exist (a restarted node forgets it)."""


def entity_subjects(entities: Sequence[str]) -> list[str]:
    """The run subjects of ``entities`` (``rs.<encoded entity>.run.*.*``), the filter of a partition."""
    return [f"{SUBJECT_PREFIX}.{encode_token(e)}.run.*.*" for e in entities]


async def last_seq(js: Any) -> int:
    """The stream's last sequence right now."""
    info = await js.stream_info(STREAM)
    return int(info.state.last_seq)


async def stream_identity(js: Any) -> tuple[str, int]:
    """The stream's creation time (changes when it is deleted and recreated) and last sequence."""
    info = await js.stream_info(STREAM)
    return str(info.created), int(info.state.last_seq)


def to_record(msg: Any) -> Record:
    meta = msg.metadata
    return Record(meta.sequence.stream, msg.subject, msg.data, meta.timestamp.timestamp())


class Pending(NamedTuple):
    """The consumer's state: messages of its filter not delivered yet, and the last delivered."""

    num_pending: int
    delivered_seq: int


class StreamSource:
    """The projector's consumer of the event stream.

    Args:
        js: a JetStream context.
        filter_subjects: the subjects to read (default: every run subject).
        link: where broker failures are reported.
        batch_size: most messages per fetch.
        idle_wait: how long one fetch waits when nothing is pending (bounds the latency).
    """

    def __init__(self, js: Any, *, filter_subjects: Sequence[str] | None = None, link: BrokerLink | None = None,
                 batch_size: int = 2000, idle_wait: float = 0.2) -> None:
        self.js = js
        self.filter_subjects = list(filter_subjects or stream_subjects())
        self.link = link
        self.batch_size = batch_size
        self.idle_wait = idle_wait
        self.pending: int | None = None
        """Messages of the filter after the last one fetched (from the message's metadata), or
        from the last :meth:`probe`; None before either."""
        self._sub: Any = None
        self._reconnects = -1

    @property
    def filtered(self) -> bool:
        return self.filter_subjects != stream_subjects()

    async def _subscribe(self, start_seq: int) -> Any:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        subjects = self.filter_subjects
        cfg = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq,
                             ack_policy=AckPolicy.NONE, inactive_threshold=30.0, mem_storage=True)
        if len(subjects) > 1:
            cfg.filter_subjects = list(subjects)
        return await self.js.pull_subscribe(subjects[0], durable=None, stream=STREAM, config=cfg,
                                            pending_bytes_limit=4 * FETCH_BYTES)

    def _failed(self, what: str, e: BaseException) -> None:
        if self.link is not None:
            self.link.failed(what, e)

    def _ok(self, what: str) -> None:
        if self.link is not None:
            self.link.ok(what)

    async def _drop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            await _quiet_unsubscribe(sub)

    def _reconnected(self) -> bool:
        """True once after nats-py reconnected (the consumer may live on a node that restarted)."""
        nc = getattr(self.js, "_nc", None)
        stats = getattr(nc, "stats", None)
        n = int(stats.get("reconnects", 0)) if isinstance(stats, dict) else 0
        changed = self._reconnects >= 0 and n != self._reconnects
        self._reconnects = n
        return changed

    async def probe(self) -> Pending | None:
        """The current consumer's pending count and last delivered sequence (None without a
        consumer, or when the broker does not answer). A consumer the broker cannot vouch for —
        gone with a restarted node, or on a node that does not answer — is dropped: the next
        fetch creates a new one where the projection stands (cheap, and always safe)."""
        sub = self._sub
        if sub is None:
            return None
        try:
            with anyio.fail_after(5):
                info = await sub.consumer_info()
        except Exception as e:
            self._failed("reading the event stream", e)
            await self._drop()
            return None
        self.pending = int(info.num_pending or 0)
        return Pending(self.pending, int(info.delivered.stream_seq or 0))

    async def batches(self, start_seq: int) -> AsyncIterator[list[Record]]:
        """Yield lists of records from ``start_seq`` on, forever; an empty list when idle (or
        while the broker is unreachable: nothing the broker does ends this)."""
        import nats.errors

        what = "reading the event stream"
        next_seq = max(1, start_seq)
        avg = 1024.0
        delays = backoff_delays()
        idle_since = time.monotonic()
        try:
            while True:
                if self._reconnected() and self._sub is not None:
                    await self._drop()
                if self._sub is None:
                    try:
                        self._sub = await self._subscribe(next_seq)
                    except Exception as e:  # e.g. a JetStream API timeout while the stream elects a leader
                        self._failed(what, e)
                        await anyio.sleep(next(delays))
                        yield []
                        continue
                    idle_since = time.monotonic()
                want = max(1, min(self.batch_size, int(FETCH_BYTES / max(avg, 1.0))))
                try:
                    msgs = await self._sub.fetch(want, timeout=self.idle_wait)
                except (nats.errors.TimeoutError, TimeoutError):  # nothing new (nats-py raises both kinds)
                    if time.monotonic() - idle_since > CHECK_IDLE_S:
                        idle_since = time.monotonic()
                        await self.probe()  # drops a consumer the broker forgot
                    yield []
                    continue
                except Exception as e:
                    # the consumer vanished (node restart, inactivity), the connection is down...:
                    # start a new one where we were, after a pause
                    self._failed(what, e)
                    await self._drop()
                    await anyio.sleep(next(delays))
                    yield []
                    continue
                delays = backoff_delays()
                idle_since = time.monotonic()
                self._ok(what)
                if not msgs:
                    yield []
                    continue
                records = [to_record(m) for m in msgs]
                self.pending = int(msgs[-1].metadata.num_pending or 0)
                avg = 0.8 * avg + 0.2 * (sum(len(m.data) for m in msgs) / len(msgs))
                next_seq = records[-1].stream_seq + 1
                yield records
        finally:
            with anyio.CancelScope(shield=True):
                await self._drop()


async def batches(js: Any, start_seq: int, *, batch_size: int, idle_wait: float = 0.2
                  ) -> AsyncIterator[list[Record]]:
    """Every run event from ``start_seq`` on (see :meth:`StreamSource.batches`)."""
    async for recs in StreamSource(js, batch_size=batch_size, idle_wait=idle_wait).batches(start_seq):
        yield recs


async def _quiet_unsubscribe(sub: Any) -> None:
    try:
        with anyio.move_on_after(2):
            await sub.unsubscribe()
    except Exception:  # the connection may be gone already; the consumer expires on its own
        return
