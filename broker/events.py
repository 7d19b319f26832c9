"""Every event type, one frozen pydantic model each: the schema checked at the projector's door.

The SDK never imports this module on its hot path (pydantic import alone costs ~60 ms); it builds
envelopes with :mod:`runstream.broker.codec`. The projector validates each decoded envelope with
:func:`parse_event`; what fails goes to ``dead_letters`` with the reason.

Events are immutable facts: the list grows by adding a type, never by changing one. An older
``v`` is upgraded by an explicit function in :data:`UPGRADES` before validation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBytes, StrictInt, StrictStr, ValidationError

from .codec import SCHEMA_VERSION, check_log_body, decode_log_body


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")


class Origin(_Body):
    """Where a run came from: ``resume``, ``fork`` or ``rewind`` of another run at a step."""

    kind: Literal["resume", "fork", "rewind"]
    run_uid: str
    path: str | None = None
    step: float | None = None


class InitBody(_Body):
    entity: str
    project: str
    run_id: str
    name: str
    notes: str | None = None
    tags: list[str] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    group: str | None = None
    job_type: str | None = None
    start_time: float
    mode: str = "online"
    origin: Origin | None = None


class LogBody(_Body):
    n: int
    step: list[int | float]
    ts: bytes
    cols: dict[str, dict[str, Any]]

    def columns(self) -> tuple[list[Any], list[float], dict[str, tuple[list[Any], bytes | None, bool]]]:
        return decode_log_body(self.model_dump())


class LogRowsBody(_Body):
    """``log`` rows packed as the SDK spooled them: ``rows`` is ``n`` msgpack arrays back to back,
    each ``[step, timestamp, kid, [value per key of keys[kid]]]``.

    Only the frame is checked here; the rows themselves are checked while the projector decodes
    them (once), and a malformed one dead-letters the event with the row named.
    """

    n: Annotated[StrictInt, Field(ge=0)]
    keys: dict[StrictInt, list[StrictStr]]
    rows: StrictBytes


class ConfigBody(_Body):
    set: dict[str, Any] = Field(default_factory=dict)


class SummaryBody(_Body):
    set: dict[str, Any] = Field(default_factory=dict)
    delete: list[str] = Field(default_factory=list)


class DefineMetricBody(_Body):
    name: str
    step_metric: str | None = None
    summary: list[Literal["min", "max", "mean", "last", "first", "none"]] | None = None
    hidden: bool = False
    goal: Literal["minimize", "maximize"] | None = None


class HeartbeatBody(_Body):
    pass


class MetadataBody(_Body):
    metadata: dict[str, Any]


class FinishBody(_Body):
    exit_code: int
    state: Literal["finished", "failed", "killed"]
    runtime: float


class CrashedBody(_Body):
    last_heartbeat: float
    timeout: float


class MetaBody(_Body):
    """An edit of a run's descriptive fields (``Api().run(...).update()``); only the fields set
    change. Its writer is the editor (``api:<id>``), not the run, so it is no sign of life."""

    name: str | None = None
    notes: str | None = None
    tags: list[str] | None = None
    group: str | None = None
    job_type: str | None = None


class MoveBody(_Body):
    """The run moved to ``entity/project/run_id`` (same entity) from ``from_path``. Recorded by the
    server (writer ``api:<id>``) after claiming the new path; the events keep their subjects."""

    entity: str
    project: str
    run_id: str
    from_path: str


class DeleteBody(_Body):
    """Tombstone: the run is deleted. The server then purges the run's earlier events from the
    stream (this one stays, so a replay knows); the projector drops the run's rows and every later
    event of the run. It carries nothing of the run: deleted data must go."""


BODIES: dict[str, type[_Body]] = {
    "init": InitBody,
    "log": LogBody,
    "log_rows": LogRowsBody,
    "config": ConfigBody,
    "summary": SummaryBody,
    "define_metric": DefineMetricBody,
    "heartbeat": HeartbeatBody,
    "metadata": MetadataBody,
    "finish": FinishBody,
    "crashed": CrashedBody,
    "meta": MetaBody,
    "move": MoveBody,
    "delete": DeleteBody,
}


class Event(BaseModel):
    """A validated envelope. ``body`` is the type's own model."""

    model_config = ConfigDict(frozen=True)

    v: int
    type: str
    run_uid: str
    writer: str
    seq: Annotated[int, Field(ge=0)]
    ts: float
    body: _Body


UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}
"""``UPGRADES[v]`` turns a version-``v`` envelope into version ``v + 1``."""


class EventError(ValueError):
    """An envelope that decodes but does not match its schema."""


def parse_event(env: dict[str, Any]) -> Event:
    """Validate a decoded envelope; raise :class:`EventError` naming what is wrong."""
    v = env.get("v")
    if not isinstance(v, int) or v < 1:
        raise EventError(f"schema version {v!r} is not a positive integer")
    if v > SCHEMA_VERSION:
        raise EventError(f"schema version {v} is newer than this projector understands ({SCHEMA_VERSION})")
    while v < SCHEMA_VERSION:
        env = UPGRADES[v](env)
        v = env["v"]
    kind = env.get("t")
    model = BODIES.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise EventError(f"unknown event type {kind!r}")
    try:
        body = model.model_validate(env.get("b"))
        if kind == "log":
            check_log_body(env["b"])
        return Event(v=v, type=kind, run_uid=env.get("run"), writer=env.get("w"), seq=env.get("s"),
                     ts=env.get("ts"), body=body)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise EventError(f"{kind} event: {where or 'envelope'}: {first.get('msg')}") from e
    except ValueError as e:
        raise EventError(str(e)) from e


