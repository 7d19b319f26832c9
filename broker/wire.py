"""The NATS client protocol, as pure functions on bytes: what the SDK's small client speaks.

Only what a publisher (and a listener on control subjects) needs: ``CONNECT``, ``PING``/``PONG``,
``SUB``/``UNSUB``, ``PUB``/``HPUB`` and parsing
``INFO``, ``MSG``, ``HMSG``, ``+OK``, ``-ERR``. Encoding and parsing are tested without a server.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

CRLF = b"\r\n"
HEADER_LINE = b"NATS/1.0"


class Msg(NamedTuple):
    subject: str
    sid: str
    reply: str | None
    headers: dict[str, str]
    status: int | None
    """Status code of a header-only control reply (``503`` no responders), else None."""
    payload: bytes


def connect_cmd(options: dict[str, Any]) -> bytes:
    return b"CONNECT " + json.dumps(options, separators=(",", ":")).encode() + CRLF


def sub_cmd(subject: str, sid: str) -> bytes:
    return f"SUB {subject} {sid}\r\n".encode()


def unsub_cmd(sid: str, max_msgs: int | None = None) -> bytes:
    """``UNSUB`` of a subscription (after ``max_msgs`` more messages when given)."""
    return f"UNSUB {sid}{f' {int(max_msgs)}' if max_msgs is not None else ''}\r\n".encode()


def encode_headers(headers: dict[str, str]) -> bytes:
    lines = [HEADER_LINE]
    for k, v in headers.items():
        if any(c in k for c in ":\r\n") or any(c in v for c in "\r\n"):
            raise ValueError(f"illegal header {k!r}: {v!r}")
        lines.append(f"{k}: {v}".encode())
    return CRLF.join(lines) + CRLF + CRLF


def pub_cmd(subject: str, payload: bytes, reply: str | None = None,
            headers: dict[str, str] | None = None) -> bytes:
    """``PUB`` (or ``HPUB`` when there are headers) with its payload, ready to send."""
    if not subject or any(c in subject for c in " \t\r\n"):
        raise ValueError(f"illegal subject {subject!r}")
    r = f" {reply}" if reply else ""
    if headers:
        hdr = encode_headers(headers)
        head = f"HPUB {subject}{r} {len(hdr)} {len(hdr) + len(payload)}\r\n".encode()
        return b"".join((head, hdr, payload, CRLF))
    return b"".join((f"PUB {subject}{r} {len(payload)}\r\n".encode(), payload, CRLF))


def parse_headers(raw: bytes) -> tuple[int | None, dict[str, str]]:
    """``NATS/1.0[ status]\\r\\nK: V\\r\\n...\\r\\n\\r\\n`` → (status, headers)."""
    lines = raw.split(CRLF)
    first = lines[0]
    if not first.startswith(HEADER_LINE):
        raise ValueError(f"bad header block start {first[:20]!r}")
    rest = first[len(HEADER_LINE):].strip()
    status = int(rest.split()[0]) if rest and rest.split()[0].isdigit() else None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        k, _, v = line.decode().partition(":")
        headers[k.strip()] = v.strip()
    return status, headers


class Parser:
    """Incremental parser: feed bytes, take complete operations.

    Operations come out as ``("MSG", Msg)``, ``("INFO", dict)``, ``("PING", None)``,
    ``("PONG", None)``, ``("OK", None)``, ``("ERR", str)``.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pending: tuple[list[str], int, int] | None = None  # (args, header bytes, total bytes)

    def feed(self, data: bytes) -> list[tuple[str, Any]]:
        self._buf += data
        out: list[tuple[str, Any]] = []
        while True:
            if self._pending is not None:
                args, hdr_len, total = self._pending
                if len(self._buf) < total + 2:
                    return out
                body = bytes(self._buf[:total])
                del self._buf[:total + 2]
                self._pending = None
                status, headers = parse_headers(body[:hdr_len]) if hdr_len else (None, {})
                reply = args[2] if len(args) == 3 else None
                out.append(("MSG", Msg(args[0], args[1], reply, headers, status, body[hdr_len:])))
                continue
            end = self._buf.find(CRLF)
            if end < 0:
                return out
            line = bytes(self._buf[:end]).decode()
            del self._buf[:end + 2]
            op, _, rest = line.partition(" ")
            op = op.upper()
            if op == "MSG":
                parts = rest.split()
                self._pending = (parts[:-1], 0, int(parts[-1]))
            elif op == "HMSG":
                parts = rest.split()
                self._pending = (parts[:-2], int(parts[-2]), int(parts[-1]))
            elif op == "INFO":
                out.append(("INFO", json.loads(rest)))
            elif op == "PING":
                out.append(("PING", None))
            elif op == "PONG":
                out.append(("PONG", None))
            elif op == "+OK":
                out.append(("OK", None))
            elif op == "-ERR":
                out.append(("ERR", rest.strip().strip("'")))
            elif line:
                raise ValueError(f"unexpected protocol line {line[:60]!r}")
