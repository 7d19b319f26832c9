"""The query RPC's wire format: subjects, msgpack messages, Arrow IPC payloads. Pure functions.

Three kinds of subjects (ops :data:`OPS`):

* ``rsctl.q.<server name>.<op>`` — *this* server (its health, its replay, its progress): each
  server subscribes to its own name without a queue group, and a second server starting under a
  name that already answers refuses to start.
* ``rsctl.qa.<op>`` — any server holding every entity (:data:`ANY_OPS`: SQL over everything,
  lineage): full servers subscribe in the queue group :data:`QUEUE`, so NATS balances them.
* ``rsctl.qe.<encoded entity>.<op>`` — any server holding that entity (:data:`ENTITY_OPS`): a
  partition (``runstream server --entities a,b``) subscribes to its entities' subjects, a full
  server to ``rsctl.qe.*.<op>``, all in :data:`QUEUE`; NATS routes the request to a holder, and
  "no responders" means nobody holds the entity.

Requests and replies are msgpack maps; a reply is ``{"ok": True, ...}`` or ``{"ok": False, "kind":
..., "error": "message"}``. Control messages like these are not events and never enter the stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgpack

if TYPE_CHECKING:
    import pyarrow as pa

from ..broker.names import CONTROL_PREFIX, encode_token

__all__ = ["ANY_OPS", "ENTITY_OPS", "OPS", "QUEUE", "any_subject", "decode", "encode", "entity_subject",
           "error_reply", "ipc_to_table", "subject", "table_to_ipc"]

OPS = ("sql", "health", "replay", "lineage", "http")
ANY_OPS = ("sql", "lineage", "http")
"""Ops any full server answers (``rsctl.qa.<op>``, balanced)."""
ENTITY_OPS = ("sql", "lineage", "http")
"""Ops any server holding an entity answers (``rsctl.qe.<entity>.<op>``, balanced); ``http`` is an
HTTP request forwarded by a server that does not hold the entity (:mod:`.forward`)."""
QUEUE = "runstream-query"
ALL_ENTITIES = "*"


def _check(op: str, allowed: tuple[str, ...] = OPS) -> None:
    if op not in allowed:
        raise ValueError(f"unknown query op {op!r} here; known: {', '.join(allowed)}")


def subject(name: str, op: str) -> str:
    """The RPC subject of ``op`` on the server called ``name`` (that server only)."""
    _check(op)
    return f"{CONTROL_PREFIX}.q.{encode_token(name)}.{op}"


def any_subject(op: str) -> str:
    """The subject of ``op`` answered by any server holding every entity."""
    _check(op, ANY_OPS)
    return f"{CONTROL_PREFIX}.qa.{op}"


def entity_subject(entity: str, op: str) -> str:
    """The subject of ``op`` about ``entity`` (:data:`ALL_ENTITIES`: the wildcard a full server
    subscribes to)."""
    _check(op, ENTITY_OPS)
    token = ALL_ENTITIES if entity == ALL_ENTITIES else encode_token(entity)
    return f"{CONTROL_PREFIX}.qe.{token}.{op}"


def encode(message: dict[str, Any]) -> bytes:
    return bytes(msgpack.packb(message, use_bin_type=True))


def decode(data: bytes) -> dict[str, Any]:
    """Decode one message; a payload that is not a msgpack map raises ValueError."""
    try:
        message = msgpack.unpackb(data, raw=False)
    except Exception as e:  # msgpack raises several unrelated types for garbage
        raise ValueError(f"not a msgpack message: {e}") from e
    if not isinstance(message, dict):
        raise ValueError(f"expected a msgpack map, got {type(message).__name__}")
    return message


def error_reply(kind: str, message: str) -> dict[str, Any]:
    return {"ok": False, "kind": kind, "error": message}


def table_to_ipc(table: pa.Table) -> bytes:
    """An Arrow table as Arrow IPC stream bytes."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def ipc_to_table(data: bytes) -> pa.Table:
    import pyarrow as pa

    with pa.ipc.open_stream(pa.py_buffer(data)) as reader:
        return reader.read_all()
