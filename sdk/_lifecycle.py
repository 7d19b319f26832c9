"""init() and the end of a run: settings, ids, the local stack, the worker, exit hooks, output."""

from __future__ import annotations

import atexit
import getpass
import os
import sys
import threading
import time
import warnings
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .broker.names import new_run_id, new_run_uid, new_writer_id, validate_name, validate_run_id
from .config import as_config, select_keys
from .errors import StackError, UsageError
from .settings import RUNS_FOLDER, Settings, load_settings
from .spool import Spool
from .worker import Worker

if TYPE_CHECKING:
    from .run import Run

_active: Run | None = None
_beside: list[Run] = []
"""Runs started with ``reinit="create_new"`` next to the active one: finished at exit too."""
_state_lock = threading.Lock()
_hooks_installed = False
_exit_code: list[int | None] = [None]
_exception: list[type[BaseException] | None] = [None]


def init(entity: str | None = None, project: str | None = None, id: str | None = None,
         name: str | None = None, notes: str | None = None, tags: list[str] | tuple[str, ...] | None = None,
         config: Any = None, group: str | None = None, job_type: str | None = None,
         dir: str | os.PathLike[str] | None = None, mode: str | None = None,
         settings: Settings | dict[str, Any] | None = None, resume: bool | str | None = None,
         fork_from: str | None = None, resume_from: str | None = None, label: str | None = None,
         reinit: bool | str | None = None, anonymous: str | None = None,
         config_exclude_keys: list[str] | None = None, config_include_keys: list[str] | None = None,
         allow_val_change: bool | None = None, save_code: bool | None = None, force: bool | None = None,
         tensorboard: bool | None = None, sync_tensorboard: bool | None = None,
         monitor_gym: bool | None = None) -> Any:
    """Start a run and return it (see :class:`runstream.Run`).

    Args:
        entity: who owns the run (default: ``RUNSTREAM_ENTITY`` or your login name).
        project: project name (default ``"uncategorized"``).
        id: run id, unique in the project (default: 8 random characters of a-z0-9).
        name: display name (default: a generated ``adjective-noun-N``).
        notes, tags, group, job_type: descriptive fields, as in W&B.
        config: hyperparameters: a dict, an argparse.Namespace, absl's ``FLAGS`` or the path of a YAML
            file (``key: value``, or W&B's ``key: {value: v, desc: ...}``; needs PyYAML).
        config_include_keys, config_exclude_keys: keep only these keys of ``config`` / drop these.
        allow_val_change: let later ``config.update()`` calls change values without saying so.
        reinit: what happens when a run is already active in this process, as in W&B:
            ``"return_previous"`` (``"default"``, the default, outside notebooks) returns it and
            starts nothing, ``"finish_previous"`` (True; ``"default"`` in a notebook) finishes it
            first, ``"create_new"`` starts another run beside it (``runstream.run`` stays the first).
        save_code: also save the main script (``sys.argv[0]``) as a run file.
        anonymous: W&B's ``never``/``allow``/``must``; accepted, no effect (there are no accounts).
        force, tensorboard, sync_tensorboard, monitor_gym: accepted for W&B's signature; no effect.
        dir: where the ``runstream/`` folder of local run files goes (default: the working dir).
        mode: ``online`` (default), ``offline`` (spool only; ``runstream sync`` later), ``disabled``,
            or ``shared``: one of several processes writing the run ``id`` (each its own writer; the
            one that creates the run is its primary writer, whose finish sets the final state).
        settings: a Settings, or a dict of setting overrides.
        resume: ``"allow"``, ``"must"``, ``"never"`` or ``"auto"`` (True), as in W&B: continue the run
            ``id`` at its last step + 1 (config merges, summary kept, tags given replace the old).
        fork_from: ``"<run_id>?_step=<N>"``: a new run whose history is that run's up to step N,
            then its own from N + 1, with its config merged under the new one.
        resume_from: ``"<run_id>?_step=<N>"``: rewind that run to step N and continue it (same id;
            the rows after N stay reachable as an archived branch).
        label: this writer's label in shared mode (default ``<host>-<pid>``).

    Raises:
        RunExistsError: ``id`` is already taken in the project (or resume="never" and it exists).
        RunNotFoundError: resume="must", fork_from or resume_from name a run that does not exist.
        UsageError: an argument is invalid.
    """
    from .run import Run

    global _active
    from .user_settings import overrides_of

    overrides, opts = overrides_of(settings)
    try:
        s = load_settings(**overrides)
    except (TypeError, ValueError) as e:
        raise UsageError(f"init(settings=...): {e}") from None
    project = project if project is not None else opts.get("project")
    id = id if id is not None else opts.get("run_id")
    name = name if name is not None else opts.get("run_name")
    notes = notes if notes is not None else opts.get("run_notes")
    tags = tags if tags is not None else opts.get("run_tags")
    group = group if group is not None else opts.get("run_group")
    job_type = job_type if job_type is not None else opts.get("run_job_type")
    resume = resume if resume is not None else opts.get("resume")
    fork_from = fork_from if fork_from is not None else opts.get("fork_from")
    resume_from = resume_from if resume_from is not None else opts.get("resume_from")
    how = reinit_mode(reinit if reinit is not None else opts.get("reinit"))
    save_code = save_code if save_code is not None else opts.get("save_code")
    if anonymous is not None and anonymous not in ("never", "allow", "must"):
        raise UsageError(f"anonymous must be 'never', 'allow' or 'must', not {anonymous!r}")
    if mode is not None:
        s = s.replace(mode=mode)
    shared = s.mode == "shared"
    if shared:
        s = s.replace(mode="online")
    if s.mode not in ("online", "offline", "disabled"):
        raise UsageError(f"mode must be online, offline, shared or disabled, not {s.mode!r}")
    if s.mode == "disabled":
        from .disabled import DisabledRun

        disabled = DisabledRun(entity, project, id, name, select_keys(as_config(config), config_include_keys,
                                                                      config_exclude_keys))
        with _state_lock:
            if _active is None:
                _set_module_run(disabled)  # runstream.config, .log, ... act on it (and record nothing)
        return disabled
    with _state_lock:
        previous = _active
    if previous is not None and how == "return_previous":
        if not s.quiet:
            sys.stderr.write(f"runstream: init() called while run {previous.path} is active and reinit is "
                             f"{reinit if reinit is not None else 'default'!r}, so it returns that run "
                             "(reinit=True finishes it and starts a new one)\n")
        return previous
    if previous is not None and how == "finish_previous":
        if not s.quiet:
            sys.stderr.write(f"runstream: finishing the previous run {previous.path} (reinit is "
                             f"{reinit!r}; one active run per process unless reinit='create_new')\n")
        previous.finish()
    beside = previous is not None and how == "create_new"
    if beside:
        s = s.replace(console="off")  # the active run's tee already records this process's output
    try:
        entity = validate_name("entity", entity or s.entity or _login())
        project = validate_name("project", project or "uncategorized")
        run_id = validate_run_id(id) if id is not None else new_run_id()
    except ValueError as e:
        raise UsageError(str(e)) from None
    if tags is not None and (isinstance(tags, str) or not all(isinstance(t, str) for t in tags)):
        raise UsageError("tags must be a list of strings")
    try:
        cfg = select_keys({**_config_defaults(), **as_config(config)}, config_include_keys, config_exclude_keys)
    except TypeError as e:
        raise UsageError(str(e)) from None
    start = time.time()
    uid = new_run_uid()
    writer = new_writer_id()
    root = Path(dir) if dir is not None else (s.run_dir or Path.cwd())
    url: str | None = None
    if s.mode == "online":
        from . import stack

        try:
            url = stack.nats_url(s)
        except StackError:
            raise
    plan = _plan(s, url, root, entity=entity, project=project, id=id, run_id=run_id, uid=uid, resume=resume,
                 fork_from=fork_from, resume_from=resume_from, shared=shared)
    if plan is not None:
        uid, run_id = plan.uid, plan.run_id
    if shared and label is None:
        from .origins import default_label

        label = default_label()
    if name is None and (plan is None or not plan.partial):
        from .naming import generate_name

        name = generate_name()
    stamp = datetime.fromtimestamp(start).strftime("%Y%m%d_%H%M%S")
    run_dir = root / RUNS_FOLDER / f"{'offline-' if s.mode == 'offline' else ''}run-{stamp}-{_safe(run_id)}"
    meta = {"run_uid": uid, "writer": writer, "entity": entity, "project": project, "run_id": run_id,
            "name": name, "mode": s.mode, "created": start, "pid": os.getpid()}
    spool = Spool.create(run_dir / f"spool-{writer}.rsp", meta)
    shown = name or str((plan.existing.get("name") if plan else None) or run_id)
    run = Run(settings=s, entity=entity, project=project, run_id=run_id, name=shown, uid=uid, writer=writer,
              run_dir=run_dir, spool=spool, config=cfg, tags=list(tags or []), notes=notes, group=group,
              job_type=job_type, mode=s.mode, start_time=start, allow_val_change=bool(allow_val_change))
    run.label = label
    body: dict[str, Any] = {"entity": entity, "project": project, "run_id": run_id, "name": name, "notes": notes,
                            "tags": list(tags or []), "config": cfg, "group": group, "job_type": job_type,
                            "start_time": start, "mode": s.mode}
    if plan is not None:
        run._origin(plan)
        if plan.partial:  # resume, rewind: what is not given is kept
            for key, given in (("name", name), ("notes", notes), ("tags", tags), ("group", group),
                               ("job_type", job_type)):
                if given is None:
                    del body[key]
        if plan.origin is not None:
            body["origin"] = plan.origin
    if label is not None:
        body["label"] = label
    if plan is not None and plan.event == "join":
        run._append_event("join", {"label": label, "start_time": start})
        if cfg:
            run._append_event("config", {"set": cfg})
    else:
        run._append_event("init", body)
    if s.mode == "online":
        from .resume_file import write_resume_file

        write_resume_file(root, entity, project, run_id, uid)

    def claim(client: Any) -> None:
        from .broker.errors import RunExistsError

        try:
            client.claim_path(entity, project, run_id, uid)
        except RunExistsError:
            # our own claim whose PubAck was lost in a reconnect is not a conflict
            if client.resolve_path(entity, project, run_id) != uid:
                raise

    worker = Worker(spool, s, url, run._seal, run._append_event,
                    claim=claim if plan is None or plan.claim else None)
    if url is not None:
        from .control import StopListener

        worker.control = StopListener(run)
    run._attach(worker)
    worker.start()
    if id is not None and url is not None:
        try:
            settled = worker.claimed.wait(s.init_timeout)
        except BaseException:
            _abandon(run, worker)
            raise
        if not settled:
            warnings.warn(
                f"runstream: cannot reach NATS at {url} to confirm that run id {run_id!r} is free; "
                f"logging to the spool in {run_dir} and sending when the broker is back",
                stacklevel=2,
            )
    with _state_lock:
        if beside:
            _beside.append(run)
        else:
            _active = run
    _install_hooks()
    if not beside:
        _set_module_run(run)
    if not s.quiet:
        from .console import RunInfo, render_start

        sys.stderr.write(render_start(RunInfo(name=shown, entity=entity, project=project, id=run_id,
                                              dir=run_dir, mode=s.mode, cwd=Path.cwd(),
                                              web_url=run._web_base())))
        sys.stderr.flush()
    from .telemetry import attach

    attach(run)  # after the banner: the console tee records the user's output, not ours
    run._metadata_thread = threading.Thread(target=_record_metadata, args=(run,), daemon=True,
                                            name="runstream-metadata")  # starts what attach deferred
    run._metadata_thread.start()
    if save_code:
        _save_script(run)
    return run


