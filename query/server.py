"""``runstream server``: one process owning the projection and answering queries over NATS.

One anyio task group runs the projector (``<dir>/runstream.duckdb``, crash reaper on) and the
RPC responder (:mod:`.rpc`). Once the projector has caught up and the subscriptions are in place,
``<dir>/server.ready`` holds this process's pid (what the local stack waits for); SIGTERM or SIGINT
remove it and end the process cleanly. Logs go to stderr.

Run it as ``python -m runstream.query.server --dir D --nats-url U [--name main]``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.abc import TaskStatus

from ..settings import Settings, load_settings

__all__ = ["ServerConfig", "main", "serve"]

log = logging.getLogger("runstream.query.server")

DB_FILE = "runstream.duckdb"
READY_FILE = "server.ready"


@dataclass(frozen=True)
class ServerConfig:
    """What one server process needs.

    Args:
        dir: data directory (the DuckDB file and ``server.ready`` live here).
        nats_url: the NATS server holding the log.
        name: the server name in the RPC subjects (``rsctl.q.<name>.*``) and of its projector.
        settings: credentials, crash timeout and heartbeat interval come from here.
    """

    dir: Path
    nats_url: str
    name: str = "main"
    settings: Settings = field(default_factory=Settings)

    @property
    def db_path(self) -> Path:
        return self.dir / DB_FILE

    @property
    def ready_path(self) -> Path:
        return self.dir / READY_FILE

    def nats_options(self) -> dict[str, Any]:
        s = self.settings
        opts = {"creds": s.nats_creds, "token": s.nats_token, "user": s.nats_user,
                "password": s.nats_password}
        return {k: v for k, v in opts.items() if v}


def _write_ready(path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(path)


def _remove_ready(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.read_text().strip() == str(os.getpid()):
            path.unlink()


async def serve(config: ServerConfig, *, handle_signals: bool = True,
                task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    """Run the projector and the responder until cancelled (or SIGTERM/SIGINT).

    Reports started (and writes the ready file) once the projector has caught up with the stream
    and the RPC subjects are subscribed.
    """
    from ..broker.jetstream import connect
    from ..projector import Projector
    from .rpc import Responder
    from .sandbox import Sandbox
    from .service import ProjectorTask, QueryService

    config.dir.mkdir(parents=True, exist_ok=True)
    s = config.settings
    projector = Projector(config.db_path, config.nats_url, nats_options=config.nats_options(),
                          name=config.name, crash_timeout=s.crash_timeout,
                          heartbeat_interval=s.heartbeat_interval, reaper=True)
    nc = await connect(config.nats_url, name=f"runstream-server-{config.name}", **config.nats_options())
    sandbox: Sandbox | None = None
    try:
        async with anyio.create_task_group() as tg:
            if handle_signals:
                tg.start_soon(_stop_on_signal, tg.cancel_scope)
            log.info("projecting %s into %s", config.nats_url, config.db_path)
            runner = ProjectorTask(projector, tg)
            await runner.start()
            sandbox = Sandbox(projector.cursor())
            service = QueryService(projector, runner, sandbox, nc, tg, name=config.name,
                                   db_path=config.db_path, nats_url=config.nats_url)
            await tg.start(Responder(nc, config.name, service.handlers).serve)
            _write_ready(config.ready_path)
            log.info("server %r ready (pid %d): projected up to stream seq %d",
                     config.name, os.getpid(), projector.projected_seq)
            task_status.started()
    finally:
        _remove_ready(config.ready_path)
        if sandbox is not None:
            sandbox.interrupt_all()
        projector.close()
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(Exception):
                await nc.close()
        log.info("server %r stopped", config.name)


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s: stopping", signal.Signals(signum).name)
            scope.cancel()
            return


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The server's arguments (also used by ``runstream server``)."""
    p = parser or argparse.ArgumentParser(prog="python -m runstream.query.server",
                                          description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--dir", type=Path, default=None,
                   help="data directory holding runstream.duckdb (default: RUNSTREAM_DIR or ~/.runstream)")
    p.add_argument("--nats-url", default=None,
                   help="NATS server with the log (default: RUNSTREAM_NATS_URL, else the local stack's)")
    p.add_argument("--name", default=None,
                   help="server name in the RPC subjects rsctl.q.<name>.* "
                        "(default: RUNSTREAM_SERVER_NAME or main)")
    return p


def config_from_args(args: argparse.Namespace, settings: Settings | None = None) -> ServerConfig:
    """Resolve the server's configuration; without a URL, use the running local stack's nats-server."""
    s = settings or load_settings(dir=args.dir)
    url = args.nats_url or s.nats_url
    if not url:
        from ..stack import status

        st = status(s)
        if not st.nats_alive or not st.nats_url:
            raise SystemExit("runstream server: no NATS URL: pass --nats-url, set RUNSTREAM_NATS_URL, "
                             "or start the local stack with `runstream up`")
        url = st.nats_url
    return ServerConfig(dir=args.dir or s.dir, nats_url=url, name=args.name or s.server_name, settings=s)


def configure_logging() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_forever(config: ServerConfig) -> int:
    """Serve in the foreground until SIGTERM/SIGINT; return the exit code."""
    configure_logging()
    try:
        anyio.run(serve, config)
    except KeyboardInterrupt:
        pass
    except Exception:
        log.exception("runstream server %r failed", config.name)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_forever(config_from_args(args))


if __name__ == "__main__":
    sys.exit(main())
