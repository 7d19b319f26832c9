"""Errors of the read side (``runstream.query``).

::

    runstream.errors.QueryError     a SQL query was refused or failed on the server
     ├── QueryRefused               the sandbox refused it (a write, a file, a setting, an extension…)
     ├── QueryTimeout               it ran past its time limit and was interrupted
     ├── TooManyQueries             this client already holds its share of the SQL slots (HTTP 429)
     ├── ProjectionLagging          the projection did not reach the requested stream sequence in time
     ├── NotFound                   no such run or project (HTTP 404)
     ├── Conflict                   a move or delete refused: path taken, forks left (HTTP 409)
     ├── Unauthorized               the HTTP API wants an API key, or another one (HTTP 401)
     ├── RunNotAlive                a stop for a run no live process answers for (HTTP 409)
     └── NoServerForEntity          no running server projects the entity asked about (HTTP 503)
    runstream.errors.StackError
     ├── ServerUnavailable          no runstream server answers the RPC subjects
     └── DuplicateServerName        a server refused to start: another one answers under its name

Messages say what failed and what to do next; server-side errors travel as text in the reply and
are raised again on the client as the same class (see :func:`error_from_reply`).
"""

from __future__ import annotations

from ..errors import QueryError, StackError

__all__ = [
    "ProjectionLagging",
    "QueryError",
    "QueryRefused",
    "QueryTimeout",
    "TooManyQueries",
    "NotFound",
    "Conflict",
    "Unauthorized",
    "ServerUnavailable",
    "RunNotAlive",
    "NoServerForEntity",
    "DuplicateServerName",
    "error_from_reply",
]


class QueryRefused(QueryError):
    """The sandbox refused the query before or while running it."""


class QueryTimeout(QueryError):
    """The query ran past its time limit and was interrupted."""


class TooManyQueries(QueryError):
    """One client already runs its share of the server's SQL slots at once (fairness)."""


class ProjectionLagging(QueryError):
    """Read-your-writes: the projection did not reach the requested sequence within the timeout."""


class NotFound(QueryError):
    """No such run or project."""


class Conflict(QueryError):
    """A move or delete was refused and changed nothing: the new path is taken, the run has forks."""


class Unauthorized(QueryError):
    """The HTTP API refused the API key (or its absence)."""


class RunNotAlive(QueryError):
    """A stop request that no live process of the run acknowledged."""


class NoServerForEntity(QueryError):
    """On a partitioned deployment, no running server projects the entity (NATS had no responders
    for its subjects); the message names it."""


class ServerUnavailable(StackError):
    """No runstream server answered on its RPC subjects."""


class DuplicateServerName(StackError):
    """Another runstream server already answers under this server's name: replicas need their own."""


_KINDS: dict[str, type[QueryError]] = {
    "refused": QueryRefused,
    "timeout": QueryTimeout,
    "busy": TooManyQueries,
    "lagging": ProjectionLagging,
    "not_found": NotFound,
    "conflict": Conflict,
    "unauthorized": Unauthorized,
    "not_alive": RunNotAlive,
    "no_server": NoServerForEntity,
    "error": QueryError,
}


def error_kind(exc: QueryError) -> str:
    """The wire name of a query error's class (``error`` for plain :class:`QueryError`)."""
    for kind, cls in _KINDS.items():
        if type(exc) is cls:
            return kind
    return "error"


def error_from_reply(kind: str | None, message: str) -> QueryError:
    """Rebuild the client-side exception for an error reply."""
    return _KINDS.get(kind or "error", QueryError)(message)
