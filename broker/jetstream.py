"""Connecting to NATS and creating the log's stream and KV bucket, idempotently."""

from __future__ import annotations

from typing import Any

from .errors import BrokerUnavailable, RunExistsError
from .names import PATHS_BUCKET, STREAM, path_key, stream_subjects

DUPLICATE_WINDOW_S = 10 * 60


async def connect(url: str, *, creds: str | None = None, token: str | None = None,
                  user: str | None = None, password: str | None = None, name: str = "runstream",
                  connect_timeout: float = 5.0, **options: Any) -> Any:
    """Open a NATS connection; raise :class:`BrokerUnavailable` with the URL when nobody answers."""
    import nats

    # One attempt for the first connection (nats-py would otherwise retry it forever and never
    # raise); once connected, reconnect without limit so an outage is ridden out.
    kwargs: dict[str, Any] = {"servers": [url], "name": name, "connect_timeout": connect_timeout,
                              "allow_reconnect": True, "max_reconnect_attempts": 1,
                              "reconnect_time_wait": 0.2}
    if creds:
        kwargs["user_credentials"] = creds
    if token:
        kwargs["token"] = token
    if user:
        kwargs["user"] = user
        kwargs["password"] = password
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
    """Create (or leave alone) the event stream and the path bucket."""
    from nats.js.api import DiscardPolicy, StorageType, StreamConfig
    from nats.js.errors import NotFoundError

    cfg = StreamConfig(
        name=STREAM,
        subjects=stream_subjects(),
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_S,
        discard=DiscardPolicy.OLD,
        num_replicas=replicas,
        allow_direct=True,
    )
    try:
        await js.stream_info(STREAM)
    except NotFoundError:
        try:
            await js.add_stream(cfg)
        except Exception:
            await js.stream_info(STREAM)  # created concurrently by another process
    try:
        await js.key_value(PATHS_BUCKET)
    except Exception:
        try:
            await js.create_key_value(bucket=PATHS_BUCKET, history=1, replicas=replicas)
        except Exception:
            await js.key_value(PATHS_BUCKET)


async def claim_path(js: Any, entity: str, project: str, run_id: str, run_uid: str) -> None:
    """Atomically register ``entity/project/run_id`` → ``run_uid``; RunExistsError if taken."""
    from nats.js.errors import KeyWrongLastSequenceError

    kv = await js.key_value(PATHS_BUCKET)
    try:
        await kv.create(path_key(entity, project, run_id), run_uid.encode())
    except KeyWrongLastSequenceError as e:
        raise RunExistsError(f"{entity}/{project}/{run_id}") from e


async def resolve_path(js: Any, entity: str, project: str, run_id: str) -> str | None:
    """The uid registered for a path, or None."""
    from nats.js.errors import KeyNotFoundError

    kv = await js.key_value(PATHS_BUCKET)
    try:
        entry = await kv.get(path_key(entity, project, run_id))
    except KeyNotFoundError:
        return None
    return entry.value.decode() if entry.value else None
