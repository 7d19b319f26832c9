"""Subject and key naming: pure functions, tested on strings.

Every user-supplied name (entity, project, run id) is *encoded* before it becomes part of a NATS
subject or a KV key, so any legal name survives: dots, spaces, unicode, ``*`` and ``>``.

The encoding keeps ``[A-Za-z0-9_-]`` as is and writes every other UTF-8 byte as ``=HH`` (upper-case
hex). ``=`` itself is escaped, so decoding is unambiguous. The result is legal both as a NATS subject
token and as a JetStream KV key segment (``[-/_=.a-zA-Z0-9]``).
"""

from __future__ import annotations

import os
import re
import string
from typing import Any

STREAM = "RUNSTREAM"
"""The one JetStream stream holding every run event."""

SUBJECT_PREFIX = "rs"
PATHS_BUCKET = "rs_paths"
"""KV bucket ``<entity>.<project>.<run_id>`` → run uid; create-if-absent makes ids unique."""

CONTROL_PREFIX = "rsctl"
"""Control and RPC subjects (stop requests, queries): never in the stream."""

_SAFE = frozenset(string.ascii_letters + string.digits + "_-")
_ESCAPED = re.compile(r"=([0-9A-F]{2})")
_UID_RE = re.compile(r"^[0-9a-z]{20,40}$")
_ID_ALPHABET = string.ascii_lowercase + string.digits
_FORBIDDEN_ID_CHARS = set(":;,#?/'")


