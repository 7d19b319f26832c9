"""runstream.broker — the log: subjects, event types, codec, streams and KV, the embedded nats-server.

Importing this package is cheap: :mod:`.events` (pydantic) and the NATS client load only when used.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .codec import EVENT_TYPES, SCHEMA_VERSION, DecodeError, decode_event, encode_event, envelope
    from .errors import BrokerError, BrokerUnavailable, RunExistsError, ServerStartError
    from .names import (
        PATHS_BUCKET,
        STREAM,
        decode_token,
        encode_token,
        msg_id,
        parse_subject,
        path_key,
        run_subject,
    )
    from .server import NatsServer, find_binary, free_port

_WHERE = {
    **dict.fromkeys(("EVENT_TYPES", "SCHEMA_VERSION", "DecodeError", "decode_event", "encode_event", "envelope"),
                    ".codec"),
    **dict.fromkeys(("BrokerError", "BrokerUnavailable", "RunExistsError", "ServerStartError"), ".errors"),
    **dict.fromkeys(("PATHS_BUCKET", "STREAM", "decode_token", "encode_token", "msg_id", "parse_subject",
                     "path_key", "run_subject"), ".names"),
    **dict.fromkeys(("NatsServer", "find_binary", "free_port"), ".server"),
}


def __getattr__(name: str) -> Any:
    """Load each public name's module on first use: importing a part of the broker stays cheap."""
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'runstream.broker' has no attribute {name!r}")
    return getattr(importlib.import_module(where, __name__), name)


__all__ = [
    "EVENT_TYPES",
    "PATHS_BUCKET",
    "SCHEMA_VERSION",
    "STREAM",
    "BrokerError",
    "BrokerUnavailable",
    "DecodeError",
    "NatsServer",
    "RunExistsError",
    "ServerStartError",
    "decode_event",
    "decode_token",
    "encode_event",
    "encode_token",
    "envelope",
    "find_binary",
    "free_port",
    "msg_id",
    "parse_subject",
    "path_key",
    "run_subject",
]
