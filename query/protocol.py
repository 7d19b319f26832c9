"""The query RPC's wire format: subjects, msgpack messages, Arrow IPC payloads. Pure functions.

Subjects are ``rsctl.q.<server name>.<op>`` with ops :data:`OPS`; every server of one name joins
the queue group :data:`QUEUE`, so replicas of a name share the requests. Requests and replies are
msgpack maps; a reply is ``{"ok": True, ...}`` or ``{"ok": False, "kind": ..., "error": "message"}``.
Control messages like these are not events and never enter the stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgpack

if TYPE_CHECKING:
    import pyarrow as pa

from ..broker.names import CONTROL_PREFIX, encode_token

__all__ = ["OPS", "QUEUE", "decode", "encode", "error_reply", "ipc_to_table", "subject", "table_to_ipc"]

OPS = ("sql", "health", "replay", "lineage")
QUEUE = "runstream-query"


def subject(name: str, op: str) -> str:
    """The RPC subject of ``op`` on the server called ``name``."""
    if op not in OPS:
        raise ValueError(f"unknown query op {op!r}; known: {', '.join(OPS)}")
    return f"{CONTROL_PREFIX}.q.{encode_token(name)}.{op}"


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