CONFIG_DEFAULTS = "config-defaults.yaml"
"""As in W&B: a file of this name in the working directory holds config defaults (``config=`` wins)."""


def _config_defaults() -> dict[str, Any]:
    path = Path(CONFIG_DEFAULTS)
    if not path.is_file():
        return {}
    try:
        return as_config(path)
    except UsageError as e:  # e.g. no PyYAML: the run goes on without the defaults, saying why
        sys.stderr.write(f"runstream: {CONFIG_DEFAULTS} not used: {e}\n")
        return {}


REINIT = ("default", "return_previous", "finish_previous", "create_new")


def reinit_mode(reinit: Any) -> str:
    """W&B's ``reinit`` → what to do with an active run: True is ``finish_previous``, False and None
    ``default``, which is ``finish_previous`` in a notebook and ``return_previous`` elsewhere."""
    if reinit is True:
        return "finish_previous"
    if reinit is None or reinit is False:
        reinit = "default"
    if reinit not in REINIT:
        raise UsageError(f"reinit must be True, False or one of {', '.join(REINIT)}, not {reinit!r}")
    if reinit == "default":
        return "finish_previous" if _in_notebook() else "return_previous"
    return str(reinit)


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    get = getattr(shell, "get_ipython", None)
    kernel = get() if callable(get) else None
    return kernel is not None and type(kernel).__name__ == "ZMQInteractiveShell"


