"""Where a run starts from, decided at ``init()``: resume, fork, rewind, or joining in shared mode.

A plain run needs no answer from anyone before it starts logging. These four do: the run's path
must be looked up in the path bucket, and for resume, fork and rewind the server is asked where
the run stands (its last step, runtime, and for fork/rewind the aggregates of its visible history
up to the step, which the new ``init`` event records so that a replay needs nothing but the log).

W&B's resume table: ``must`` — the run must exist; ``never`` — it must not; ``allow`` — either;
``auto`` — resume the run that did not finish in this directory (its ``resume.json`` is left
behind by a process that never reached ``finish()``), else start a new one.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import RunNotFoundError, UsageError
from .settings import RUNS_FOLDER, Settings

RESUME_MODES = ("allow", "must", "never", "auto")


@dataclass
class Plan:
    """What ``init()`` does differently for a resumed, forked, rewound or shared run."""

    uid: str
    run_id: str
    event: str = "init"
    """``init`` (this process is the run's primary writer) or ``join`` (shared mode, secondary)."""
    origin: dict[str, Any] | None = None
    claim: bool = True
    """The path is still to be claimed (a new run, a fork); False: it is the existing run's."""
    first_step: int = 0
    min_step: int = 0
    """Steps below this are refused: a fork's or rewind's own rows start after the cut."""
    existing: dict[str, Any] = field(default_factory=dict)
    """The run as the server knows it (resume, rewind; the parent for a fork)."""

    @property
    def partial(self) -> bool:
        """The init event carries only the fields given (resume, rewind: the rest is kept)."""
        return self.origin is not None and self.origin["kind"] in ("resume", "rewind")


def resume_mode(resume: Any) -> str | None:
    """W&B's ``resume`` argument → one of :data:`RESUME_MODES` or None (no resume)."""
    if resume is None or resume is False:
        return None
    if resume is True:
        return "auto"
    if resume not in RESUME_MODES:
        raise UsageError(f"resume must be one of {', '.join(RESUME_MODES)} (or True/False), not {resume!r}")
    return str(resume)


def parse_ref(text: Any, what: str, entity: str, project: str) -> tuple[str, float]:
    """``"<run_id>?_step=<N>"`` (or ``entity/project/run_id?_step=N`` of the same project) →
    ``(run_id, N)``; N may be a float."""
    if not isinstance(text, str) or "?" not in text:
        raise UsageError(f"{what} must look like '<run_id>?_step=<step>', not {text!r}")
    from urllib.parse import parse_qs

    ref, _, query = text.partition("?")
    params = parse_qs(query, keep_blank_values=True)
    raw = params.get("_step")
    if not raw or len(raw) != 1:
        raise UsageError(f"{what} {text!r} must give one _step, e.g. '{ref}?_step=100'")
    try:
        step = float(raw[0])
    except ValueError:
        raise UsageError(f"{what} {text!r}: _step {raw[0]!r} is not a number") from None
    if not math.isfinite(step) or step < 0:
        raise UsageError(f"{what} {text!r}: _step must be a finite number >= 0")
    parts = ref.split("/")
    if len(parts) == 3:
        if (parts[0], parts[1]) != (entity, project):
            raise UsageError(f"{what} {text!r} names a run of {parts[0]}/{parts[1]}; a run can only be "
                             f"forked or rewound within its own project ({entity}/{project})")
        ref = parts[2]
    elif len(parts) != 1 or not ref:
        raise UsageError(f"{what} {text!r}: give the run id (or entity/project/run_id) before '?'")
    return ref, step


def default_label() -> str:
    import socket

    return f"{socket.gethostname()}-{os.getpid()}"


class Planner:
    """Looks the run up and asks the server, over one connection, while ``init()`` waits.

    Args:
        settings: the run's settings (credentials, the server's name).
        url: the NATS URL.
        root: the parent of ``runstream-runs/`` (leftover spools of the run are sent first).
    """

    def __init__(self, settings: Settings, url: str, root: Path) -> None:
        from .broker.miniclient import MiniNats

        self.settings = settings
        self.root = root
        s = settings
        self.client = MiniNats.for_settings(url, s, name="runstream-init").connect()
        self.client.ensure_log()

    def close(self) -> None:
        self.client.close()

    def _lineage(self, entity: str, uid: str, step: float | None = None) -> dict[str, Any]:
        """Asked of a server holding ``entity`` (on a partitioned deployment, no server may hold
        every entity)."""
        from .query.client import QueryClient

        info = QueryClient(self.settings).lineage(uid, step, timeout=self.settings.init_timeout, entity=entity)
        return info or {}

    def _send_leftovers(self, entity: str, project: str, run_id: str) -> None:
        """Spools of the run left in this directory (a killed session's) go up first: the server
        must see all of the run, and a session killed before it registered the path registers it."""
        from .spool import find_spools, is_complete, read_meta
        from .sync import send_spools

        want = (entity, project, run_id)
        spools = []
        for p in find_spools(self.root / RUNS_FOLDER):
            meta = read_meta(p) or {}
            if not is_complete(p) and (meta.get("entity"), meta.get("project"), meta.get("run_id")) == want:
                spools.append(p)
        if spools:
            send_spools(self.client, spools, timeout=self.settings.finish_timeout)

    def plan(self, *, entity: str, project: str, run_id: str, new_uid: str, resume: str | None,
             fork_from: tuple[str, float] | None, resume_from: tuple[str, float] | None,
             shared: bool) -> Plan:
        path = f"{entity}/{project}/{run_id}"
        if fork_from is not None:
            return self._fork(entity, project, run_id, new_uid, *fork_from)
        if resume_from is not None:
            return self._rewind(entity, project, *resume_from)
        if not shared:
            self._send_leftovers(entity, project, run_id)
        existing = self.client.resolve_path(entity, project, run_id)
        if shared:
            return self._share(entity, project, run_id, new_uid, existing)
        if resume == "must" and existing is None:
            raise RunNotFoundError(f"resume='must': there is no run {path} to resume; "
                                   "start it without resume, or use resume='allow'")
        if resume == "never" and existing is not None:
            from .broker.errors import RunExistsError

            raise RunExistsError(path)
        if existing is None:
            return Plan(uid=new_uid, run_id=run_id)
        info = self._lineage(entity, existing)
        last = info.get("last_step")
        return Plan(uid=existing, run_id=run_id, origin={"kind": "resume", "run_uid": existing, "path": path},
                    claim=False, first_step=0 if last is None else int(last) + 1, existing=info)

    def _share(self, entity: str, project: str, run_id: str, new_uid: str, existing: str | None) -> Plan:
        from .broker.errors import RunExistsError

        if existing is None:
            try:
                self.client.claim_path(entity, project, run_id, new_uid)
                return Plan(uid=new_uid, run_id=run_id, claim=False)
            except RunExistsError:  # another writer created it first
                existing = self.client.resolve_path(entity, project, run_id)
                if existing is None:
                    raise
        return Plan(uid=existing, run_id=run_id, event="join", claim=False)

    def _at(self, entity: str, uid: str, step: float, what: str, path: str) -> dict[str, Any]:
        info = self._lineage(entity, uid, step)
        if not info:
            raise RunNotFoundError(f"{what}: run {path} is not in the server's projection yet; "
                                   "wait for it to be projected (runstream status) and try again")
        last = info.get("last_step")
        if last is None or step > last:
            raise UsageError(f"{what}: run {path} has no step {step:g} (its last step is {last}); "
                             "pick a step it logged")
        return info

    def _cut(self, kind: str, what: str, entity: str, project: str, run_id: str,
             step: float) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """The run a fork or rewind starts from, and its ``origin``: the run's uid, what the server
        knows of it up to ``step``, the origin record."""
        path = f"{entity}/{project}/{run_id}"
        self._send_leftovers(entity, project, run_id)
        uid = self.client.resolve_path(entity, project, run_id)
        if uid is None:
            raise RunNotFoundError(f"{what}: there is no run {path} to {kind}")
        info = self._at(entity, uid, step, what, path)
        origin = {"kind": kind, "run_uid": uid, "path": path, "step": step, "stats": info.get("stats") or {},
                  "last_step": info.get("step_last"), "runtime": info.get("step_runtime") or 0.0}
        return uid, info, origin

    def _fork(self, entity: str, project: str, run_id: str, new_uid: str, parent_id: str, step: float) -> Plan:
        _parent, info, origin = self._cut("fork", "fork_from", entity, project, parent_id, step)
        origin["depth"] = int(info.get("depth") or 0) + 1
        cut = math.floor(step)
        return Plan(uid=new_uid, run_id=run_id, origin=origin, first_step=cut + 1, min_step=cut + 1,
                    existing=info)

    def _rewind(self, entity: str, project: str, run_id: str, step: float) -> Plan:
        path = f"{entity}/{project}/{run_id}"
        uid, info, origin = self._cut("rewind", "resume_from", entity, project, run_id, step)
        if info.get("state") == "running":
            raise UsageError(f"resume_from: run {path} is still running; finish or stop it before rewinding "
                             "it (or wait until the server marks it crashed)")
        cut = math.floor(step)
        return Plan(uid=uid, run_id=run_id, origin=origin, claim=False, first_step=cut + 1, min_step=cut + 1,
                    existing=info)
