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

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBytes, StrictInt, StrictStr, ValidationError

from .codec import SCHEMA_VERSION, check_log_body, decode_log_body


def _not_dots(value: str) -> str:
    if value in (".", ".."):
        raise ValueError(f"{value!r} is not a legal entity, project or run id ('.' and '..' name folders)")
    return value


PathPart = Annotated[str, AfterValidator(_not_dots)]
"""An entity, project or run id in an ``init`` or ``move`` event: ``.`` and ``..`` are refused
(the event goes to ``dead_letters``)."""


def _safe_file_name(value: str) -> str:
    from runstream.errors import UsageError
    from runstream.filenames import check_name

    try:
        return check_name(value)
    except UsageError as e:
        raise ValueError(str(e)) from None


def _safe_artifact_name(value: str) -> str:
    from runstream.errors import UsageError
    from runstream.filenames import check_artifact_name

    try:
        return check_artifact_name(value)
    except UsageError as e:
        raise ValueError(str(e)) from None


Entry = tuple[str, str | None, int, str | None]
"""An artifact manifest entry: path, sha256 (None for a reference), size, reference URI."""


def _safe_entries(entries: list[Entry]) -> list[Entry]:
    for entry in entries:
        _safe_file_name(entry[0])
    return entries


FileName = Annotated[StrictStr, AfterValidator(_safe_file_name)]
"""A run file's name as ``run.save()`` checks it (relative, no '..', no control characters): a
forged ``file`` event with another goes to ``dead_letters``, so no download can trip on it."""


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")


class Origin(_Body):
    """Where a run (or a new session of it) came from: ``resume`` of itself, ``fork`` of another run
    at a step, or ``rewind`` of itself to a step.

    For fork and rewind the SDK asked the server about the visible history up to ``step`` and
    records what it learnt, so that a replay needs nothing but the log: ``stats`` (per key, the
    aggregates ``[logged, count, total, min, max, first, last]`` of the rows up to ``step``, from
    which the summary continues), ``last_step`` (the highest step up to ``step``), ``runtime``
    (``_runtime`` at that step: where the new rows' ``_runtime`` continues) and ``depth`` (forks:
    the parent's depth + 1).
    """

    kind: Literal["resume", "fork", "rewind"]
    run_uid: str
    path: str | None = None
    step: float | None = None
    stats: dict[str, list[Any]] | None = None
    last_step: int | None = None
    runtime: float | None = None
    depth: int | None = None


class InitBody(_Body):
    """A run starts, or a new session of it (``origin``: resume, rewind). Its writer becomes the
    run's primary writer, whose ``finish`` sets the run's final state. Fields left out of a resume
    or rewind keep their values (``name`` may then be None)."""

    entity: PathPart
    project: PathPart
    run_id: PathPart
    name: str | None = None
    notes: str | None = None
    tags: list[str] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    group: str | None = None
    job_type: str | None = None
    start_time: float
    mode: str = "online"
    origin: Origin | None = None
    label: str | None = None
    """The writer's label in shared mode (e.g. ``rank0``)."""


class JoinBody(_Body):
    """Another process joins a run in shared mode (``init(id=..., mode="shared")``) as a writer
    of its own; its ``finish`` ends only its own part, not the run."""

    label: str | None = None
    start_time: float


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


class StopRequestedBody(_Body):
    """A stop asked for from outside (``Api().run(...).stop()``, ``runstream stop``) that the
    run's live writers acknowledged. Its writer is the requester (``api:<id>``), so it is no sign
    of life; ``writers`` are the run's writers that answered."""

    requested_by: str
    writers: list[str] = Field(default_factory=list)


class AlertBody(_Body):
    """``run.alert()``: ``throttled`` when an alert of the same title was sent less than
    ``wait_duration`` seconds before (recorded, never delivered)."""

    id: Annotated[str, Field(min_length=1, max_length=64)]
    title: str
    text: str
    level: Literal["INFO", "WARN", "ERROR"]
    wait_duration: Annotated[float, Field(ge=0)] = 0.0
    throttled: bool = False


