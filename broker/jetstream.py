"""Connecting to NATS and creating the log's stream and KV bucket, idempotently."""

from __future__ import annotations

from typing import Any

from .errors import BrokerUnavailable
from .names import paths_bucket_config, stream_config


async def connect(url: str, *, creds: str | None = None, token: str | None = None,
                  user: str | None = None, password: str | None = None, name: str = "runstream",
                  connect_timeout: float = 5.0, **options: Any) -> Any:
    """Open a NATS connection; raise :class:`BrokerUnavailable` with the URL when nobody answers.

    ``url`` may be a comma-separated list of a cluster's nodes: nats-py tries them in order (and
    the nodes the cluster advertises), and reconnects to a live one when its node dies.
    """
    import nats

    from .urls import split_urls

    # One attempt per server for the first connection (nats-py would otherwise retry it forever
    # and never raise); once connected, reconnect without limit so an outage is ridden out.
    kwargs: dict[str, Any] = {"servers": split_urls(url), "name": name, "connect_timeout": connect_timeout,
                              "dont_randomize": True,
                              "allow_reconnect": True, "max_reconnect_attempts": 1,
                              "reconnect_time_wait": 0.2}
    if creds:
        kwargs["user_credentials"] = creds
    if token:
        kwargs["token"] = token
    if user:
        from .names import inbox_prefix

        kwargs["user"] = user
        kwargs["password"] = password
        # a user's key may read replies on its own inbox prefix only (runstream.broker.nats_auth)
        kwargs["inbox_prefix"] = inbox_prefix(user)
    kwargs.update(options)
    forever = "max_reconnect_attempts" not in options
    try:
        nc = await nats.connect(**kwargs, error_cb=_quiet, disconnected_cb=None)
    except Exception as e:
        raise BrokerUnavailable(f"cannot reach NATS at {url}: {e}") from e
    if forever:
        nc.options["max_reconnect_attempts"] = -1
    return nc


async def _quiet(_e: Exception) -> None:
    """nats-py prints every reconnect error by default; the SDK reports outages itself."""


async def ensure_log(js: Any, *, replicas: int = 1) -> None:
    """Create (or leave alone) the event stream and the path bucket (same configuration as the
    SDK's client creates: :func:`~runstream.broker.names.stream_config`)."""
    from nats.js.api import StreamConfig
    from nats.js.errors import NotFoundError

    for cfg in (stream_config(replicas), paths_bucket_config(replicas)):
        try:
            await js.stream_info(cfg["name"])
        except NotFoundError:
            try:
                await js.add_stream(StreamConfig.from_response(dict(cfg)))
            except Exception:
                await js.stream_info(cfg["name"])  # created concurrently by another process
