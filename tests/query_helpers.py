"""A ``runstream server`` subprocess per test, with a unique name so servers never answer each other."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runstream.broker import NatsServer
from runstream.settings import Settings, load_settings
from tests.conftest import wait_for


@dataclass
class ServerProc:
    proc: subprocess.Popen[bytes]
    name: str
    dir: Path
    settings: Settings
    log: Path

    @property
    def ready_path(self) -> Path:
        return self.dir / "server.ready"

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(30)


def start_server(nats: NatsServer, base: Path, env: dict[str, str]) -> ServerProc:
    name = f"t{uuid.uuid4().hex[:12]}"
    data = base / f"srv-{name}"
    data.mkdir(parents=True)
    env = {**env, "RUNSTREAM_SERVER_NAME": name}
    log = data / "server.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "runstream.query.server", "--dir", str(data),
                                 "--nats-url", nats.url, "--name", name],
                                env=env, stdout=fh, stderr=fh, stdin=subprocess.DEVNULL)
    srv = ServerProc(proc, name, data, load_settings(env=env), log)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {log.read_text()}")
        return srv.ready_path.exists() and srv.ready_path.read_text().strip() == str(proc.pid)

    wait_for(ready, timeout=30, what="server.ready")
    return srv


def http_server(nats: NatsServer, base: Path, **extra: str) -> Iterator[tuple[ServerProc, str]]:
    """Body of a module-scoped ``server`` fixture: a server subprocess with an HTTP API on a free
    port (``extra``: more ``RUNSTREAM_*`` settings, e.g. an API key); yields it and its HTTP URL,
    and stops it cleanly after the module."""
    import os

    from runstream.query.server import read_http_url

    env = {"RUNSTREAM_NATS_URL": nats.url, "RUNSTREAM_DIR": str(base / "data"),
           "RUNSTREAM_RUN_DIR": str(base / "work"), "RUNSTREAM_QUIET": "1", "RUNSTREAM_HTTP_PORT": "0", **extra}
    srv = start_server(nats, base, {**os.environ, **env})
    url = read_http_url(srv.dir, srv.proc.pid)
    assert url, srv.log.read_text()
    yield srv, url
    assert srv.stop() == 0, srv.log.read_text()


def use_server(server: tuple[ServerProc, str], rs_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
               **extra: str) -> dict[str, str]:
    """Point this test's SDK, Api and CLI at ``server`` (its HTTP URL and RPC name, plus
    ``extra`` settings); return the environment for child processes."""
    srv, url = server
    env = {"RUNSTREAM_API_URL": url, "RUNSTREAM_SERVER_NAME": srv.name, **extra}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    from tests.sdk_helpers import env_with

    return env_with({**rs_env, **env})


def serve_for_test(nats_server: NatsServer, tmp_path: Path, rs_env: dict[str, str],
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerProc]:
    """Body of a ``query_server`` fixture: a server of this test, stopped (cleanly) after it."""
    srv = start_server(nats_server, tmp_path, rs_env)
    monkeypatch.setenv("RUNSTREAM_SERVER_NAME", srv.name)
    yield srv
    code = srv.stop()
    assert code == 0, srv.log.read_text()
    assert not srv.ready_path.exists()


def log_run(entity: str, project: str, steps: int = 5, **kwargs: object) -> str:
    """A finished run logged with the SDK in this process; returns its path."""
    import runstream

    run = runstream.init(entity=entity, project=project, config={"lr": 0.01, "epochs": steps}, **kwargs)
    for i in range(steps):
        run.log({"loss": 1.0 / (i + 1), "acc": i / steps})
    path = f"{entity}/{project}/{run.id}"
    run.finish()
    return path


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


__all__ = ["ServerProc", "http_server", "log_run", "serve_for_test", "start_server", "unique", "use_server"]
