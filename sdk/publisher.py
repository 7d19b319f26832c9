"""Publishing spooled events to JetStream in seq order, marking each acknowledged in the spool.

Order matters (a ``summary`` set after a ``log`` must land after it), so events go out one at a time
and the next waits for the previous PubAck. On any failure the same event is retried with the same
``Nats-Msg-Id``; the server drops the copy if the first attempt did land.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .broker.names import msg_id
from .outbox import Outgoing
from .spool import Spool

ACK_TIMEOUT = 5.0


class Publisher:
    def __init__(self, js: Any, spool: Spool, on_error: Callable[[Exception], None] | None = None) -> None:
        self.js = js
        self.spool = spool
        self.run_uid: str = spool.meta["run_uid"]
        self.writer: str = spool.meta["writer"]
        self.on_error = on_error
        self.sent = 0
        self.last_stream_seq = 0

    async def publish(self, ev: Outgoing, *, stop: asyncio.Event | None = None,
                      deadline: float | None = None) -> bool:
        """Publish one event until acknowledged; False if ``deadline`` (loop time) passes first."""
        loop = asyncio.get_running_loop()
        delay = 0.05
        headers = {"Nats-Msg-Id": msg_id(self.run_uid, self.writer, ev.seq)}
        while True:
            try:
                ack = await self.js.publish(ev.subject, ev.payload, timeout=ACK_TIMEOUT, headers=headers)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # nats-py raises timeouts, no-responders, reconnecting...
                if self.on_error:
                    self.on_error(e)
                if deadline is not None and loop.time() + delay > deadline:
                    return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self.last_stream_seq = max(self.last_stream_seq, int(getattr(ack, "seq", 0) or 0))
            if ev.seq > self.spool.acked:
                self.spool.set_acked(ev.seq)
            self.sent += 1
            return True
