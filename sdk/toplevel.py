"""W&B's module-level API as thin aliases of the active run: ``runstream.config``, ``summary``,
``define_metric``, ``save``, ``log_artifact``, ``use_artifact``, ``log_code``, ``alert``, ``watch``,
``unwatch``, and ``login``.

Each acts on ``runstream.run`` (the active run of the process); without one it raises a
:class:`~runstream.UsageError` that names ``runstream.init()``, as W&B does. Before ``init()``,
``runstream.config`` and ``runstream.summary`` are placeholders that raise the same error when used.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import UsageError


def active_run(what: str) -> Any:
    """The active run, or a UsageError saying to call ``runstream.init()`` before ``what``."""
    import sys

    run = sys.modules["runstream"].__dict__.get("_active_run")
    if run is None:
        raise UsageError(f"You must call runstream.init() before runstream.{what}")
    return run


class PreInit:
    """``runstream.config`` / ``runstream.summary`` while no run is active: every use raises."""

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def _fail(self, what: str) -> UsageError:
        return UsageError(f"You must call runstream.init() before runstream.{self._name}{what}")

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        raise self._fail(f".{key}")

    def __setattr__(self, key: str, value: Any) -> None:
        raise self._fail(f".{key} = ...")

    def __getitem__(self, key: Any) -> Any:
        raise self._fail(f"[{key!r}]")

    def __setitem__(self, key: Any, value: Any) -> None:
        raise self._fail(f"[{key!r}] = ...")

    def __contains__(self, key: Any) -> bool:
        raise self._fail(" (in)")

    def __iter__(self) -> Any:
        raise self._fail(" (iteration)")

    def __len__(self) -> int:
        raise self._fail(" (len)")

    def __repr__(self) -> str:
        return f"<runstream.{self._name}: no active run; call runstream.init() first>"


def define_metric(name: str, step_metric: str | None = None, summary: str | None = None,
                  goal: str | None = None, hidden: bool = False, **kwargs: Any) -> None:
    """``run.define_metric()`` on the active run."""
    active_run("define_metric()").define_metric(name, step_metric=step_metric, summary=summary, goal=goal,
                                                hidden=hidden, **kwargs)


def save(glob_str: str | os.PathLike[str] | None = None, base_path: str | os.PathLike[str] | None = None,
         policy: str = "live") -> list[str]:
    """``run.save()`` on the active run."""
    if glob_str is None:
        raise UsageError("runstream.save() needs a path or a glob pattern")
    return active_run("save()").save(glob_str, base_path=base_path, policy=policy)  # type: ignore[no-any-return]


def log_artifact(artifact_or_path: Any, name: str | None = None, type: str | None = None,
                 aliases: list[str] | None = None, tags: list[str] | None = None) -> Any:
    """``run.log_artifact()`` on the active run."""
    return active_run("log_artifact()").log_artifact(artifact_or_path, name=name, type=type, aliases=aliases,
                                                     tags=tags)


def use_artifact(artifact_or_name: Any, type: str | None = None, aliases: list[str] | None = None) -> Any:
    """``run.use_artifact()`` on the active run."""
    return active_run("use_artifact()").use_artifact(artifact_or_name, type=type, aliases=aliases)


def log_code(root: str | os.PathLike[str] | None = ".", name: str | None = None, include_fn: Any = None,
             exclude_fn: Any = None) -> Any:
    """``run.log_code()`` on the active run."""
    return active_run("log_code()").log_code(root, name=name, include_fn=include_fn, exclude_fn=exclude_fn)


def alert(title: str, text: str, level: Any = "INFO", wait_duration: Any = 60) -> None:
    """``run.alert()`` on the active run."""
    active_run("alert()").alert(title, text, level=level, wait_duration=wait_duration)


def watch(models: Any, criterion: Any = None, log: str | None = "gradients", log_freq: int = 1000,
          idx: int | None = None, log_graph: bool = False) -> None:
    """``run.watch()`` on the active run."""
    active_run("watch()").watch(models, criterion=criterion, log=log, log_freq=log_freq, idx=idx,
                                log_graph=log_graph)


def unwatch(models: Any = None) -> None:
    """``run.unwatch()`` on the active run."""
    active_run("unwatch()").unwatch(models)


def login(key: str | None = None, relogin: bool | None = None, host: str | None = None,
          anonymous: str | None = None, timeout: int | None = None, verify: bool = False) -> bool:
    """W&B's ``wandb.login()``.

    With ``key``, stores it as the HTTP API key (``api_key`` in ``<RUNSTREAM_DIR>/config.toml``,
    readable by you only, and ``RUNSTREAM_API_KEY`` for this process); with ``host``, the server's
    URL (``api_url``). Without either there is nothing to do: the local stack needs no login.

    Returns:
        True.

    Raises:
        UsageError: ``key`` is not a non-empty string without spaces.
    """
    from .settings import load_settings

    if key is None and host is None:
        return True
    changes: dict[str, str] = {}
    if key is not None:
        if not isinstance(key, str) or not key.strip() or any(c.isspace() for c in key.strip()):
            raise UsageError("login(key=...) takes an API key: a non-empty string without spaces")
        changes["api_key"] = key.strip()
    if host is not None:
        if not isinstance(host, str) or not host.startswith(("http://", "https://")):
            raise UsageError(f"login(host=...) takes the runstream server's URL (http://...), not {host!r}")
        changes["api_url"] = host.rstrip("/")
    path = load_settings().dir / "config.toml"
    write_config(path, changes)
    for k, v in changes.items():
        os.environ[f"RUNSTREAM_{k.upper()}"] = v
    return True


def write_config(path: Any, changes: dict[str, str]) -> None:
    """Set ``key = "value"`` lines in a TOML file, keeping its other lines; the file is made
    readable by its owner only (it may hold a key)."""
    import json
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    kept = [ln for ln in lines if ln.split("=", 1)[0].strip() not in changes]
    # a TOML basic string takes JSON's escapes for these characters
    # at the top: below a [table] header a key would belong to that table
    kept = [f"{k} = {json.dumps(v)}" for k, v in changes.items()] + kept
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(kept) + "\n")
    os.chmod(path, 0o600)
