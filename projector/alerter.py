"""Alert delivery: the server reads pending alerts from the projection, sends them through the
configured sinks and records each attempt's outcome as an ``alert_delivery`` event.

Like the crash reaper, it decides from the projection and publishes its decisions to the log, so
``alert_deliveries`` is a fold of events and a replay reproduces it without sending anything.
It acts only on a projection that holds everything it published itself (and, at start, the whole
stream): the checkpoint and the alerts are read in one snapshot, and while a replay or a lag keeps
the checkpoint below that mark, nothing is sent. Each (alert, sink) is delivered in its own task
with a time limit, so a slow or dead sink never holds up other alerts; a failed attempt is retried
after ``backoff`` seconds, doubling, up to ``attempts`` attempts, then recorded ``failed``.

Replicas: every server with sinks configured sees the same pending alerts, so before sending, a
server claims the attempt — (alert, sink, attempt) — in the ``rs_claims`` KV bucket with
create-if-absent (:mod:`.claims`); only the one whose claim JetStream accepted sends it and records
the outcome, which every replica then folds. Configure the same sinks on every replica.

Delivery is at least once: a server killed between sending and recording leaves its claim; once
the claim is stale (``timeout`` + 2 minutes) another server (or the same one restarted) takes it
over and sends again.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import anyio
import anyio.abc
import duckdb

from runstream.broker.codec import encode_event, envelope
from runstream.broker.names import msg_id, run_subject

from .claims import Claims
from .errors import DeliveryError
from .resilience import BrokerLink
from .sinks import Alert, Sink

__all__ = ["ALERTER_WRITER", "Alerter", "Delivery", "delivery_seq"]

log = logging.getLogger("runstream.projector.alerter")

ALERTER_WRITER = "alerter"
"""Writer id of ``alert_delivery`` events."""

Publish = Callable[[str, bytes, dict[str, str]], Awaitable[Any]]

_PENDING_SQL = """
SELECT a.run_uid, r.entity, coalesce(r.path, a.run_uid), r.name, a.alert_id, a.title, a.text, a.level,
       a.timestamp,
       list(struct_pack(sink := d.sink, status := d.status, attempts := d.attempts, at := d.attempted_at))
           FILTER (WHERE d.sink IS NOT NULL) AS tried
FROM alerts a JOIN runs r ON r.run_uid = a.run_uid
LEFT JOIN alert_deliveries d ON d.run_uid = a.run_uid AND d.alert_id = a.alert_id
WHERE NOT coalesce(a.throttled, false) AND r.entity IS NOT NULL
GROUP BY ALL
HAVING count(d.sink) FILTER (WHERE d.status IN ('delivered', 'failed')) < ?
   AND (a.timestamp >= ? OR count(d.sink) > 0)