def _save_script(run: Any) -> None:
    """``save_code=True``: the main script as a run file (best effort: ``python -c`` has none)."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] not in ("", "-c", "-m") else None
    if script is None or not script.is_file():
        return
    try:
        run.save(str(script.resolve()), base_path=str(script.resolve().parent), policy="now")
    except UsageError as e:
        sys.stderr.write(f"runstream: save_code: {e}\n")


def web_base(s: Settings) -> str | None:
    """The web app's base URL for links (``run.url``): ``api_url`` when set, else the local stack's
    (never started for this); None when there is none."""
    if s.api_url:
        return s.api_url.rstrip("/")
    if not s.embedded:
        return None
    from .stack import status

    try:
        return status(s).http_url
    except Exception:
        return None


def _plan(s: Settings, url: str | None, root: Path, *, entity: str, project: str, id: str | None, run_id: str,
          uid: str, resume: Any, fork_from: Any, resume_from: Any, shared: bool) -> Any:
    """Resume, fork, rewind or shared mode: look the run up before anything is spooled (None for
    a plain new run)."""
    if (resume is None or resume is False) and fork_from is None and resume_from is None and not shared:
        return None  # the common case imports nothing more
    from .origins import parse_ref, resume_mode
    from .resume_file import read_resume_file

    how = resume_mode(resume)
    fork = parse_ref(fork_from, "fork_from", entity, project) if fork_from is not None else None
    rewind = parse_ref(resume_from, "resume_from", entity, project) if resume_from is not None else None
    if sum(x is not None for x in (how, fork, rewind)) > 1:
        raise UsageError("give only one of resume, fork_from and resume_from")
    if shared and (how or fork or rewind):
        raise UsageError("mode='shared' joins a run as it is: it cannot also resume, fork or rewind")
    if shared and id is None:
        raise UsageError("mode='shared' needs the id of the run the processes share: init(id=..., mode='shared')")
    if how == "auto" and id is None:
        found = read_resume_file(root, entity, project)
        if found is None:
            return None  # nothing left unfinished here: a new run
        run_id, how = found, "allow"
    elif how is not None and id is None:
        raise UsageError(f"resume={resume!r} needs the id of the run to resume: init(id=..., resume=...)")
    if how is None and fork is None and rewind is None and not shared:
        return None
    if url is None:
        raise UsageError("resume, fork_from, resume_from and mode='shared' need the broker: they cannot run "
                         "offline")
    from .origins import Planner

    planner = Planner(s, url, root)
    try:
        return planner.plan(entity=entity, project=project, run_id=run_id, new_uid=uid,
                            resume="allow" if how == "auto" else how, fork_from=fork, resume_from=rewind,
                            shared=shared)
    finally:
        planner.close()


def _abandon(run: Any, worker: Worker) -> None:
    """init() failed after the spool was made: remove the spool so nothing is ever sent."""
    run._finished = True
    worker.stop(0.5)
    spool = run._spool
    spool.close()
    try:
        spool.path.unlink()
        spool.path.parent.rmdir()
    except OSError:
        pass


def _record_metadata(run: Any) -> None:
    """On a background thread: start what ``init()`` deferred (the sampler, the console flusher),
    the code snapshot's uploader (its imports cost ~10 ms, kept off ``init()``), then collect and
    record the run's metadata."""
    for start in run._deferred:
        try:
            start()
        except Exception as e:  # system metrics and the console's flusher are best effort
            sys.stderr.write(f"runstream: run {run.path}: {e}\n")
    if run.settings.code_snapshot and not run._finished:
        try:
            from .run_files import uploader

            uploader(run)
        except Exception as e:  # the snapshot is best effort too
            sys.stderr.write(f"runstream: code snapshot of run {run.path} not started: {e}\n")
    try:
        from .metadata import collect_metadata

        md = collect_metadata()
    except Exception as e:  # metadata is best effort; the run goes on without it
        md = {"error": f"metadata collection failed: {e}"}
    try:
        if not run._finished:
            run._emit("metadata", {"metadata": md})
    except Exception:
        pass


