"""Stopping a live run from outside: ask its processes over NATS, record who asked.

The request goes to ``rsctl.run.<entity>.<run_uid>.stop`` (a control message, never in the stream). Every
live writing process of the run subscribes to that subject (see :mod:`runstream.control`), so all
of them get it; each answers with its writer id. The replies are gathered until ``timeout`` for the
first and ``grace`` after the last. When at least one answered, a ``stop_requested`` event
(writer ``api:<random>``) records who asked and which writers acknowledged; when none did (no
responders, or silence), the run is not alive and :class:`~.errors.RunNotAlive` is raised.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

from ..broker.names import control_subject
from .errors import RunNotAlive

__all__ = ["STOP_GRACE_S", "STOP_TIMEOUT_S", "request_stop", "stop_run"]

STOP_TIMEOUT_S = 5.0
"""How long to wait for the first acknowledgement (a live SDK answers within its flush interval)."""
STOP_GRACE_S = 0.5
"""After an acknowledgement, how long to wait for more (several writers in shared mode)."""


async def request_stop(nc: Any, entity: str, run_uid: str, request: Mapping[str, Any], *,
                       timeout: float = STOP_TIMEOUT_S, grace: float = STOP_GRACE_S) -> list[dict[str, Any]]:
    """Send a stop request to every live process of ``run_uid``; return their acknowledgements
    (empty when nobody answered)."""
    import nats.errors

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    acks: list[dict[str, Any]] = []
    try:
        await nc.publish(control_subject(entity, run_uid, "stop"), json.dumps(dict(request)).encode(), reply=inbox)
        wait = timeout
        while True:
            try:
                msg = await sub.next_msg(timeout=wait)
            except nats.errors.TimeoutError:
                break
            if msg.headers and msg.headers.get("Status") == "503":  # no responders: nobody subscribed
                break
            try:
                ack = json.loads(msg.data or b"{}")
            except ValueError:
                ack = {}
            acks.append(ack if isinstance(ack, dict) else {})
            wait = grace
    finally:
        await sub.unsubscribe()
    return acks


async def stop_run(nc: Any, run: Mapping[str, Any], requested_by: str, *, timeout: float = STOP_TIMEOUT_S,
                   grace: float = STOP_GRACE_S) -> dict[str, Any]:
    """Stop ``run`` (a ``runs`` row): ask its live processes, then record ``stop_requested``.

    Returns:
        ``{"writers": [...], "stream_seq": n}``: the writers that acknowledged, the event's seq.

    Raises:
        RunNotAlive: no process of the run answered within ``timeout``.
    """
    from ..broker.codec import encode_event, envelope
    from ..broker.names import msg_id, run_subject

    uid = str(run["run_uid"])
    acks = await request_stop(nc, str(run["entity"]), uid, {"requested_by": requested_by}, timeout=timeout,
                              grace=grace)
    if not acks:
        raise RunNotAlive(f"run {run.get('path') or uid} is not alive (state {run.get('state')}): no process of it "
                          f"answered the stop request within {timeout:g}s; only a running run can be stopped")
    writers = sorted({str(a["writer"]) for a in acks if a.get("writer")})
    writer = f"api:{secrets.token_hex(6)}"
    env = envelope("stop_requested", uid, writer, 0, time.time(), {"requested_by": requested_by, "writers": writers})
    ack = await nc.jetstream().publish(run_subject(str(run["entity"]), uid, "stop_requested"), encode_event(env),
                                       headers={"Nats-Msg-Id": msg_id(uid, writer, 0)})
    return {"writers": writers, "stream_seq": int(ack.seq)}
