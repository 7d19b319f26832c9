"""``runstream server``: one process owning the projection and serving it over NATS and HTTP.

One anyio task group runs the projector (``<dir>/runstream.duckdb``, crash reaper on), the RPC
responder (:mod:`.rpc`) and the HTTP API (:mod:`.http`, uvicorn on 127.0.0.1). The HTTP socket is
bound before anything else (the preferred port, else a free one), and its URL is written to
``<dir>/server.http.json``. Once the projector has caught up and the subscriptions are in place,
``<dir>/server.ready`` holds this process's pid (what the local stack waits for); SIGTERM or SIGINT
remove it and end the process cleanly. Logs go to stderr.

Run it as ``python -m runstream.query.server --dir D --nats-url U [--name main] [--http-port P]
[--entities a,b | --subjects S,...]``.

Several servers may run on one stream: *replicas* (each its own ``--name`` and data directory;
they converge, share the balanced requests and send each alert once) and *partitions*
(``--entities``: a server projects and answers for those entities only; requests about an entity
reach a server that holds it through NATS, see :mod:`.protocol`). Nothing the broker does ends the
server: it waits for NATS at start and rides out outages, answering reads from its DuckDB file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
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
HTTP_FILE = "server.http.json"
HTTP_HOST = "127.0.0.1"
GRACEFUL_SHUTDOWN_S = 3


@dataclass(frozen=True)
class ServerConfig:
    """What one server process needs.

    Args:
        dir: data directory (the DuckDB file and ``server.ready`` live here).
        nats_url: the NATS server holding the log.
        name: the server name in the RPC subjects (``rsctl.q.<name>.*``) and of its projector.
        settings: credentials, crash timeout, heartbeat interval, API key and SQL memory limit.
        http_port: preferred HTTP port on ``settings.http_host`` (a free one if taken; 0: any; None: no
            HTTP).
        entities: project and answer for these entities only (a partition); None: every entity.
        filter_subjects: or a raw subject filter of the event stream (then the server answers
            entity requests for none: only its own subjects and SQL sent to it by name).
    """

    dir: Path
    nats_url: str
    name: str = "main"
    settings: Settings = field(default_factory=Settings)
    http_port: int | None = None
    entities: tuple[str, ...] | None = None
    filter_subjects: tuple[str, ...] | None = None

    @property
    def full(self) -> bool:
        """Whether this server projects every entity."""
        return self.entities is None and self.filter_subjects is None

    def describe_partition(self) -> str:
        if self.entities is not None:
            return "entities " + ", ".join(self.entities)
        if self.filter_subjects is not None:
            return "subjects " + ", ".join(self.filter_subjects)
        return "every entity"

    @property
    def db_path(self) -> Path:
        return self.dir / DB_FILE

    @property
    def ready_path(self) -> Path:
        return self.dir / READY_FILE

    @property
    def http_path(self) -> Path:
        return self.dir / HTTP_FILE

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


def _loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def bind_http(port: int, host: str = HTTP_HOST) -> socket.socket:
    """A listening socket on ``host`` (127.0.0.1 unless ``RUNSTREAM_HTTP_HOST`` says otherwise):
    ``port`` if free (and not 0), else any free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    def bound(p: int) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.bind((host, p))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        sock.set_inheritable(False)
        return sock

    if port:
        try:
            return bound(port)
        except OSError:
            log.info("HTTP port %d is taken: using a free one", port)
    return bound(0)


