"""The Run: what ``runstream.init()`` returns.

``log()`` is the hot path: it packs the row, copies it into the spool and returns. Everything else
(batching, publishing, heartbeats) happens on the :class:`~runstream.worker.Worker` thread.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .broker.codec import encode_event, envelope, flatten, pack, packer
from .config import Config, Summary
from .errors import UsageError
from .outbox import EVENT_LIMIT, SEAL_BYTES, SEAL_LINE_BYTES, SEAL_LINES, SEAL_ROWS, check_row, split_keys
from .settings import Settings
from .spool import K_BATCH, K_EVENT, K_KEYS, K_LINE, K_LINES, K_ROW, Spool
from .worker import Worker

METADATA_WAIT = 3.0
"""Seconds ``finish()`` waits for run metadata still being collected (git, NVML) before going on."""
_SUMMARY_KINDS = ("min", "max", "mean", "last", "first", "none")


class Run:
    """A run being recorded. Use as a context manager or call :meth:`finish`.

    Attributes:
        id: the run id, unique in its project (``path`` = ``entity/project/id``).
        name: the display name (generated ``adjective-noun-N`` unless given).
        uid: the immutable internal key used in event subjects.
        dir: the folder of this run's local files (its spool lives there).
    """

    def __init__(self, *, settings: Settings, entity: str, project: str, run_id: str, name: str,
                 uid: str, writer: str, run_dir: Path, spool: Spool, config: dict[str, Any],
                 tags: list[str], notes: str | None, group: str | None, job_type: str | None,
                 mode: str, start_time: float, allow_val_change: bool = False) -> None:
        self.settings = settings
        self.entity = entity
        self.project = project
        self.id = run_id
        self._name = name
        self.uid = uid
        self.writer = writer
        self.dir = run_dir
        self.mode = mode
        self._tags = tuple(tags)
        self._notes = notes
        self._group = group
        self._job_type = job_type
        self.start_time = start_time
        self._spool = spool
        self._lock = spool.lock
        self._pack = spool._pack
        self._keysets: dict[tuple[str, ...], int] = {}
        self._seq = 0
        self._step = 0
        self._max_step = -1
        self._pending_rows = 0
        self._batch_kids: set[int] = set()
        """Keysets of the rows since the last seal: the batch marker lists them for log_rows."""
        self._seal_from = spool.end
        self._seal_bytes = 0
        self._min_step = 0
        """Steps below are refused: a fork's or rewind's own history starts after its cut."""
        self.origin: dict[str, Any] | None = None
        self.label: str | None = None
        """This writer's label in shared mode."""
        self.resumed = False
        self._pending_lines = 0
        self._line_bytes = 0
        self._line_pack = packer().pack
        """Console lines are packed under the spool lock (the tee may write from any thread), with
        their own packer: ``log()`` uses ``_pack`` outside the lock."""
        self._warned_backwards = False
        self._finished = False
        self.exit_code: int | None = None
        self.state = "running"
        self._worker: Worker | None = None
        self._metadata_thread: threading.Thread | None = None
        self._stop_requested: dict[str, Any] | None = None
        """Set by the worker when someone stopped the run from outside (see :mod:`.control`)."""
        self._alerts: Any = None
        self._closers: list[Callable[[], None]] = []
        self._deferred: list[Callable[[], None]] = []
        """Started by the metadata thread, off ``init()``: the sampler, the console flusher."""
        """Stopped first in ``finish()``, in reverse order: the console tee, the system sampler."""
        self.config = Config(config, self._publish_config, allow_val_change=allow_val_change)
        self.summary = Summary(self._sync_mirror, _NoMirror(), self._publish_summary)

    # -- identity ----------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}/{self.id}"

    # -- descriptive fields: assigning one records a ``meta`` event (SQL, the Api, the web app) -----

    @property
    def name(self) -> str:
        """The display name; assigning it renames the run (a ``meta`` event)."""
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise UsageError(f"run name must be a non-empty string, not {value!r}")
        self._edit("name", value)

    @property
    def notes(self) -> str | None:
        return self._notes

    @notes.setter
    def notes(self, value: str | None) -> None:
        if value is not None and not isinstance(value, str):
            raise UsageError(f"run notes must be a string, not {type(value).__name__}")
        self._edit("notes", value)

    @property
    def tags(self) -> tuple[str, ...]:
        """The run's tags; assign a new list or tuple to change them (``run.tags += ("x",)``)."""
        return self._tags

    @tags.setter
    def tags(self, value: Iterable[str]) -> None:
        if isinstance(value, str) or not all(isinstance(t, str) for t in value):
            raise UsageError("tags must be a list or tuple of strings")
        self._edit("tags", tuple(value))

    @property
    def group(self) -> str | None:
        return self._group

    @group.setter
    def group(self, value: str | None) -> None:
        if value is not None and not isinstance(value, str):
            raise UsageError(f"run group must be a string, not {type(value).__name__}")
        self._edit("group", value)

    @property
    def job_type(self) -> str | None:
        return self._job_type

    @job_type.setter
    def job_type(self, value: str | None) -> None:
        if value is not None and not isinstance(value, str):
            raise UsageError(f"run job_type must be a string, not {type(value).__name__}")
        self._edit("job_type", value)

    def _edit(self, field: str, value: Any) -> None:
        if self._finished:
            raise UsageError(f"run {self.path} is finished; edit it with runstream.Api().run(...).update()")
        setattr(self, f"_{field}", value)
        self._emit("meta", {field: list(value) if field == "tags" else value})

    @property
    def url(self) -> str | None:
        """The run's page in the web app (None when no web app is known: an offline run, or a remote
        broker without ``RUNSTREAM_API_URL``)."""
        base = self._web_base()
        if base is None:
            return None
        from .console import run_url

        return run_url(base, self.entity, self.project, self.id)

    def get_url(self) -> str | None:
        return self.url

    def get_project_url(self) -> str | None:
        base = self._web_base()
        if base is None:
            return None
        from .console import project_url

        return project_url(base, self.entity, self.project)

    def _web_base(self) -> str | None:
        if "_web" not in self.__dict__:
            from ._lifecycle import web_base

            self.__dict__["_web"] = web_base(self.settings) if self.mode == "online" else None
        return self.__dict__["_web"]  # type: ignore[no-any-return]

    @property
    def project_url(self) -> str | None:
        return self.get_project_url()

    @property
    def step(self) -> int:
        """The step the next ``log()`` without ``step=`` writes to."""
        return self._step

    @property
    def spool_path(self) -> Path:
        return self._spool.path

    def __repr__(self) -> str:
        return f"<Run {self.path} name={self.name!r} state={self.state}>"

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.finish()
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish(exit_code=255, _state="killed")
        else:
            self.finish(exit_code=1)

    # -- the hot path ------------------------------------------------------------------------------

    def log(self, data: Mapping[str, Any], step: int | None = None, commit: bool | None = None) -> None:
        """Record one row of metrics.

        Args:
            data: metric name → value. Nested dicts become dotted keys; numpy scalars are fine.
            step: the step to write at. Unset: the current step (advanced after each commit).
                A step lower than one already logged is stored at that step (a later write of the
                same key wins) with a one-time warning — never silently dropped.
            commit: False keeps the step open for more keys; default True when ``step`` is unset.

        Raises:
            UsageError: the run is finished, or the step is not a non-negative integer.
            ValueError: a single value is too large to publish.
        """
        if self._finished:
            raise UsageError(f"run {self.path} is finished; start a new one with runstream.init()")
        if type(data) is not dict:
            if not isinstance(data, Mapping):
                raise TypeError(f"run.log() takes a dict of metrics, not {type(data).__name__}")
            data = dict(data)
        cur = self._step if step is None else self._check_step(step)
        keys = tuple(data)
        kid = self._keysets.get(keys)
        if kid is None:
            kid = self._new_keyset(keys)
        try:
            payload = self._pack((cur, time.time(), kid, list(data.values())))
        except (TypeError, ValueError, OverflowError) as e:
            data, payload = self._pack_media(data, cur, e)
        if len(payload) > SEAL_BYTES:
            self._log_large(data, payload)
        else:
            spool = self._spool
            with self._lock:
                spool.append(K_ROW, payload)
                self._batch_kids.add(kid)
                self._pending_rows += 1
                self._seal_bytes += len(payload)
                if self._pending_rows >= SEAL_ROWS or self._seal_bytes >= SEAL_BYTES:
                    self._seal_locked()
        if step is None:
            if commit is not False:
                self._step = cur + 1
        elif commit:
            self._step = max(self._step, cur + 1)

    def _pack_media(self, data: dict[str, Any], step: int, error: Exception) -> tuple[dict[str, Any], bytes]:
        """A row ``_pack`` refused: store its media (images, tables, figures...) and pack their
        references instead (off the hot path: plain rows never come here)."""
        from .media import has_media, resolve

        if not has_media(data):
            raise ValueError(f"run.log(): a value cannot be recorded: {error}") from None
        row = resolve(self, data, step)
        try:
            return row, self._pack((step, time.time(), self._keysets[tuple(data)], list(row.values())))
        except (TypeError, ValueError, OverflowError) as e:
            raise ValueError(f"run.log(): a value cannot be recorded: {e}") from None

    def _check_step(self, step: Any) -> int:
        try:
            as_int = int(step)
        except (TypeError, ValueError):
            raise UsageError(f"step must be an integer, not {step!r}") from None
        if isinstance(step, bool) or as_int != step or as_int < 0:
            raise UsageError(f"step must be a non-negative integer, not {step!r}")
        if as_int < self._min_step:
            kind = (self.origin or {}).get("kind", "fork")
            raise UsageError(f"run {self.path} continues a {kind} at step {self._min_step - 1}: its own history "
                             f"starts at step {self._min_step}, so step {as_int} cannot be logged")
        if as_int < self._max_step:
            if not self._warned_backwards:
                self._warned_backwards = True
                warnings.warn(
                    f"runstream: run {self.path}: step {as_int} is lower than step {self._max_step} already "
                    "logged. The row is stored at step {as_int}; a later value of the same key at the same "
                    "step replaces the earlier one (this warning is shown once).".replace("{as_int}", str(as_int)),
                    stacklevel=3,
                )
        else:
            self._max_step = as_int
        if as_int > self._step:
            self._step = as_int
        return as_int

    def _new_keyset(self, keys: tuple[str, ...]) -> int:
        for k in keys:
            if not isinstance(k, str):
                raise TypeError(f"metric names must be strings, not {k!r}")
        kid = len(self._keysets)
        with self._lock:
            self._spool.append(K_KEYS, self._pack((kid, list(keys))))
        self._keysets[keys] = kid
        return kid

    def _log_large(self, data: dict[str, Any], payload: bytes) -> None:
        """A row over the batch size: checked value by value, then split over several events."""
        flat = flatten(data)
        check_row(flat)
        parts = len(split_keys(flat))
        with self._lock:
            self._seal_locked()
            start = self._spool.end
            self._spool.append(K_ROW, payload)
            self._seq += 1
            seq = self._seq
            self._seq += parts - 1
            self._spool.append(K_BATCH, self._pack((seq, parts, time.time(), start, self._spool.end)))
            self._seal_from = self._spool.end
            self._pending_rows = 0
            self._seal_bytes = 0
        self._wake()

    # -- sealing and events (all under the spool lock) -------------------------------------------------

    def _seal_locked(self) -> None:
        if not self._pending_rows:
            return
        self._seq += 1
        spool = self._spool
        start = self._seal_from
        spool.append(K_BATCH, self._pack((self._seq, 1, time.time(), start, spool.end, sorted(self._batch_kids))))
        self._seal_from = spool.end
        self._pending_rows = 0
        self._seal_bytes = 0
        self._batch_kids = set()

    def _seal_lines_locked(self) -> None:
        """Close the pending console lines into one ``output`` event (a ``C`` marker)."""
        if not self._pending_lines:
            return
        self._seq += 1
        self._spool.append(K_LINES, self._line_pack((self._seq, time.time(), self._pending_lines)))
        self._pending_lines = 0
        self._line_bytes = 0

    def _seal(self, wait: bool = True) -> None:
        """Seal pending rows into a batch, then pending console lines into an ``output`` event.
        ``wait=False`` (the worker's timer) gives up when the logging thread holds the lock: a busy
        logger seals by itself every SEAL_ROWS rows, and waiting would only queue the worker behind
        it (a lock convoy under the GIL)."""
        if not self._lock.acquire(wait):
            return
        try:
            self._seal_locked()
            self._seal_lines_locked()
        finally:
            self._lock.release()

    def _append_lines(self, lines: Iterable[tuple[int, str, float, str]]) -> None:
        """Spool console line states ``(line, stream, ts, text)`` as cheap ``L`` records, at once (a
        kill loses none); the worker's timer, a size bound or the next event seals them into one
        ``output`` event. Pending log rows stay unsealed, so printing every step keeps full batches."""
        spool = self._spool
        with self._lock:
            pack = self._line_pack
            for line in lines:
                payload = pack(line)
                spool.append(K_LINE, payload)
                self._pending_lines += 1
                self._line_bytes += len(payload)
                if self._pending_lines >= SEAL_LINES or self._line_bytes >= SEAL_LINE_BYTES:
                    self._seal_lines_locked()

    def _append_event(self, type_: str, body: dict[str, Any]) -> int:
        """Spool one non-log event after sealing pending rows and console lines (so order is kept);
        return its seq."""
        with self._lock:
            self._seal_locked()
            self._seal_lines_locked()
            seq = self._spool_event_locked(type_, body)
            self._seal_from = self._spool.end
        return seq

    def _append_aside(self, type_: str, body: dict[str, Any]) -> int:
        """Spool an event that need not be ordered with log rows (system samples): pending rows
        stay unsealed, so sampling does not cut log batches short."""
        with self._lock:
            return self._spool_event_locked(type_, body)

    def _spool_event_locked(self, type_: str, body: dict[str, Any]) -> int:
        """Encode one event with the next seq and append it to the spool (lock held)."""
        seq = self._seq + 1
        raw = encode_event(envelope(type_, self.uid, self.writer, seq, time.time(), body))
        if len(raw) > EVENT_LIMIT:
            raise ValueError(f"{type_} event of run {self.path} is {len(raw) / 1e6:.1f} MB; the limit "
                             f"is {EVENT_LIMIT / 1e6:.1f} MB")
        self._seq = seq
        self._spool.append(K_EVENT, pack((seq, type_, raw)))
        return seq

    def _emit(self, type_: str, body: dict[str, Any]) -> None:
        if self._finished:
            raise UsageError(f"run {self.path} is finished")
        self._append_event(type_, body)
        self._wake()

    def _wake(self) -> None:
        if self._worker is not None:
            self._worker.wake()

    def _publish_config(self, changes: dict[str, Any]) -> None:
        self._emit("config", {"set": changes})

    def _publish_summary(self, changes: dict[str, Any], delete: list[str]) -> None:
        from .media import has_media, resolve

        if has_media(changes):
            changes = resolve(self, changes, self._step)
        self._emit("summary", {"set": changes, "delete": delete})

    def _sync_mirror(self) -> None:
        if self._worker is not None and self._worker.is_alive():
            self._worker.sync_mirror()

    # -- other API ---------------------------------------------------------------------------------

    def define_metric(self, name: str, step_metric: str | None = None, summary: str | None = None,
                      goal: str | None = None, hidden: bool = False, step_sync: bool | None = None,
                      overwrite: bool | None = None) -> None:
        """Declare how a metric is summarized and plotted (``name`` may end with ``*``).

        Args:
            summary: comma-separated ``min,max,mean,last,first,none`` — the summary values kept.
            step_metric: another metric to use as this one's x-axis.
            goal: ``minimize`` or ``maximize``.
            step_sync, overwrite: accepted for W&B's signature; no effect.
        """
        if not isinstance(name, str) or not name or ("*" in name and not name.endswith("*")):
            raise UsageError(f"define_metric name {name!r} must be a metric name, optionally ending with '*'")
        kinds: list[str] | None = None
        if summary is not None:
            kinds = [s.strip() for s in summary.split(",") if s.strip()]
            bad = [k for k in kinds if k not in _SUMMARY_KINDS]
            if bad:
                raise UsageError(f"define_metric summary {bad[0]!r} is not one of {', '.join(_SUMMARY_KINDS)}")
        if goal is not None and goal not in ("minimize", "maximize"):
            raise UsageError("define_metric goal must be 'minimize' or 'maximize'")
        body: dict[str, Any] = {"name": name, "hidden": bool(hidden)}
        if step_metric:
            body["step_metric"] = step_metric
        if kinds is not None:
            body["summary"] = kinds
        if goal:
            body["goal"] = goal
        self._emit("define_metric", body)

    # -- files and artifacts (see run_files.py) -----------------------------------------------------

    def save(self, glob_str: str | Any, base_path: str | Any = None, policy: str = "live") -> list[str]:
        """Upload files matching a path or glob as run files; returns their stored names.

        Args:
            glob_str: a file or a pattern (``*``, ``**``); relative to the working directory.
            base_path: names are relative to it (default: the run's folder for files in it, else
                the pattern's folder).
            policy: ``live`` uploads now and again whenever a file changes while the run lives
                (new matches included), ``end`` at finish, ``now`` once, now.

        Uploads run on a background thread: this returns at once. A killed process's saves go up
        with ``runstream sync``.

        Raises:
            UsageError: bad policy, no such file, a name that is unsafe or too long, or more than
                10,000 matches.
        """
        from .run_files import save

        return save(self, glob_str, base_path, policy)

    def log_artifact(self, artifact_or_path: Any, name: str | None = None, type: str | None = None,
                     aliases: list[str] | None = None, tags: list[str] | None = None) -> Any:
        """Log an :class:`~runstream.Artifact` (or a file or folder path) as this run's output;
        returns it at once.

        A path becomes an artifact named ``name`` (default ``run-<id>-<file name>``) of type
        ``type`` (default ``unspecified``), as in W&B. ``tags`` is accepted for W&B's signature
        and not stored.

        The uploader stores its files (content-addressed: known content is not sent again),
        takes the next version (``v0``, ``v1``, …) unless identical content already has one,
        and points ``latest`` (only ever forward) and ``aliases`` at it. ``artifact.wait()``
        blocks until then and sets ``artifact.version``.
        """
        from .artifact import Artifact
        from .run_files import artifact_of_path, log_artifact

        if isinstance(artifact_or_path, (str, os.PathLike)):
            artifact_or_path = artifact_of_path(self, artifact_or_path, name, type)
        elif isinstance(artifact_or_path, Artifact) and (name is not None or type is not None):
            raise UsageError("log_artifact(): name= and type= go with a path; an Artifact has its own")
        if isinstance(aliases, str):
            aliases = [aliases]
        return log_artifact(self, artifact_or_path, aliases)

    def log_code(self, root: str | os.PathLike[str] | None = ".", name: str | None = None,
                 include_fn: Callable[..., bool] | None = None,
                 exclude_fn: Callable[..., bool] | None = None) -> Any:
        """Save the source files under ``root`` (``*.py`` unless ``include_fn`` says otherwise) as a
        ``code`` artifact (``source-<project>-<id>`` unless ``name`` is given); returns it, or None
        when no file matched. ``.git``, virtual environments, caches and run folders are skipped."""
        from .run_files import log_code

        return log_code(self, "." if root is None else root, name, include_fn, exclude_fn)

    def watch(self, models: Any, criterion: Any = None, log: str | None = "gradients", log_freq: int = 1000,
              idx: int | None = None, log_graph: bool = False) -> None:
        """Log histograms of a PyTorch model's gradients and/or parameters every ``log_freq`` steps
        (``log``: ``gradients``, ``parameters``, ``all`` or None), through torch hooks."""
        from .watch import watch

        watch(self, models, log=log, log_freq=log_freq)

    def unwatch(self, models: Any = None) -> None:
        """Remove the hooks :meth:`watch` added (of ``models``, or all)."""
        from .watch import unwatch

        unwatch(self, models)

    def use_artifact(self, ref: str, type: str | None = None, aliases: list[str] | None = None) -> Any:
        """Record that this run uses an artifact version and return it (``.download(root)``).

        Args:
            ref: ``name:alias``, ``name:v3`` or ``entity/project/name:alias`` (default ``latest``),
                or an :class:`~runstream.Artifact` logged before (its version, once stored).
            type, aliases: accepted for W&B's signature.

        Raises:
            UsageError: no such artifact or version, or the run is offline.
        """
        from .artifact import Artifact
        from .run_files import use_artifact

        if isinstance(ref, Artifact):
            ref.wait()
            ref = f"{ref.name}:{ref.version or 'latest'}"
        return use_artifact(self, ref)

    def _uploads_pending(self) -> int:
        up = self.__dict__.get("_uploader")
        return 0 if up is None else int(up.pending())

    def finish(self, exit_code: int | None = None, quiet: bool | None = None, *, _state: str | None = None) -> None:
        """End the run: spool the ``finish`` event and wait (bounded) for every event's PubAck.

        Args:
            exit_code: 0 → finished, anything else → failed.
        """
        if self._finished:
            return
        while self._closers:
            try:
                self._closers.pop()()
            except Exception as e:  # a failing tee or sampler must not keep the run from finishing
                warnings.warn(f"runstream: run {self.path}: stopping console or system capture failed: {e}",
                              stacklevel=2)
        meta = self._metadata_thread
        if meta is not None and meta.is_alive():
            meta.join(METADATA_WAIT)  # a short run still gets its metadata recorded
        up = self.__dict__.get("_uploader")
        if up is not None:
            up.finish(self.settings.finish_timeout)  # end files and queued uploads, bounded
        code = 0 if exit_code is None else int(exit_code)
        if _state is None and self._stop_requested is not None:  # stopped from outside: killed
            _state, code = "killed", code or 255
        state = _state or ("finished" if code == 0 else "failed")
        runtime = max(0.0, time.time() - self.start_time)
        self._append_event("finish", {"exit_code": code, "state": state, "runtime": runtime})
        self._finished = True
        self.exit_code = code
        self.state = state
        from . import _lifecycle

        _lifecycle.finished(self, quiet=self.settings.quiet if quiet is None else quiet)

    def alert(self, title: str, text: str, level: Any = "INFO", wait_duration: Any = 60) -> None:
        """Record an alert; the runstream server delivers it to the configured webhook and email.

        Args:
            title: what happened, in a few words; alerts are throttled per title.
            text: the details.
            level: ``"INFO"``, ``"WARN"`` or ``"ERROR"`` (or an enum with those values).
            wait_duration: seconds (or a ``datetime.timedelta``): an alert with the same title
                within this long after the last one sent is recorded as throttled, not delivered.

        Raises:
            UsageError: the run is finished, or an argument is invalid.
        """
        from .alerts import AlertThrottle, alert_body

        if self._alerts is None:
            self._alerts = AlertThrottle()
        self._emit("alert", alert_body(title, text, level, wait_duration, self._alerts))

    # used by _lifecycle
    def _origin(self, plan: Any) -> None:
        """Continue where a resumed, forked or rewound run stands (see :mod:`runstream.origins`)."""
        self.origin = plan.origin
        self.resumed = plan.origin is not None and plan.origin["kind"] == "resume"
        self._step = plan.first_step
        self._max_step = plan.first_step - 1
        self._min_step = plan.min_step

    def _attach(self, worker: Worker) -> None:
        self._worker = worker
        self.summary._mirror = worker.mirror

    @property
    def _last_seq(self) -> int:
        return self._seq


class _NoMirror:
    last: dict[str, Any] = {}
    count: dict[str, int] = {}

