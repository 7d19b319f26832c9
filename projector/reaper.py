"""The crash reaper: records a ``crashed`` decision for runs whose heartbeats stopped.

The decision is an event in the log (writer ``reaper``), so a replay reproduces it. Its seq is the
lapsed heartbeat in milliseconds: two reapers (two projector replicas) deciding about the same
lapse publish the same ``Nats-Msg-Id`` and the server keeps one. A publish that fails (the broker
is unreachable, a leader election) is retried at the next check; it never stops the server.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import duckdb

from runstream.broker.codec import encode_event, envelope
from runstream.broker.names import msg_id, run_subject

from .fold import REAPER_WRITER

if TYPE_CHECKING:
    from .resilience import BrokerLink

Publish = Callable[[str, bytes, dict[str, str]], Awaitable[Any]]
"""``publish(subject, payload, headers)``: e.g. a JetStream context's ``publish``."""


class Reaper:
    """Finds running runs silent for longer than ``crash_timeout`` and publishes ``crashed``.

    Args:
        cursor: returns a DuckDB cursor on the projection.
        publish: sends one event to the stream.
        crash_timeout: seconds without any event from the run's writers before it is crashed.
        heartbeat_interval: the SDK's heartbeat period; the reaper checks this often (or every
            ``crash_timeout / 4`` if shorter).
        clock: the current epoch time (tests pass a fake one).
        link: where a failing publish is reported (one log line when it starts, one when it ends).
    """

    def __init__(self, cursor: Callable[[], duckdb.DuckDBPyConnection], publish: Publish, *,
                 crash_timeout: float = 300.0, heartbeat_interval: float = 30.0,
                 clock: Callable[[], float] = time.time, link: BrokerLink | None = None) -> None:
        self._cursor = cursor
        self._link = link
        self._publish = publish
        self.crash_timeout = crash_timeout
        self.interval = min(heartbeat_interval, crash_timeout / 4)
        self.clock = clock

    def stale_runs(self) -> list[tuple[str, str, float]]:
        """``(run_uid, entity, last_heartbeat)`` of running runs silent past the timeout."""
        cutoff = self.clock() - self.crash_timeout
        cur = self._cursor()
        try:
            rows = cur.execute(
                "SELECT run_uid, entity, epoch(coalesce(heartbeat_at, created_at)) FROM runs "
                "WHERE state = 'running' AND epoch(coalesce(heartbeat_at, created_at)) < ? "
                "ORDER BY run_uid", [cutoff]).fetchall()
        finally:
            cur.close()
        return [(uid, entity, float(hb)) for uid, entity, hb in rows if entity is not None]

    async def tick(self) -> list[str]:
        """One check; returns the uids a ``crashed`` event was published for."""
        done = []
        for uid, entity, last_hb in self.stale_runs():
            seq = int(last_hb * 1000)
            env = envelope("crashed", uid, REAPER_WRITER, seq, self.clock(),
                           {"last_heartbeat": last_hb, "timeout": self.crash_timeout})
            await self._publish(run_subject(entity, uid, "crashed"), encode_event(env),
                                {"Nats-Msg-Id": msg_id(uid, REAPER_WRITER, seq)})
            done.append(uid)
        return done

    async def run(self) -> None:
        """Check forever, every ``interval`` seconds; a failed check is retried at the next one."""
        import logging

        while True:
            try:
                with anyio.fail_after(max(self.interval, 5.0)):
                    await self.tick()
            except Exception as e:  # the broker (or the projection, during a replay) is unavailable
                if self._link is not None:
                    self._link.failed("the crash reaper", e)
                else:
                    logging.getLogger("runstream.projector.reaper").warning("crash check failed: %s", e)
            else:
                if self._link is not None:
                    self._link.ok("the crash reaper")
            await anyio.sleep(self.interval)
