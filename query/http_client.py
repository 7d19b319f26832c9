"""A small synchronous client of the server's HTTP API, on the standard library (urllib).

JSON for small answers, Arrow IPC for tables, server-sent events for live streams. Errors come
back as the same classes the server raised (see :mod:`.errors`); an unreachable server raises
:class:`~.errors.ServerUnavailable`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from .errors import ServerUnavailable, error_from_reply

__all__ = ["ARROW", "Event", "HttpClient", "quote_path"]

ARROW = "application/vnd.apache.arrow.stream"


@dataclass(frozen=True)
class Event:
    """One server-sent event: its type, JSON data and id (a step for history)."""

    event: str
    data: Any
    id: str | None = None


def quote_path(*parts: str) -> str:
    """Path segments, each percent-encoded (names may hold spaces, dots, unicode)."""
    return "/".join(urllib.parse.quote(p, safe="") for p in parts)


class HttpClient:
    """Requests to one runstream server.

    Args:
        base_url: e.g. ``http://127.0.0.1:14280``.
        api_key: sent as ``Authorization: Bearer <key>`` when set.
        timeout: seconds for a request (live streams wait without limit between events).
    """

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def _url(self, path: str, params: Mapping[str, Any] | None) -> str:
        query = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        return f"{self.base_url}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")

    def _open(self, method: str, path: str, params: Mapping[str, Any] | None = None, body: Any = None,
              accept: str = "application/json", timeout: float | None = None) -> Any:
        headers = {"Accept": accept}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self._url(path, params), data=data, method=method, headers=headers)
        try:
            return urllib.request.urlopen(req, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as e:
            with e:
                raw = e.read()
            try:
                reply = json.loads(raw)
            except ValueError:
                reply = {"error": raw.decode(errors="replace") or e.reason}
            if not isinstance(reply, dict):
                reply = {"error": str(reply)}
            message = reply.get("error") or reply.get("detail") or e.reason
            raise error_from_reply(reply.get("kind"), f"{message} (HTTP {e.code} from {self.base_url})") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            reason = getattr(e, "reason", e)
            raise ServerUnavailable(f"no runstream server answers at {self.base_url} ({reason}); start one "
                                    "with `runstream up` or `runstream server`, or check RUNSTREAM_API_URL") from e

    def json(self, method: str, path: str, params: Mapping[str, Any] | None = None, body: Any = None) -> Any:
        """A JSON request → the decoded JSON answer."""
        with self._open(method, path, params, body) as resp:
            return json.loads(resp.read())

    def arrow(self, method: str, path: str, params: Mapping[str, Any] | None = None,
              body: Any = None) -> tuple[pa.Table, dict[str, str]]:
        """A request answered in Arrow IPC → the table and the response headers."""
        with self._open(method, path, params, body, accept=ARROW) as resp:
            data = resp.read()
            headers = {k.lower(): v for k, v in resp.headers.items()}
        with pa.ipc.open_stream(pa.py_buffer(data)) as reader:
            return reader.read_all(), headers

    def download(self, path: str, dest: Any, params: Mapping[str, Any] | None = None) -> int:
        """Stream a response body into the binary file object ``dest``, 1 MiB at a time; return the
        bytes written."""
        n = 0
        with self._open("GET", path, params, accept="application/octet-stream") as resp:
            while block := resp.read(1 << 20):
                dest.write(block)
                n += len(block)
        return n

    def events(self, path: str, params: Mapping[str, Any] | None = None,
               timeout: float | None = None) -> Iterator[Event]:
        """Follow a server-sent-events stream until the server ends it."""
        with self._open("GET", path, params, accept="text/event-stream", timeout=timeout) as resp:
            event, ident = "message", None
            data: list[str] = []
            for raw in resp:
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line:
                    if data:
                        yield Event(event, json.loads("\n".join(data)), ident)
                    event, data, ident = "message", [], None
                elif line.startswith(":"):
                    continue
                else:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "event":
                        event = value
                    elif name == "data":
                        data.append(value)
                    elif name == "id":
                        ident = value


def _param(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict | list):
        return json.dumps(v)
    return str(v)