async def serve_http(app: Any, sock: socket.socket, *,
                     task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app`` with uvicorn on ``sock`` until cancelled, then shut down gracefully.

    uvicorn's own ``serve()`` would install signal handlers; the server's task group owns signals,
    so this drives uvicorn's startup / main loop / shutdown itself.
    """
    import uvicorn

    cfg = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False,
                         timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    server = uvicorn.Server(cfg)
    cfg.load()
    server.lifespan = cfg.lifespan_class(cfg)
    await server.startup(sockets=[sock])
    if server.should_exit:
        raise RuntimeError(f"the HTTP API could not start on {sock.getsockname()}")
    task_status.started()
    try:
        await server.main_loop()
    finally:
        server.should_exit = True
        with anyio.CancelScope(shield=True):
            await server.shutdown(sockets=[sock])


def _write_http(path: Path, url: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "url": url}))
    tmp.replace(path)


def read_http_url(data_dir: Path, pid: int | None = None) -> str | None:
    """The HTTP URL a server under ``data_dir`` recorded (only if written by ``pid`` when given)."""
    try:
        info = json.loads((data_dir / HTTP_FILE).read_text())
    except (OSError, ValueError):
        return None
    if pid is not None and info.get("pid") != pid:
        return None
    url = info.get("url")
    return str(url) if url else None


async def serve(config: ServerConfig, *, handle_signals: bool = True,
                task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    """Run the projector, the RPC responder and the HTTP API until cancelled (or SIGTERM/SIGINT).

    Reports started (and writes the ready file) once the projector has caught up with the stream,
    the RPC subjects are subscribed and the HTTP API listens.
    """
    from .core import open_core

    host = config.settings.http_host
    sock = bind_http(config.http_port, host) if config.http_port is not None else None
    if sock is not None and not _loopback(host) and not config.settings.api_key:
        log.warning("the HTTP API listens on %s without an API key: anyone who can reach it reads and edits "
                    "every run; set RUNSTREAM_API_KEY", host)
    try:
        async with open_core(config) as core:
            if handle_signals:
                core.tg.start_soon(_stop_on_signal, core.tg.cancel_scope)
            if sock is not None:
                from .http import create_app

                app = create_app(core, api_key=config.settings.api_key)
                await core.tg.start(serve_http, app, sock)
                host, port = sock.getsockname()[:2]
                if host in ("0.0.0.0", "::"):
                    host = "127.0.0.1"  # every interface: local clients take the loopback one
                _write_http(config.http_path, f"http://{host}:{port}")
                log.info("HTTP API on http://%s:%d%s", host, port,
                         " (API key required)" if config.settings.api_key else "")
            _write_ready(config.ready_path)
            log.info("server %r ready (pid %d): projected up to stream seq %d",
                     config.name, os.getpid(), core.projected_seq)
            task_status.started()
            await anyio.sleep_forever()  # leaving the body would stop the core
    finally:
        _remove_ready(config.ready_path)
        with contextlib.suppress(OSError):
            if read_http_url(config.dir, os.getpid()) is not None:
                config.http_path.unlink()
        if sock is not None:
            sock.close()
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
    p.add_argument("--http-port", type=int, default=None,
                   help="HTTP API port, a free one if taken; 0: any free port; -1: no HTTP "
                        "(default: RUNSTREAM_HTTP_PORT or 14280)")
    p.add_argument("--http-host", default=None,
                   help="address the HTTP API listens on (default: RUNSTREAM_HTTP_HOST or 127.0.0.1; "
                        "0.0.0.0 for every interface, with RUNSTREAM_API_KEY set)")
    part = p.add_mutually_exclusive_group()
    part.add_argument("--entities", default=None,
                      help="project and answer for these entities only, comma-separated (a partition; "
                           "default: RUNSTREAM_SERVER_ENTITIES, else every entity)")
    part.add_argument("--subjects", default=None,
                      help="a raw subject filter of the event stream, comma-separated (e.g. rs.a.run.*.*; "
                           "default: RUNSTREAM_SERVER_SUBJECTS)")
    return p


def _csv(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = tuple(dict.fromkeys(x.strip() for x in value.split(",") if x.strip()))
    return items or None


def partition_from(entities: str | None, subjects: str | None,
                   env: dict[str, str] | None = None) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    """``(entities, filter_subjects)`` from the arguments, else ``RUNSTREAM_SERVER_ENTITIES`` /
    ``RUNSTREAM_SERVER_SUBJECTS``; both None for a server of every entity."""
    env = dict(os.environ) if env is None else env
    if entities is None and subjects is None:
        entities, subjects = env.get("RUNSTREAM_SERVER_ENTITIES"), env.get("RUNSTREAM_SERVER_SUBJECTS")
    ents, subs = _csv(entities), _csv(subjects)
    if ents is not None and subs is not None:
        raise SystemExit("runstream server: give --entities or --subjects, not both")
    if ents is not None:
        from ..broker.names import validate_name

        for e in ents:
            try:
                validate_name("entity", e)
            except ValueError as err:
                raise SystemExit(f"runstream server: --entities: {err}") from None
    if subs is not None:
        for sub in subs:
            if not sub.startswith("rs.") or len(sub.split(".")) != 5 and not sub.endswith(">"):
                raise SystemExit(f"runstream server: --subjects: {sub!r} is not a subject of the event "
                                 "stream (rs.<entity>.run.<run uid>.<kind>, wildcards allowed)")
    return ents, subs


def config_from_args(args: argparse.Namespace, settings: Settings | None = None) -> ServerConfig:
    """Resolve the server's configuration; without a URL, use the running local stack's nats-server."""
    s = settings or load_settings(dir=args.dir, http_host=getattr(args, "http_host", None))
    url = args.nats_url or s.nats_url
    if not url:
        from ..stack import status

        st = status(s)
        if not st.nats_alive or not st.nats_url:
            raise SystemExit("runstream server: no NATS URL: pass --nats-url, set RUNSTREAM_NATS_URL, "
                             "or start the local stack with `runstream up`")
        url = st.nats_url
    port = args.http_port if getattr(args, "http_port", None) is not None else s.http_port
    entities, subjects = partition_from(getattr(args, "entities", None), getattr(args, "subjects", None))
    return ServerConfig(dir=args.dir or s.dir, nats_url=url, name=args.name or s.server_name, settings=s,
                        http_port=None if port < 0 else port, entities=entities, filter_subjects=subjects)


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
    except Exception as e:
        refused = _refusal(e)
        if refused is not None:  # a setting or a name no wait can cure: its message, no traceback
            log.error("runstream server %r cannot start: %s", config.name, refused)
            return 2
        log.exception("runstream server %r failed", config.name)
        return 1
    return 0


def _refusal(e: BaseException) -> BaseException | None:
    """The reason the server refuses to start (a taken name, streams the broker refuses), found
    inside the task groups' exception groups; None for any other failure."""
    from ..projector.errors import StreamSetupError
    from .errors import DuplicateServerName

    if isinstance(e, DuplicateServerName | StreamSetupError):
        return e
    if isinstance(e, BaseExceptionGroup):
        for inner in e.exceptions:
            found = _refusal(inner)
            if found is not None:
                return found
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_forever(config_from_args(args))


if __name__ == "__main__":
    sys.exit(main())
