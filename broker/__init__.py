"""runstream.broker — the log: subjects, event types, codec, streams and KV, the embedded nats-server.

Importing this package is cheap: :mod:`.events` (pydantic) and the NATS client load only when used.
"""

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
