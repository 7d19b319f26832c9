"""Riding out the broker: retries with backoff and one shared view of the link to NATS.

A server must outlive its broker: a JetStream API timeout while a stream elects a leader, a node
that dies, a connection lost for minutes. Every broker call of the server goes through
:func:`retrying` (or reports to a :class:`BrokerLink` itself), which logs **one** line when an
operation starts failing and one when it recovers — never a line per attempt — and keeps the
broker's state (connected or not, since when, the last error) for ``health``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

__all__ = ["BACKOFF_MAX_S", "BrokerLink", "backoff_delays", "connect_retrying", "is_disk_full", "retrying"]

log = logging.getLogger("runstream.broker.link")

T = TypeVar("T")

BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 5.0


def is_disk_full(error: BaseException) -> bool:
    """An OSError ENOSPC/EDQUOT, or DuckDB's error for one (``Could not write file ...: No space left
    on device``; DuckDB rolls the transaction back and the connection stays usable)."""
    import errno

    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)
    return "No space left on device" in text or "Disk quota exceeded" in text


def backoff_delays(first: float = BACKOFF_FIRST_S, most: float = BACKOFF_MAX_S) -> Any:
    """``first, 2·first, 4·first, ...`` capped at ``most``, forever (pure)."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, most)


class BrokerLink:
    """What the server knows of its broker: connected or not, since when, the last error.

    ``failed(what, e)`` and ``ok(what)`` are called around broker operations; the first failure of
    an operation logs a warning, its recovery logs how long it lasted. ``watch(nc)`` follows the
    connection itself (nats-py reconnects on its own; this only observes and logs it).

    Args:
        url: the NATS URL(s), for the log lines.
        clock: epoch time (tests pass a fake one).
    """

    def __init__(self, url: str, clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self.clock = clock
        self.connected = False
        self.since = clock()
        """When :attr:`connected` last changed."""
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.connected_url: str | None = None
        self._failing: dict[str, tuple[float, int]] = {}  # operation -> (first failure, attempts)

    def failed(self, what: str, error: BaseException) -> None:
        """``what`` failed with ``error``: logged the first time only."""
        text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        self.last_error, self.last_error_at = f"{what}: {text}", self.clock()
        first = what not in self._failing
        start, attempts = self._failing.get(what, (self.clock(), 0))
        self._failing[what] = (start, attempts + 1)
        if first:
            log.warning("%s failed (%s); retrying with backoff (broker %s)", what, text, self.url)

    def ok(self, what: str) -> None:
        """``what`` succeeded: logs the recovery when it had been failing."""
        failing = self._failing.pop(what, None)
        if failing is not None:
            start, attempts = failing
            log.warning("%s recovered after %.1fs (%d failed attempt%s)", what, self.clock() - start, attempts,
                        "" if attempts == 1 else "s")

    @property
    def failing(self) -> list[str]:
        """The operations failing right now."""
        return sorted(self._failing)

    def set_connected(self, connected: bool, url: str | None = None) -> None:
        if connected == self.connected and (url is None or url == self.connected_url):
            return
        if connected and self.connected:  # nats-py moved to another node between two looks
            log.warning("now connected to NATS at %s (was %s)", url, self.connected_url)
            self.connected_url = url
            return
        down_for = self.clock() - self.since
        was = self.connected
        self.connected, self.since = connected, self.clock()
        if url is not None:
            self.connected_url = url
        if connected and not was:
            if self.last_error:
                log.warning("connected to NATS at %s after %.1fs without it", url or self.url, down_for)
            else:
                log.info("connected to NATS at %s", url or self.url)
        elif not connected and was:
            self.last_error, self.last_error_at = f"lost the connection to NATS at {self.connected_url}", self.clock()
            log.warning("lost the connection to NATS at %s: reads are answered from the projection; "
                        "reconnecting", self.connected_url)

    async def watch(self, nc: Any, interval: float = 0.25) -> None:
        """Follow ``nc``'s connection state until cancelled (nats-py reconnects by itself)."""
        while True:
            url = _connected_url(nc)
            self.set_connected(bool(nc.is_connected), url if nc.is_connected else None)
            await anyio.sleep(interval)

    def snapshot(self) -> dict[str, Any]:
        """The ``broker`` section of ``health``."""
        return {"connected": self.connected, "since": self.since, "url": self.connected_url or self.url,
                "last_error": self.last_error, "last_error_at": self.last_error_at, "failing": self.failing}


def _connected_url(nc: Any) -> str | None:
    u = getattr(nc, "connected_url", None)
    if u is None:
        return None
    host, port = getattr(u, "hostname", None), getattr(u, "port", None)
    return f"nats://{host}:{port}" if host else None


async def retrying(what: str, call: Callable[[], Awaitable[T]], link: BrokerLink | None, *,
                   first: float = BACKOFF_FIRST_S, most: float = BACKOFF_MAX_S) -> T:
    """``await call()`` until it succeeds, sleeping with backoff between attempts.

    Failures go to ``link`` (one log line when it starts failing, one when it recovers; without a
    link, one debug line per attempt). Cancellation ends it.
    """
    delays = backoff_delays(first, most)
    while True:
        try:
            result = await call()
        except Exception as e:
            if link is not None:
                link.failed(what, e)
            else:
                log.debug("%s failed: %s", what, e)
            await anyio.sleep(next(delays))
            continue
        if link is not None:
            link.ok(what)
        return result


async def connect_retrying(url: str, link: BrokerLink | None, *, name: str, **options: Any) -> Any:
    """:func:`runstream.broker.jetstream.connect` until NATS answers (a server started before its
    broker waits for it, logging once)."""
    from runstream.broker.jetstream import connect

    nc = await retrying(f"connecting to NATS at {url}", lambda: connect(url, name=name, **options), link)
    if link is not None:
        link.set_connected(True, _connected_url(nc))
    return nc
