"""The local stack under the data directory: ``nats-server`` from the wheel + ``runstream server``.

``<dir>/stack.json`` records the URL and pids; a file lock makes start-up safe when several
processes call ``init()`` at once. Everything here is idempotent: ``up`` on a running stack and
``down`` on a stopped one change nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import StackError
from .settings import Settings

if TYPE_CHECKING:
    import subprocess

# Only the check that init() makes on every run (is the stack up?) is imported eagerly; starting
# and stopping processes loads subprocess, signal and the server launcher when it happens.


class StackStatus(NamedTuple):
    dir: Path
    nats_url: str | None
    nats_pid: int | None
    nats_alive: bool
    server_pid: int | None
    server_alive: bool
    db_path: Path
    http_url: str | None = None
    """The server's HTTP API (``runstream.Api()`` finds it here)."""

    @property
    def running(self) -> bool:
        return self.nats_alive and self.server_alive

    def as_dict(self) -> dict[str, Any]:
        return {"dir": str(self.dir), "nats_url": self.nats_url, "nats_pid": self.nats_pid,
                "nats_alive": self.nats_alive, "server_pid": self.server_pid,
                "server_alive": self.server_alive, "db_path": str(self.db_path), "running": self.running,
                "http_url": self.http_url}


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours is not alive
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


_children: dict[int, subprocess.Popen[bytes]] = {}
"""Detached stack processes started by this process: kept referenced so that Python does not warn
(ResourceWarning) when their Popen objects are collected while they run, and reaped on ``down``."""


