"""Reading the stream: an ephemeral JetStream pull consumer positioned by the DuckDB checkpoint.

The consumer uses ``ack_policy=none``: the checkpoint stored with the rows is the position, so
nothing is acknowledged and a restart simply starts a new consumer at ``checkpoint + 1``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio

from runstream.broker.names import STREAM, stream_subjects

from .fold import Record

FETCH_BYTES = 16 * 1024 * 1024
"""Roughly how many payload bytes one fetch asks for (the batch count adapts to message size)."""
MAX_FAILURES = 50
"""Consecutive failed fetches (each followed by a new consumer) before the error surfaces."""


async def last_seq(js: Any) -> int:
    """The stream's last sequence right now."""
    info = await js.stream_info(STREAM)
    return int(info.state.last_seq)


def to_record(msg: Any) -> Record:
    meta = msg.metadata
    return Record(meta.sequence.stream, msg.subject, msg.data, meta.timestamp.timestamp())


async def batches(js: Any, start_seq: int, *, batch_size: int, idle_wait: float = 0.2
                  ) -> AsyncIterator[list[Record]]:
    """Yield lists of records from ``start_seq`` on, forever; an empty list when idle.

    Args:
        js: a JetStream context.
        start_seq: the first stream sequence wanted (checkpoint + 1).
        batch_size: most messages per fetch.
        idle_wait: how long one fetch waits when nothing is pending (bounds the latency).
    """
    import nats.errors
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    next_seq = max(1, start_seq)
    sub = None
    avg = 1024.0
    failures = 0
    try:
        while True:
            if sub is None:
                cfg = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=next_seq,
                                     ack_policy=AckPolicy.NONE, inactive_threshold=30.0,
                                     mem_storage=True)
                sub = await js.pull_subscribe(stream_subjects()[0], durable=None, stream=STREAM, config=cfg,
                                              pending_bytes_limit=4 * FETCH_BYTES)
            want = max(1, min(batch_size, int(FETCH_BYTES / max(avg, 1.0))))
            try:
                msgs = await sub.fetch(want, timeout=idle_wait)
            except nats.errors.TimeoutError:
                yield []
                continue
            except Exception:
                # the consumer vanished (server restart, inactivity): start a new one where we were
                failures += 1
                if failures > MAX_FAILURES:
                    raise
                await _quiet_unsubscribe(sub)
                sub = None
                await anyio.sleep(0.2)
                yield []
                continue
            failures = 0
            if not msgs:
                yield []
                continue
            records = [to_record(m) for m in msgs]
            avg = 0.8 * avg + 0.2 * (sum(len(m.data) for m in msgs) / len(msgs))
            next_seq = records[-1].stream_seq + 1
            yield records
    finally:
        if sub is not None:
            await _quiet_unsubscribe(sub)


async def _quiet_unsubscribe(sub: Any) -> None:
    try:
        await sub.unsubscribe()
    except Exception:  # the connection may be gone already; the consumer expires on its own
        return