ORDER BY a.timestamp, a.alert_id
"""


class Delivery(NamedTuple):
    """One attempt to make: ``alert`` to ``sink``, attempt number ``attempt`` (from 1)."""

    alert: Alert
    entity: str
    sink: Sink
    attempt: int


def delivery_seq(alert_id: str, sink: str, attempt: int) -> int:
    """The event seq of one attempt's outcome: the same attempt always gets the same message id,
    so a re-published outcome is dropped by the stream's dedup and the projector's."""
    digest = hashlib.blake2b(f"{alert_id}\0{sink}\0{attempt}".encode(), digest_size=7).digest()
    return int.from_bytes(digest, "big")


class Alerter:
    """Delivers alerts found in the projection through ``sinks``.

    Args:
        cursor: returns a DuckDB cursor on the projection.
        publish: sends one event to the stream and returns its PubAck (with ``seq``).
        sinks: where alerts go.
        last_seq: the stream's last sequence now (the starting mark, see the module docstring).
        checkpoint_name: the projection's name in ``projector_checkpoint``.
        attempts, backoff, timeout, max_age: see the ``alert_*`` settings.
        interval: seconds between looks at the projection.
        clock: epoch time (tests pass a fake one).
        claims: claim each attempt before making it (replicas send each alert once); None: no claims.
        position: the projector's position (a partition's is past its checkpoint: the events
            after it are other entities'); default: the checkpoint alone.
        link: where broker failures are reported (one log line per outage).
    """

    def __init__(self, cursor: Callable[[], duckdb.DuckDBPyConnection], publish: Publish, sinks: list[Sink], *,
                 last_seq: Callable[[], Awaitable[int]], checkpoint_name: str = "main", attempts: int = 5,
                 backoff: float = 2.0, timeout: float = 10.0, max_age: float = 86400.0, interval: float = 0.25,
                 clock: Callable[[], float] = time.time, concurrency: int = 8,
                 claims: Claims | None = None, position: Callable[[], int] | None = None,
                 link: BrokerLink | None = None) -> None:
        self.claims = claims
        self._link = link
        self._unrecorded: dict[tuple[str, str, str, int], tuple[str, bytes, dict[str, str]]] = {}
        """Outcomes sent but not recorded yet (the broker was down): recorded again, never re-sent."""
        self._position = position
        self._lost: dict[tuple[str, str, str, int], float] = {}
        """Attempts another replica claimed (not asked again until its claim could be stale)."""
        self.skipped = 0
        """Attempts left to another replica that claimed them first."""
        self._cursor = cursor
        self._publish = publish
        self.sinks = list(sinks)
        self._last_seq = last_seq
        self.checkpoint_name = checkpoint_name
        self.attempts = max(1, int(attempts))
        self.backoff = max(0.0, float(backoff))
        self.timeout = float(timeout)
        self.max_age = float(max_age)
        self.interval = interval
        self.clock = clock
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._inflight: set[tuple[str, str, str]] = set()
        self.mark = 0
        """Stream seq the projection must have reached before the alerter acts on it."""
        self.sent = 0
        """Attempts made by this object (delivered or not)."""

    # -- deciding (blocking: runs in a worker thread) -------------------------------------------

    def due(self, now: float) -> list[Delivery] | None:
        """The attempts to make now; None while the projection is below :attr:`mark`."""
        position = self._position() if self._position is not None else 0  # read before the snapshot
        cur = self._cursor()
        try:
            cur.execute("BEGIN TRANSACTION READ ONLY")
            try:
                row = cur.execute("SELECT stream_seq FROM projector_checkpoint WHERE name = ?",
                                  [self.checkpoint_name]).fetchone()
                if max(int(row[0]) if row else 0, position) < self.mark:
                    return None
                rows = cur.execute(_PENDING_SQL, [len(self.sinks), now - self.max_age]).fetchall()
            finally:
                cur.execute("COMMIT")
        finally:
            cur.close()
        out: list[Delivery] = []
        for uid, entity, path, name, aid, title, text, level, ts, tried in rows:
            alert = Alert(uid, path, name, aid, title, text or "", level, float(ts))
            by_sink = {t["sink"]: t for t in tried or []}
            for sink in self.sinks:
                t = by_sink.get(sink.name)
                if t is None:
                    if ts >= now - self.max_age:
                        out.append(Delivery(alert, entity, sink, 1))
                    continue
                attempts = int(t["attempts"] or 0)
                if t["status"] != "retrying" or attempts >= self.attempts:
                    continue
                if now >= float(t["at"] or 0.0) + self.backoff * 2 ** (attempts - 1):
                    out.append(Delivery(alert, entity, sink, attempts + 1))
        return out

    # -- acting ----------------------------------------------------------------------------------

    async def tick(self, tg: anyio.abc.TaskGroup) -> list[Delivery]:
        """Start the attempts due now in ``tg`` (not those already in flight); return them."""
        mark = self.mark
        try:
            due = await anyio.to_thread.run_sync(self.due, self.clock())
        except duckdb.Error as e:  # e.g. a replay recreating the tables
            log.warning("alert delivery: cannot read the projection: %s", e)
            return []
        if self.mark != mark:
            # an outcome was recorded while due() read the projection: its answer may still list
            # that attempt (read before the outcome, finished after the attempt left the in-flight
            # set), and it would be made again. Ask again at the next look.
            return []
        if self.claims is not None and self._lost:
            old = self.clock() - self.claims.stale_after
            self._lost = {k: t for k, t in self._lost.items() if t >= old}
        started = []
        for d in due or []:
            key = (d.alert.run_uid, d.alert.alert_id, d.sink.name)
            if key in self._inflight:
                continue
            lost_at = self._lost.get((*key, d.attempt))
            if lost_at is not None and self.claims is not None and self.clock() - lost_at < self.claims.stale_after:
                continue
            self._inflight.add(key)
            tg.start_soon(self._deliver, d, key)
            started.append(d)
        return started

    async def _claim(self, d: Delivery) -> bool:
        """Whether this server makes the attempt (it claimed it, or there are no replicas' claims)."""
        if self.claims is None:
            return True
        if await self.claims.claim("alert", d.alert.run_uid, d.alert.alert_id, d.sink.name, str(d.attempt)):
            return True
        self._lost[(d.alert.run_uid, d.alert.alert_id, d.sink.name, d.attempt)] = self.clock()
        self.skipped += 1
        return False

    def _failed(self, what: str, e: BaseException) -> None:
        if self._link is not None:
            self._link.failed(what, e)
        else:
            log.warning("%s failed: %s", what, e)

    async def _deliver(self, d: Delivery, key: tuple[str, str, str]) -> None:
        attempt = (*key, d.attempt)
        try:
            outcome = self._unrecorded.get(attempt)
            if outcome is None:  # not sent yet (an outcome sent but not recorded is only recorded again)
                try:
                    mine = await self._claim(d)
                except Exception as e:  # the broker is unreachable: the next look tries again
                    self._failed("claiming alert deliveries", e)
                    await anyio.sleep(1.0)
                    return
                if self._link is not None:
                    self._link.ok("claiming alert deliveries")
                if not mine:
                    return  # another replica sends it and records the outcome
                error = await self._send(d)
                ok = error is None
                body = {"alert_id": d.alert.alert_id, "sink": d.sink.name, "attempt": d.attempt, "ok": ok,
                        "error": error, "final": ok or d.attempt >= self.attempts}
                uid, seq = d.alert.run_uid, delivery_seq(d.alert.alert_id, d.sink.name, d.attempt)
                env = envelope("alert_delivery", uid, ALERTER_WRITER, seq, self.clock(), body)
                outcome = (run_subject(d.entity, uid, "alert_delivery"), encode_event(env),
                           {"Nats-Msg-Id": msg_id(uid, ALERTER_WRITER, seq)})
                self._unrecorded[attempt] = outcome
                if not ok:
                    log.warning("alert %s of run %s: %s (attempt %d of %d)", d.alert.alert_id, d.alert.path,
                                error, d.attempt, self.attempts)
            try:
                ack = await self._publish(*outcome)
            except Exception as e:
                self._failed("recording alert delivery outcomes", e)
                await anyio.sleep(1.0)
                return
            if self._link is not None:
                self._link.ok("recording alert delivery outcomes")
            self._unrecorded.pop(attempt, None)
            self.mark = max(self.mark, int(getattr(ack, "seq", 0) or 0))
        except Exception:  # a bug must never stop the server
            log.exception("alert %s of run %s: delivery failed; it is tried again", d.alert.alert_id, d.alert.path)
        finally:
            self._inflight.discard(key)

    async def _send(self, d: Delivery) -> str | None:
        """One attempt; the error text, or None when delivered."""
        self.sent += 1
        try:
            with anyio.fail_after(self.timeout + 5):
                await anyio.to_thread.run_sync(d.sink.send, d.alert, limiter=self._limiter, abandon_on_cancel=True)
        except DeliveryError as e:
            return str(e)
        except TimeoutError:
            return f"{d.sink.name}: no answer within {self.timeout + 5:g}s"
        except Exception as e:  # a bug in a sink must never stop the server
            return f"{d.sink.name}: {type(e).__name__}: {e}"
        return None

    async def run(self) -> None:
        """Deliver forever: every ``interval`` seconds, start the attempts that are due."""
        self.mark = max(self.mark, await self._last_seq())
        async with anyio.create_task_group() as tg:
            while True:
                await self.tick(tg)
                await anyio.sleep(self.interval)


def start_alerter(tg: anyio.abc.TaskGroup, cursor: Callable[[], duckdb.DuckDBPyConnection], js: Any,
                  last_seq: Callable[[], Awaitable[int]], settings: Any, checkpoint_name: str,
                  position: Callable[[], int] | None = None, link: BrokerLink | None = None) -> Alerter | None:
    """Run an :class:`Alerter` in ``tg`` when ``settings`` configure a sink; return it (or None)."""
    from .sinks import sinks_from_settings

    sinks = sinks_from_settings(settings)
    if not sinks:
        return None

    async def publish(subject: str, payload: bytes, headers: dict[str, str]) -> Any:
        return await js.publish(subject, payload, headers=headers)

    import secrets

    s = settings
    claims = Claims(js, f"{checkpoint_name}:{secrets.token_hex(6)}", stale_after=float(s.alert_timeout) + 120.0)
    alerter = Alerter(cursor, publish, sinks, last_seq=last_seq, checkpoint_name=checkpoint_name,
                      attempts=s.alert_attempts, backoff=s.alert_backoff, timeout=s.alert_timeout,
                      max_age=s.alert_max_age, claims=claims, position=position, link=link)
    log.info("delivering alerts to %s", ", ".join(sink.name for sink in sinks))
    tg.start_soon(alerter.run)
    return alerter
