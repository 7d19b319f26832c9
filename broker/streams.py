"""Every JetStream stream runstream keeps, in one place: created at the configured replica count,
raised in place when an existing one has fewer, and reported (replicas, leader, lagging peers).

The event stream and the buckets (paths KV, artifacts KV, the object store) are listed by
:func:`log_stream_configs`; the server calls :func:`ensure_streams` at start, ``runstream status``
shows :func:`stream_report`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("runstream.broker.streams")


def log_stream_configs(replicas: int = 1) -> list[dict[str, Any]]:
    """The configuration (JSON, as the JetStream API takes it) of every stream of the log."""
    from . import artifact_kv, objects
    from .names import paths_bucket_config, stream_config

    return [stream_config(replicas), paths_bucket_config(replicas), artifact_kv.bucket_config(replicas),
            objects.bucket_config(replicas),
            # side-effect claims of the servers (alert deliveries): create-if-absent, one per key,
            # so N server replicas send each alert once (runstream.projector.claims)
            {"name": "KV_rs_claims", "subjects": ["$KV.rs_claims.>"], "retention": "limits", "storage": "file",
             "discard": "new", "num_replicas": replicas, "max_msgs_per_subject": 1, "allow_rollup_hdrs": True,
             "deny_delete": False, "allow_direct": True, "max_msgs": -1, "max_bytes": -1,
             "max_age": 30 * 86400 * 1_000_000_000, "max_msg_size": -1,
             "duplicate_window": 120 * 1_000_000_000}]


class StreamReplicas:
    """What :func:`ensure_streams` did to one stream."""

    __slots__ = ("name", "before", "after", "created")

    def __init__(self, name: str, before: int, after: int, created: bool) -> None:
        self.name, self.before, self.after, self.created = name, before, after, created

    def __repr__(self) -> str:
        return f"StreamReplicas({self.name!r}, {self.before} -> {self.after}, created={self.created})"


async def ensure_streams(js: Any, replicas: int,
                         configs: list[dict[str, Any]] | None = None,
                         say: Callable[[str], None] | None = None) -> list[StreamReplicas]:
    """Create each stream that is missing, and raise each one that has fewer than ``replicas``.

    JetStream changes ``num_replicas`` of a live stream in place (the new peers catch up from the
    leader); a stream with *more* replicas than asked is left alone (lowering is an operator's
    decision). Each change is logged (and passed to ``say``).

    Args:
        js: a nats-py JetStream context.
        replicas: the wanted replica count (``RUNSTREAM_STREAM_REPLICAS``).
        configs: the streams (default: :func:`log_stream_configs`).
    """
    from nats.js.api import StreamConfig
    from nats.js.errors import NotFoundError

    done: list[StreamReplicas] = []
    for cfg in configs or log_stream_configs(replicas):
        cfg = dict(cfg, num_replicas=replicas)
        name = cfg["name"]
        try:
            info = await js.stream_info(name)
        except NotFoundError:
            try:
                await js.add_stream(StreamConfig.from_response(dict(cfg)))
                done.append(StreamReplicas(name, 0, replicas, True))
                continue
            except Exception:
                info = await js.stream_info(name)  # created concurrently by another process
        have = int(info.config.num_replicas or 1)
        if have < replicas:
            new = info.config
            new.num_replicas = replicas
            await js.update_stream(new)
            msg = f"stream {name}: replicas raised from {have} to {replicas} (RUNSTREAM_STREAM_REPLICAS)"
            log.warning(msg)
            if say is not None:
                say(msg)
            done.append(StreamReplicas(name, have, replicas, False))
        else:
            done.append(StreamReplicas(name, have, have, False))
    return done


async def stream_report(js: Any, names: list[str] | None = None) -> list[dict[str, Any]]:
    """For each stream: ``name``, ``replicas``, ``messages``, ``bytes``, ``leader``, ``current``
    (peers in sync), ``lagging`` (peers behind or offline, with their lag), or ``error``."""
    from nats.js.errors import NotFoundError

    out: list[dict[str, Any]] = []
    for name in names or [c["name"] for c in log_stream_configs()]:
        try:
            info = await js.stream_info(name)
        except NotFoundError:
            out.append({"name": name, "error": "not created yet"})
            continue
        except Exception as e:
            out.append({"name": name, "error": f"{type(e).__name__}: {e}"})
            continue
        row: dict[str, Any] = {"name": name, "replicas": int(info.config.num_replicas or 1),
                               "messages": int(info.state.messages), "bytes": int(info.state.bytes),
                               "leader": None, "current": [], "lagging": []}
        cluster = info.cluster
        if cluster is not None:
            row["leader"] = cluster.leader
            for peer in cluster.replicas or []:
                if peer.current and not peer.offline:
                    row["current"].append(peer.name)
                else:
                    row["lagging"].append({"name": peer.name, "lag": peer.lag, "offline": bool(peer.offline)})
            if cluster.leader:
                row["current"].insert(0, cluster.leader)
        out.append(row)
    return out
