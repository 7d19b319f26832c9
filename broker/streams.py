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
    from . import artifact_kv, identities, objects
    from .names import paths_bucket_config, stream_config

    return [stream_config(replicas), paths_bucket_config(replicas), artifact_kv.bucket_config(replicas),
            objects.bucket_config(replicas),
            # side-effect claims of the servers (alert deliveries): create-if-absent, one per key,
            # so N server replicas send each alert once (runstream.projector.claims)
            {"name": "KV_rs_claims", "subjects": ["$KV.rs_claims.>"], "retention": "limits", "storage": "file",
             "discard": "new", "num_replicas": replicas, "max_msgs_per_subject": 1, "allow_rollup_hdrs": True,
             "deny_delete": False, "allow_direct": True, "max_msgs": -1, "max_bytes": -1,
             "max_age": 30 * 86400 * 1_000_000_000, "max_msg_size": -1,
             "duplicate_window": 120 * 1_000_000_000},
            # users, teams and API keys (hashes only): runstream.broker.identities
            identities.bucket_config(replicas)]


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


def stream_row(name: str, reply: dict[str, Any]) -> dict[str, Any]:
    """One stream's line of a report, from the JetStream API's ``STREAM.INFO`` reply (JSON):
    ``name``, ``replicas``, ``messages``, ``bytes``, ``leader``, ``current`` (nodes in sync, the
    leader first), ``lagging`` (``{"name", "lag", "offline"}`` of peers behind or down), or
    ``error``. Pure."""
    err = reply.get("error")
    if err:
        text = "not created yet" if err.get("err_code") == 10059 else str(err.get("description") or err)
        return {"name": name, "error": text}
    config, state = reply.get("config") or {}, reply.get("state") or {}
    row: dict[str, Any] = {"name": name, "replicas": int(config.get("num_replicas") or 1),
                           "messages": int(state.get("messages") or 0), "bytes": int(state.get("bytes") or 0),
                           "leader": None, "current": [], "lagging": []}
    cluster = reply.get("cluster") or {}
    if cluster.get("leader"):
        row["leader"] = cluster["leader"]
        row["current"].append(cluster["leader"])
    for peer in cluster.get("replicas") or []:
        if peer.get("current") and not peer.get("offline"):
            row["current"].append(peer.get("name"))
        else:
            row["lagging"].append({"name": peer.get("name"), "lag": int(peer.get("lag") or 0),
                                   "offline": bool(peer.get("offline"))})
    return row


def stream_names() -> list[str]:
    return [str(c["name"]) for c in log_stream_configs()]


def stream_report(client: Any, names: list[str] | None = None) -> list[dict[str, Any]]:
    """:func:`stream_row` of every stream of the log, over a blocking
    :class:`~runstream.broker.miniclient.MiniNats` (for the CLI)."""
    import json

    out = []
    for name in names or stream_names():
        try:
            msg = client.request(f"$JS.API.STREAM.INFO.{name}", b"{}", timeout=5.0)
            out.append(stream_row(name, json.loads(msg.payload or b"{}")))
        except Exception as e:  # one stream's failure (no leader right now) must not hide the others
            out.append({"name": name, "error": f"{type(e).__name__}: {e}"})
    return out


def report_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The ``runstream status`` text of :func:`stream_report`'s rows. Pure."""
    lines = []
    for r in rows:
        if "error" in r:
            lines.append(f"  {r['name']:<16} {r['error']}")
            continue
        lag = ", ".join(f"{p['name']} {'offline' if p['offline'] else 'behind'} (lag {p['lag']})"
                        for p in r["lagging"])
        lines.append(f"  {r['name']:<16} R{r['replicas']}  {r['messages']} msgs  "
                     f"leader {r['leader'] or '-'}  current {len(r['current'])}/{r['replicas']}"
                     + (f"  lagging: {lag}" if lag else ""))
    return lines
