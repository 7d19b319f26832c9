"""Publishing spooled events to JetStream in seq order, marking each acknowledged in the spool.

Order matters (a ``summary`` set after a ``log`` must land after it), so events go out one at a time
and the next waits for the previous PubAck. On any failure the same event is retried with the same
``Nats-Msg-Id``; the server drops the copy if the first attempt did land.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .broker.miniclient import MiniNats
from .broker.names import msg_id
from .outbox import Outgoing
from .spool import Spool

ACK_TIMEOUT = 5.0


def publish_one(client: MiniNats, spool: Spool, ev: Outgoing) -> int:
    """Publish one event and record its ack in the spool; return its stream sequence.

    Raises:
        BrokerError: no ack (connection lost, timeout, stream error). Retrying is safe.
    """
    meta = spool.meta
    ack = client.js_publish(ev.subject, ev.payload, msg_id=msg_id(meta["run_uid"], meta["writer"], ev.seq),
                            timeout=ACK_TIMEOUT)
    if ev.seq > spool.acked:
        spool.set_acked(ev.seq)
    return int(ack.get("seq", 0))


def publish_window(client: MiniNats, spool: Spool, events: list[Outgoing]) -> tuple[int, int]:
    """Publish events back to back and record the acks, in order.

    Returns ``(events acknowledged, last stream sequence)``. Stops at the first event the stream
    refused (raising), so the spool's acked watermark never skips one.
    """
    meta = spool.meta
    acks = client.js_publish_many(
        [(ev.subject, ev.payload, msg_id(meta["run_uid"], meta["writer"], ev.seq)) for ev in events],
        timeout=ACK_TIMEOUT)
    last = 0
    for n, (ev, ack) in enumerate(zip(events, acks, strict=True)):
        err = ack.get("error")
        if err:
            from .broker.miniclient import JetStreamError

            if n:
                return n, last
            raise JetStreamError(int(err.get("code", 0)), int(err.get("err_code", 0)), str(err.get("description")))
        if ev.seq > spool.acked:
            spool.set_acked(ev.seq)
        last = max(last, int(ack.get("seq", 0)))
    return len(events), last


def publish_until_acked(client: MiniNats, spool: Spool, ev: Outgoing, deadline: float,
                        on_error: Callable[[Exception], None] | None = None,
                        pause: threading.Event | None = None) -> int | None:
    """Retry :func:`publish_one` with backoff until acknowledged or ``deadline`` (monotonic) passes.

    Returns the stream sequence, or None if the deadline passed first.
    """
    delay = 0.05
    while True:
        try:
            return publish_one(client, spool, ev)
        except Exception as e:  # connection loss, timeouts, stream errors: all retried
            if on_error:
                on_error(e)
            client.close()
            if time.monotonic() + delay > deadline:
                return None
            (pause or threading.Event()).wait(delay)
            delay = min(delay * 2, 2.0)