def _adopt(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None:
        _children[proc.pid] = proc


def _reap(pid: int) -> None:
    import subprocess

    proc = _children.pop(pid, None)
    if proc is not None:
        try:
            proc.wait(1)
        except subprocess.TimeoutExpired:
            pass


def db_path(settings: Settings) -> Path:
    return settings.dir / "runstream.duckdb"


def _read(settings: Settings) -> dict[str, Any]:
    try:
        return dict(json.loads((settings.dir / "stack.json").read_text()))
    except (OSError, ValueError):
        return {}


def _write(settings: Settings, data: dict[str, Any]) -> None:
    tmp = settings.dir / "stack.json.tmp"
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(settings.dir / "stack.json")


class _locked:
    """Exclusive lock on ``<dir>/stack.lock`` while starting or stopping the stack."""

    def __init__(self, settings: Settings) -> None:
        self.path = settings.dir / "stack.lock"

    def __enter__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a+")
        fcntl.flock(self.fh, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def _port_open(port: int) -> bool:
    """A NATS server answers on 127.0.0.1:port (it greets with INFO)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(("127.0.0.1", port))
            return s.recv(4) == b"INFO"
        except OSError:
            return False


def status(settings: Settings) -> StackStatus:
    data = _read(settings)
    url = data.get("nats_url")
    port = data.get("nats_port")
    nats_pid = data.get("nats_pid")
    server_pid = data.get("server_pid")
    return StackStatus(
        dir=settings.dir,
        nats_url=url,
        nats_pid=nats_pid,
        nats_alive=bool(_alive(nats_pid) and port and _port_open(int(port))),
        server_pid=server_pid,
        server_alive=_alive(server_pid),
        db_path=db_path(settings),
        http_url=data.get("http_url") if _alive(server_pid) else None,
    )


def nats_url(settings: Settings) -> str:
    """The URL to use: the configured cluster, or the local stack's (started if needed)."""
    if settings.nats_url:
        return settings.nats_url
    st = status(settings)
    if st.running and st.nats_url:
        return st.nats_url
    return up(settings).nats_url or ""


def http_url(settings: Settings) -> str:
    """The local stack's HTTP API URL (the stack is started if needed).

    Raises:
        StackError: the server runs without an HTTP API (``http_port = -1``).
    """
    st = status(settings)
    if not (st.running and st.http_url):
        st = up(settings)
    if not st.http_url:
        raise StackError(f"the runstream server under {settings.dir} has no HTTP API (RUNSTREAM_HTTP_PORT=-1?); "
                         "restart it with `runstream down && runstream up`")
    return st.http_url


def server_command(settings: Settings, url: str) -> list[str]:
    return [sys.executable, "-m", "runstream.query.server", "--dir", str(settings.dir), "--nats-url", url]


def up(settings: Settings, timeout: float = 30.0) -> StackStatus:
    """Start whatever part of the local stack is not running; return its status."""
    import subprocess

    from .broker.server import NatsServer, free_port

    if settings.nats_url:
        raise StackError("RUNSTREAM_NATS_URL points at an external NATS server; there is no local stack to start")
    with _locked(settings):
        data = _read(settings)
        st = status(settings)
        if not st.nats_alive:
            old = data.get("nats_pid")
            if old and _alive(old) and _is_nats_server(old):
                _terminate(old)  # ours, not answering: dying (killed a moment ago) or hung; its port is wanted
            # back on the port it had, so that live trainers and the server reconnect to it
            recorded = data.get("nats_port")
            port = free_port(int(recorded) if recorded else settings.port)
            if recorded and port != int(recorded):
                sys.stderr.write(f"runstream: port {recorded} of the local nats-server is taken by another "
                                 f"process; starting it on {port}: runs still connected to the old port "
                                 "keep their events in their spools until `runstream sync`\n")
            srv = NatsServer(settings.dir / "nats", port, detach=True, log_file=settings.dir / "nats-server.log")
            srv.start()
            _adopt(srv.proc)
            old_url = data.get("nats_url")
            data.update(nats_url=srv.url, nats_port=port, nats_pid=srv.pid)
            _write(settings, data)
            if srv.url != old_url:
                data.pop("server_pid", None)
                if st.server_alive and st.server_pid:  # bound to the old URL: restart it
                    _terminate(st.server_pid)
        if not _alive(data.get("server_pid")):
            log = open(settings.dir / "server.log", "ab")
            preferred = web_port(settings, data)
            command = server_command(settings, data["nats_url"])
            if preferred is not None:
                command += ["--http-port", str(preferred)]
            try:
                proc = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL,
                    stdout=log, stderr=log, start_new_session=True,
                    env={**os.environ, "RUNSTREAM_DIR": str(settings.dir)},
                )
            finally:
                log.close()
            _adopt(proc)
            data["server_pid"] = proc.pid
            data["started_at"] = time.time()
            data.pop("http_url", None)
            _write(settings, data)
            ready = settings.dir / "server.ready"
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise StackError(f"runstream server exited with code {proc.returncode}; "
                                     f"see {settings.dir / 'server.log'}")
                if ready.exists() and ready.read_text().strip() == str(proc.pid):
                    break
                time.sleep(0.02)
            else:
                raise StackError(f"runstream server did not become ready in {timeout:.0f}s; "
                                 f"see {settings.dir / 'server.log'}")
            from .query.server import read_http_url

            data["http_url"] = read_http_url(settings.dir, proc.pid)
            got = _port_of(data["http_url"])
            if got is not None and "web_port" not in data:
                data["web_port"] = got  # from now on the web app asks for this port first
            _write(settings, data)
            if preferred and got is not None and got != preferred and not settings.quiet:
                sys.stderr.write(f"runstream: the web app's port {preferred} is in use by another program, so it "
                                 f"is at {data['http_url']} this time (bookmarks to port {preferred} will work "
                                 f"again once that port is free and the stack restarts; `runstream down` and "
                                 f"`runstream up`, or set RUNSTREAM_HTTP_PORT)\n")
        return status(settings)


DEFAULT_HTTP_PORT = Settings().http_port


def web_port(settings: Settings, data: dict[str, Any]) -> int | None:
    """The HTTP port the server asks for: ``RUNSTREAM_HTTP_PORT`` when set to something else than
    the default, else the port the web app had the first time (``web_port`` in ``stack.json``), so
    its URL stays the same across restarts even when the default port was taken; None when the
    server is to choose (``0``) or has no HTTP (``-1``)."""
    if settings.http_port != DEFAULT_HTTP_PORT:
        return settings.http_port if settings.http_port > 0 else None
    recorded = data.get("web_port")
    return int(recorded) if isinstance(recorded, int) and recorded > 0 else settings.http_port


def _port_of(url: str | None) -> int | None:
    if not url:
        return None
    from urllib.parse import urlsplit

    return urlsplit(url).port


def _is_nats_server(pid: int) -> bool:
    """The process is a ``nats-server`` (a recorded pid may have been reused by another program)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv0 = fh.read().split(b"\0", 1)[0]
    except OSError:
        return False
    return argv0.endswith(b"nats-server")


def _terminate(pid: int, timeout: float = 15.0) -> None:
    import signal

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.02)
    if _alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _reap(pid)


def down(settings: Settings) -> StackStatus:
    """Stop the server, then nats-server; data stays on disk."""
    with _locked(settings):
        data = _read(settings)
        for key in ("server_pid", "nats_pid"):
            pid = data.get(key)
            if pid and _alive(pid):
                _terminate(pid)
            data.pop(key, None)
        _write(settings, data)
        (settings.dir / "server.ready").unlink(missing_ok=True)
        return status(settings)
