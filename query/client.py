"""``QueryClient``: a synchronous client of the server's NATS RPC (SQL, health, replay).

Where a request goes (:mod:`.protocol`): ``health`` and ``replay`` concern one server, the one
named ``settings.server_name`` (``main`` by default, the local stack's); ``sql`` and ``lineage``
go to any server that can answer them — about one ``entity`` to a server holding it, else to any
server holding every entity — balanced by NATS, or to one named server when ``server=`` is given.

It speaks through the SDK's small blocking NATS client (:mod:`runstream.broker.miniclient`): no
event loop, so it works the same from scripts and notebooks, and a CLI command does not pay for
importing nats-py (and aiohttp) before it can ask anything. pyarrow loads only for SQL results.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..settings import Settings, load_settings
from . import protocol
from .errors import NoServerForEntity, ServerUnavailable, error_from_reply

if TYPE_CHECKING:
    import pyarrow as pa

    from ..broker.miniclient import MiniNats

__all__ = ["QueryClient", "SqlResult"]

HEALTH_TIMEOUT_S = 5.0
"""How long ``health``/``replay`` wait for a server before saying none is running."""
_REPLY_MARGIN_S = 5.0


@dataclass(frozen=True)
class SqlResult:
    """A query's rows as Arrow, with ``truncated`` when the row cap cut them off.

    ``projected_seq`` is the stream sequence the projection had reached when the query ran;
    ``server`` the name of the server that answered.
    """

    table: pa.Table
    truncated: bool
    projected_seq: int
    server: str | None = None

    @property
    def num_rows(self) -> int:
        return int(self.table.num_rows)

    @property
    def column_names(self) -> list[str]:
        return list(self.table.column_names)

    def to_pylist(self) -> list[dict[str, Any]]:
        return list(self.table.to_pylist())


class QueryClient:
    """Ask the runstream server named ``settings.server_name`` over NATS.

    Args:
        settings: where NATS is (``nats_url`` + credentials) or, unset, the local stack under
            ``settings.dir`` (started if needed, unless ``start_stack`` is false).
        start_stack: start the local stack when it is not running.

    Raises (from every call):
        ServerUnavailable: NATS is unreachable or no server of that name answers.
    """

    def __init__(self, settings: Settings | None = None, *, start_stack: bool = True) -> None:
        self.settings = settings or load_settings()
        self._start_stack = start_stack
        self._url: str | None = None

    @property
    def name(self) -> str:
        return self.settings.server_name

    @property
    def url(self) -> str:
        """The NATS URL (resolving, and maybe starting, the local stack on first use)."""
        if self._url is None:
            if self.settings.nats_url:
                self._url = self.settings.nats_url
            elif self._start_stack:
                from ..stack import nats_url

                self._url = nats_url(self.settings)
            else:
                from ..stack import status

                st = status(self.settings)
                if not (st.nats_alive and st.nats_url):
                    raise ServerUnavailable(f"the local runstream stack under {self.settings.dir} is not "
                                            "running; start it with `runstream up`")
                self._url = st.nats_url
        return self._url

    def _hint(self, name: str | None = None) -> str:
        if self.settings.nats_url:
            if name is None:
                return f"start one with `runstream server --nats-url {self.url}`"
            return (f"start one with `runstream server --nats-url {self.url} --name {name}` "
                    "(or check RUNSTREAM_SERVER_NAME)")
        return "start the local stack with `runstream up` (see `runstream status`)"

    def _connect(self) -> MiniNats:
        from ..broker.errors import BrokerUnavailable
        from ..broker.miniclient import MiniNats

        s = self.settings
        try:
            return MiniNats(self.url, token=s.nats_token, user=s.nats_user, password=s.nats_password,
                            creds=s.nats_creds, name="runstream-query-client",
                            connect_timeout=HEALTH_TIMEOUT_S).connect()
        except BrokerUnavailable as e:
            raise ServerUnavailable(f"{e}; {self._hint()}") from e

    def _route(self, op: str, server: str | None, entity: str | None) -> tuple[str, str, str | None]:
        """``(subject, who, entity)``: the subject of ``op`` and how to name its answerer in errors."""
        if server is not None or op not in protocol.ANY_OPS:
            name = server or self.name
            return protocol.subject(name, op), f"runstream server named {name!r}", None
        if entity is not None:
            return protocol.entity_subject(entity, op), f"runstream server holding entity {entity!r}", entity
        return protocol.any_subject(op), "runstream server holding every entity", None

    def _request(self, nc: MiniNats, op: str, message: dict[str, Any], timeout: float, *,
                 server: str | None = None, entity: str | None = None) -> dict[str, Any]:
        from ..broker.errors import BrokerUnavailable
        from ..broker.miniclient import NoResponders

        subject, who, held = self._route(op, server, entity)
        named = server or self.name if (server is not None or op not in protocol.ANY_OPS) else None
        try:
            msg = nc.request(subject, protocol.encode(message), timeout=timeout)
        except NoResponders as e:
            if held is not None:
                raise NoServerForEntity(
                    f"no runstream server holds entity {held!r} at {self.url} (none answers {subject}); start "
                    f"one with `runstream server --entities {held}` or one without --entities") from e
            extra = ("; on a partitioned deployment name an entity (--entity) or a server (--server)"
                     if op in protocol.ANY_OPS and server is None else "")
            raise ServerUnavailable(f"no {who} is running at {self.url}{extra}; {self._hint(named)}") from e
        except BrokerUnavailable as e:
            if isinstance(e.__cause__, TimeoutError):
                raise ServerUnavailable(
                    f"the {who} at {self.url} did not answer {op!r} within {timeout:g}s; {self._hint(named)}") from e
            raise ServerUnavailable(f"{e}; {self._hint(named)}") from e
        reply = protocol.decode(msg.payload)
        if not reply.get("ok"):
            raise error_from_reply(reply.get("kind"), str(reply.get("error")))
        return reply

    def _call(self, op: str, message: dict[str, Any], timeout: float, *, server: str | None = None,
              entity: str | None = None) -> dict[str, Any]:
        nc = self._connect()
        try:
            return self._request(nc, op, message, timeout, server=server, entity=entity)
        finally:
            nc.close()

    def sql(self, query: str, *, max_rows: int = 10_000, timeout: float = 30.0,
            wait_seq: int | None = None, entity: str | None = None, server: str | None = None) -> SqlResult:
        """Run one read-only SQL statement on the server.

        Args:
            query: SELECT / WITH / FROM / DESCRIBE / SHOW / SUMMARIZE / PIVOT / EXPLAIN text.
            max_rows: cap on the rows returned (``truncated`` says when it cut).
            timeout: seconds for the server to reach ``wait_seq`` and run the query.
            wait_seq: read-your-writes: first wait until the projection has reached this stream
                sequence (e.g. :meth:`stream_last_seq` taken after a run finished).
            entity: run it on a server holding this entity (a partition's projection holds only
                its entities; default: any server holding every entity).
            server: run it on the server of this name.

        Raises:
            QueryRefused, QueryTimeout, ProjectionLagging, QueryError: from the server.
            NoServerForEntity: no server holds ``entity``.
            ServerUnavailable: no server answers.
        """
        message = {"sql": query, "max_rows": max_rows, "timeout": timeout, "wait_seq": wait_seq}
        reply = self._call("sql", message, timeout + _REPLY_MARGIN_S, server=server, entity=entity)
        return SqlResult(protocol.ipc_to_table(reply["arrow"]), bool(reply.get("truncated")),
                         int(reply.get("projected_seq") or 0), reply.get("server"))

    def health(self, timeout: float = HEALTH_TIMEOUT_S) -> dict[str, Any]:
        """The server's projection position, lag, db path, pid, uptime and replay progress."""
        reply = self._call("health", {}, timeout)
        reply.pop("ok", None)
        return reply

    def replay(self, progress: Callable[[int, int], None] | None = None, *,
               timeout: float | None = None, poll_interval: float = 0.05) -> dict[str, Any]:
        """Rebuild the server's projection from the log and wait for the end.

        Args:
            progress: called with ``(done, total)`` stream sequences while it runs.
            timeout: give up waiting after this many seconds (the replay goes on on the server).

        Returns:
            The final replay status: ``projected_seq`` reached, ``finished_at``.

        Raises:
            QueryError: the replay failed on the server (its message says why).
        """
        from ..errors import QueryError

        nc = self._connect()
        try:
            started = self._request(nc, "replay", {}, HEALTH_TIMEOUT_S)
            begun = time.time()
            status = started["replay"]
            while True:
                if progress is not None:
                    progress(int(status.get("done") or 0), int(status.get("total") or 0))
                if not status.get("running"):  # the start reply always says running
                    break
                if timeout is not None and time.time() - begun > timeout:
                    raise QueryError(f"the replay did not finish within {timeout:g}s; it goes on on the "
                                     "server: follow it with `runstream status`")
                time.sleep(poll_interval)
                status = self._request(nc, "health", {}, HEALTH_TIMEOUT_S)["replay"]
            if status.get("error"):
                raise QueryError(f"replay failed on the server: {status['error']}")
            return dict(status)
        finally:
            nc.close()

    def lineage(self, run_uid: str, step: float | None = None, *, timeout: float = 30.0,
                entity: str | None = None) -> dict[str, Any] | None:
        """A run as resume, fork and rewind need it (state, last step, runtime, depth; with ``step``
        the aggregates of its visible history up to there), once the server's projection holds
        what the log holds now. None when the server does not know the run. Asked of a server
        holding ``entity`` when given, else of any server holding every entity."""
        message = {"run_uid": run_uid, "step": step, "timeout": timeout}
        reply = self._call("lineage", message, timeout + _REPLY_MARGIN_S, entity=entity)
        run = reply.get("run")
        return dict(run) if isinstance(run, dict) else None

    def stream_last_seq(self) -> int:
        """The log's last stream sequence (0 when the stream does not exist yet)."""
        from ..broker.miniclient import JetStreamError
        from ..broker.names import STREAM

        nc = self._connect()
        try:
            return int(nc.js_api(f"STREAM.INFO.{STREAM}")["state"]["last_seq"])
        except JetStreamError as e:
            if e.code == 404:
                return 0
            raise ServerUnavailable(f"cannot read the log's position at {self.url}: {e}") from e
        finally:
            nc.close()