def encode_token(name: str) -> str:
    """Encode an arbitrary name as one subject token / KV key segment."""
    if not name:
        raise ValueError("a name must not be empty")
    if all(c in _SAFE for c in name):
        return name
    out: list[str] = []
    for ch in name:
        if ch in _SAFE:
            out.append(ch)
        else:
            out.extend(f"={b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


def decode_token(token: str) -> str:
    """Invert :func:`encode_token`."""
    if "=" not in token:
        return token
    raw = bytearray()
    i = 0
    while i < len(token):
        ch = token[i]
        if ch == "=":
            m = _ESCAPED.match(token, i)
            if m is None:
                raise ValueError(f"malformed encoded token {token!r} at position {i}")
            raw.append(int(m.group(1), 16))
            i += 3
        else:
            raw.extend(ch.encode("ascii"))
            i += 1
    return raw.decode("utf-8")


def run_subject(entity: str, run_uid: str, kind: str) -> str:
    """The subject of one event: ``rs.<entity>.run.<run_uid>.<kind>``."""
    return f"{SUBJECT_PREFIX}.{encode_token(entity)}.run.{run_uid}.{kind}"


def run_subjects(run_uid: str) -> str:
    """Wildcard subject matching every event of one run, whatever its entity."""
    return f"{SUBJECT_PREFIX}.*.run.{run_uid}.*"


def stream_subjects() -> list[str]:
    return [f"{SUBJECT_PREFIX}.*.run.*.*"]


def parse_subject(subject: str) -> tuple[str, str, str]:
    """``rs.<entity>.run.<uid>.<kind>`` → ``(entity, uid, kind)``; ValueError if not one."""
    parts = subject.split(".")
    if len(parts) != 5 or parts[0] != SUBJECT_PREFIX or parts[2] != "run":
        raise ValueError(f"not a run event subject: {subject!r}")
    return decode_token(parts[1]), parts[3], parts[4]


def path_key(entity: str, project: str, run_id: str) -> str:
    """KV key of a run path in :data:`PATHS_BUCKET`."""
    return ".".join(encode_token(p) for p in (entity, project, run_id))


DUPLICATE_WINDOW_NS = 10 * 60 * 1_000_000_000
"""How long JetStream remembers message ids (dedup); the projector dedupes beyond it."""


def stream_config(replicas: int = 1) -> dict[str, Any]:
    """The event stream's JetStream configuration (JSON, as the API takes it)."""
    return {"name": STREAM, "subjects": stream_subjects(), "retention": "limits", "storage": "file",
            "discard": "old", "num_replicas": replicas, "duplicate_window": DUPLICATE_WINDOW_NS,
            "allow_direct": True, "max_msgs": -1, "max_bytes": -1, "max_age": 0, "max_msg_size": -1}


def paths_bucket_config(replicas: int = 1) -> dict[str, Any]:
    """The path → uid KV bucket's stream, laid out as JetStream KV clients expect (one value per
    key, no deletes: ids are never reused)."""
    return {"name": f"KV_{PATHS_BUCKET}", "subjects": [f"$KV.{PATHS_BUCKET}.>"], "retention": "limits",
            "storage": "file", "discard": "new", "num_replicas": replicas, "max_msgs_per_subject": 1,
            "allow_rollup_hdrs": True, "deny_delete": True, "allow_direct": True, "max_msgs": -1,
            "max_bytes": -1, "max_age": 0, "max_msg_size": -1, "duplicate_window": 120 * 1_000_000_000}


def control_subject(entity: str, run_uid: str, verb: str) -> str:
    """A run's control subject ``rsctl.run.<entity>.<run_uid>.<verb>``: it carries the entity so the
    broker lets only those who may write the entity send (or listen for) its stop requests."""
    return f"{CONTROL_PREFIX}.run.{encode_token(entity)}.{run_uid}.{verb}"


def inbox_prefix(user: str | None) -> str:
    """The reply-inbox prefix of a connection: ``_INBOX.<user>``, the only inbox the broker lets a
    user's key read (:mod:`.nats_auth`), so no one reads another's replies."""
    return f"_INBOX.{user}" if user else "_INBOX"


def new_run_uid() -> str:
    """Immutable internal run key: 26 chars of [0-9a-z], time-ordered prefix then randomness."""
    import time

    ms = int(time.time() * 1000)
    head = _base36(ms).rjust(10, "0")
    return head + _random_chars(16)


def is_run_uid(value: str) -> bool:
    return bool(_UID_RE.match(value))


def new_run_id() -> str:
    """W&B-style run id: 8 characters of a-z0-9."""
    return _random_chars(8)


def new_writer_id() -> str:
    return "w" + _random_chars(11)


def validate_run_id(run_id: str) -> str:
    """Check a user-supplied run id the way W&B does; return it or raise ValueError."""
    if not isinstance(run_id, str) or not run_id:
        raise ValueError("run id must be a non-empty string")
    if run_id != run_id.strip():
        raise ValueError(f"run id {run_id!r} must not start or end with whitespace")
    bad = sorted(set(run_id) & _FORBIDDEN_ID_CHARS)
    if bad:
        raise ValueError(
            f"run id {run_id!r} contains forbidden characters {''.join(bad)!r}; "
            "ids may not contain any of : ; , # ? / '"
        )
    if len(run_id) > 128:
        raise ValueError(f"run id is {len(run_id)} characters long; the limit is 128")
    if run_id in DOT_NAMES:
        raise ValueError(f"run id {run_id!r} is not allowed ('.' and '..' name folders, not runs)")
    return run_id


DOT_NAMES = frozenset({".", ".."})
"""Names refused for entities, projects and run ids: in a path they mean this or the parent folder."""


def validate_name(kind: str, value: str) -> str:
    """Entity and project names: any non-empty text without surrounding whitespace or '/', other
    than ``.`` and ``..``."""
    if not isinstance(value, str) or not value or value != value.strip():
        raise ValueError(f"{kind} name {value!r} must be non-empty text without surrounding whitespace")
    if "/" in value:
        raise ValueError(f"{kind} name {value!r} must not contain '/' (it separates entity/project/run)")
    if value in DOT_NAMES:
        raise ValueError(f"{kind} name {value!r} is not allowed ('.' and '..' name folders in a path)")
    if len(value) > 128:
        raise ValueError(f"{kind} name is {len(value)} characters long; the limit is 128")
    return value


def msg_id(run_uid: str, writer: str, seq: int) -> str:
    """``Nats-Msg-Id`` of an event: the server drops a second publish with the same id."""
    return f"{run_uid}:{writer}:{seq}"


def _random_chars(n: int) -> str:
    """``n`` uniform characters of [a-z0-9] from the OS's CSPRNG (``secrets`` costs 6 ms to import)."""
    out: list[str] = []
    while len(out) < n:
        out.extend(_ID_ALPHABET[b % 36] for b in os.urandom(2 * n) if b < 252)  # 252 = 7 * 36: no bias
    return "".join(out[:n])


def _base36(n: int) -> str:
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append("0123456789abcdefghijklmnopqrstuvwxyz"[r])
    return "".join(reversed(out)) or "0"
