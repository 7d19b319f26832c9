"""NATS URL lists: ``RUNSTREAM_NATS_URL`` may name several servers of one cluster, comma-separated.

Pure functions, tested on strings. Every client (the SDK's :mod:`.miniclient`, nats-py through
:func:`.jetstream.connect`) takes the same text and splits it here.
"""

from __future__ import annotations

from urllib.parse import urlparse

DEFAULT_PORT = 4222


def split_urls(value: str) -> list[str]:
    """``"nats://a:1, nats://b:2,c:3"`` → ``["nats://a:1", "nats://b:2", "nats://c:3"]``.

    Blank items are dropped and a URL without a scheme gets ``nats://``; order is kept (the first
    is tried first) and duplicates are removed.

    Raises:
        ValueError: nothing but blanks, or an item that is not ``[scheme://][user[:pass]@]host[:port]``.
    """
    out: list[str] = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        url = item if "://" in item else f"nats://{item}"
        u = urlparse(url)
        if u.scheme not in ("nats", "tls", "ws", "wss") or not u.hostname:
            raise ValueError(f"not a NATS URL: {item!r} (expected nats://host:port, comma-separated for a cluster)")
        try:
            u.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as e:
            raise ValueError(f"bad port in NATS URL {item!r}: {e}") from e
        if url not in out:
            out.append(url)
    if not out:
        raise ValueError(f"no NATS URL in {value!r}")
    return out


def host_port(url: str) -> tuple[str, int]:
    """``(host, port)`` of one URL (port 4222 when it names none)."""
    u = urlparse(url if "://" in url else f"nats://{url}")
    return u.hostname or "127.0.0.1", u.port or DEFAULT_PORT


def advertised(connect_urls: list[str] | None, scheme: str = "nats") -> list[str]:
    """The cluster's advertised client addresses (INFO's ``connect_urls``, ``host:port`` items) as
    URLs with ``scheme``."""
    out = []
    for item in connect_urls or []:
        item = str(item).strip()
        if item:
            out.append(item if "://" in item else f"{scheme}://{item}")
    return out