class AlertDeliveryBody(_Body):
    """The outcome of one attempt to deliver an alert to one sink (writer ``alerter``, the
    server): a replay reproduces the delivery status without sending again. ``final``: no
    further attempt follows (delivered, or the last retry failed)."""

    alert_id: str
    sink: str
    attempt: Annotated[int, Field(ge=1)]
    ok: bool
    error: str | None = None
    final: bool = False
Sha256 = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]


class FileBody(_Body):
    """A run file stored in the object store under its sha256 (``run.save()``, code snapshot).

    A later event of the same ``name`` replaces the earlier one (``live`` files change)."""

    name: FileName
    size: Annotated[StrictInt, Field(ge=0)]
    sha256: Sha256
    mtime: float | None = None
    policy: Literal["live", "end", "now"] = "now"
    upload_id: str | None = None


class ArtifactBody(_Body):
    """One version of an artifact a run logged (``role="output"``) or used (``role="input"``).

    ``version`` was assigned race-free in the artifact registry (KV) before this event was made;
    ``digest`` is the sha256 of the manifest, itself stored as an object. An output's manifest
    entries ``[path, sha256 | None, size, reference uri | None]`` may be split over ``parts``
    events (``part`` 0 .. parts-1) to keep each under the event size limit."""

    role: Literal["output", "input"]
    entity: StrictStr
    project: StrictStr
    name: Annotated[StrictStr, AfterValidator(_safe_artifact_name)]
    type: StrictStr = ""
    version: Annotated[StrictInt, Field(ge=0)]
    digest: Sha256
    description: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    size: Annotated[StrictInt, Field(ge=0)] = 0
    file_count: Annotated[StrictInt, Field(ge=0)] = 0
    aliases: dict[str, int] = Field(default_factory=dict)
    """Aliases this log moved to the version, with the registry revision of each move."""
    created: bool = False
    created_by: str | None = None
    created_at: float | None = None
    entries: Annotated[list[Entry], AfterValidator(_safe_entries)] = Field(default_factory=list)
    """Manifest entries; a name ``run.log_artifact()`` would refuse (``../x``) sends the event to
    ``dead_letters``."""
    part: Annotated[StrictInt, Field(ge=0)] = 0
    parts: Annotated[StrictInt, Field(ge=1)] = 1
    upload_id: str | None = None


class SystemSample(_Body):
    ts: float
    values: dict[StrictStr, float]


class SystemBody(_Body):
    """System-metrics samples of one writer (W&B names: ``system.cpu``, ``system.gpu.0.gpu``...).
    ``label``: the writer's label in a shared run, if it has one."""

    samples: list[SystemSample]
    label: str | None = None


class OutputLine(_Body):
    """One console line, or a later state of it (a progress bar redrawn with ``\r``): the last
    state of a ``(writer, line)`` wins. ``ts`` is when the line began."""

    line: Annotated[StrictInt, Field(ge=0)]
    stream: Literal["stdout", "stderr"]
    ts: float
    text: StrictStr


class OutputBody(_Body):
    """Console lines of one writer, numbered from 0 per writer across both streams."""

    lines: list[OutputLine]
    label: str | None = None
class MoveBody(_Body):
    """The run moved to ``entity/project/run_id`` (same entity) from ``from_path``. Recorded by the
    server (writer ``api:<id>``) after claiming the new path; the events keep their subjects."""

    entity: PathPart
    project: PathPart
    run_id: PathPart
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
    "join": JoinBody,
    "stop_requested": StopRequestedBody,
    "alert": AlertBody,
    "alert_delivery": AlertDeliveryBody,
    "file": FileBody,
    "artifact": ArtifactBody,
    "system": SystemBody,
    "output": OutputBody,
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
        return Event.model_validate({"v": v, "type": kind, "run_uid": env.get("run"), "writer": env.get("w"),
                                     "seq": env.get("s"), "ts": env.get("ts"), "body": body})
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise EventError(f"{kind} event: {where or 'envelope'}: {first.get('msg')}") from e
    except ValueError as e:
        raise EventError(str(e)) from e