def _login() -> str:
    try:
        return getpass.getuser() or "user"
    except Exception:
        return "user"


def _safe(run_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)[:64]


# -- the end of a run --------------------------------------------------------------------------------


def finished(run: Any, *, quiet: bool) -> None:
    """Drain the worker, print the closing blocks, release the spool."""
    global _active
    worker: Worker | None = run._worker
    timeout = run.settings.finish_timeout
    all_acked = True
    if worker is not None:
        all_acked = worker.stop(timeout)
    spool = run._spool
    if run.mode == "online":
        from .resume_file import clear_resume_file

        clear_resume_file(run.dir.parent.parent, run.uid)
    pending = 0 if run.mode != "online" else max(0, run._last_seq - spool.acked)
    if run.mode == "online" and pending == 0 and not run._uploads_pending():
        spool.set_complete()
    mirror = worker.mirror if worker is not None else None
    _write_run_json(run, run.summary.as_dict() if mirror else {})
    if not quiet:
        from .console import RunInfo, render_finish

        up = run.__dict__.get("_uploader")
        names = up.synced_files if up else set()
        media = sum(1 for n in names if n.startswith("media/"))  # media are run files under media/
        synced = None if run.mode != "online" else (len(names) - media, media, up.synced_artifact_files if up else 0)
        info = RunInfo(name=run.name, entity=run.entity, project=run.project, id=run.id, dir=run.dir,
                       mode=run.mode, cwd=Path.cwd(), pending=pending, web_url=run._web_base(), synced=synced)
        sys.stderr.write(render_finish(info, dict(mirror.series) if mirror else {},
                                       run.summary.as_dict() if mirror else {}))
        sys.stderr.flush()
    if worker is not None and worker.error is not None and not isinstance(worker.error, KeyboardInterrupt):
        sys.stderr.write(f"runstream: run {run.path} could not be sent: {worker.error}\n")
    if run.mode == "online" and (pending or not all_acked) and quiet:
        # not quiet: render_finish above already printed this warning
        err = worker.last_error if worker is not None else None
        sys.stderr.write(
            f"runstream: {pending} event(s) of run {run.path} were not acknowledged within {timeout:.0f}s"
            f"{f' (last error: {err})' if err else ''}. They are safe in {spool.path}; "
            f"send them with: runstream sync {run.dir}\n"
        )
    spool.close()
    with _state_lock:
        if run in _beside:
            _beside.remove(run)
            return
        if _active is run:
            _active = None
    _set_module_run(None)


def _write_run_json(run: Any, summary: dict[str, Any]) -> None:
    """``config.json`` and ``summary.json`` in the run's folder, for a person (or a script) to read
    without the server; values JSON cannot hold are written as text."""
    import json

    for name, data in (("config.json", run.config.as_dict()), ("summary.json", summary)):
        try:
            text = json.dumps(data, indent=2, sort_keys=True, default=_json_text, allow_nan=True)
            (run.dir / name).write_text(text + "\n", encoding="utf-8")
        except (OSError, TypeError, ValueError) as e:
            sys.stderr.write(f"runstream: run {run.path}: cannot write {run.dir / name}: {e}\n")


def _json_text(value: Any) -> Any:
    to_json = getattr(value, "to_json", None)  # media references
    if callable(to_json):
        return to_json()
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError):
            pass
    return str(value)


def _set_module_run(run: Any) -> None:
    mod = sys.modules.get("runstream")
    if mod is not None:
        mod.__dict__["_active_run"] = run  # read by the package's ``run``/``config``/``summary``


def active() -> Any:
    return _active


# -- exit hooks: finish at interpreter exit; failed on an uncaught exception or non-zero exit ---------


def _install_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    original_excepthook = sys.excepthook
    original_exit = sys.exit

    def excepthook(tp: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        _exception[0] = tp
        original_excepthook(tp, value, tb)

    def exit_(code: Any = None) -> None:
        _exit_code[0] = code if isinstance(code, int) else (0 if code is None else 1)
        original_exit(code)

    sys.excepthook = excepthook
    sys.exit = exit_  # type: ignore[assignment]
    atexit.register(_at_exit)
    os.register_at_fork(after_in_child=_after_fork)


def _after_fork() -> None:
    """In a forked child (a multiprocessing worker): the parent's runs are not this process's. Their
    copies stop recording (the console tee and log() would write into the parent's spool), and
    the child starts with no active run: it calls ``init()`` for its own, as in W&B."""
    global _active
    for run in [*_beside, _active]:
        if run is not None:
            run._finished = True
    _beside.clear()
    _active = None
    _set_module_run(None)


def _at_exit() -> None:
    for run in [*_beside, _active]:
        if run is not None:
            _finish_at_exit(run)


def _finish_at_exit(run: Any) -> None:
    exc = _exception[0]
    if exc is not None and issubclass(exc, KeyboardInterrupt):
        run.finish(exit_code=255, _state="killed")
    elif exc is not None:
        run.finish(exit_code=1)
    else:
        run.finish(exit_code=_exit_code[0] or 0)
