"""runstream — experiment tracking on an event log (W&B's semantics, NATS JetStream + DuckDB).

    import runstream

    run = runstream.init(project="awesome-project", config={"lr": 0.01})
    for step in range(100):
        run.log({"loss": 1 / (step + 1)})
    run.finish()

``import runstream`` starts nothing and loads only what the hot path needs; the rest loads on use.
W&B's module-level API (``runstream.config``, ``summary``, ``define_metric``, ``save``, ...) acts on
the active run (:mod:`runstream.toplevel`).
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "AlertLevel",
    "Api",
    "Artifact",
    "Audio",
    "Histogram",
    "Html",
    "Image",
    "Plotly",
    "Run",
    "RunExistsError",
    "RunstreamError",
    "Settings",
    "Table",
    "UsageError",
    "Video",
    "__version__",
    "alert",
    "config",
    "define_metric",
    "finish",
    "init",
    "log",
    "log_artifact",
    "log_code",
    "login",
    "run",
    "save",
    "summary",
    "unwatch",
    "use_artifact",
    "watch",
]

_active_run: Any = None
"""The active run of this process (set by init() and finish()); read through ``runstream.run``."""

if TYPE_CHECKING:
    from .alerts import AlertLevel
    from .api import Api
    from .artifact import Artifact
    from .broker.errors import RunExistsError
    from .errors import RunstreamError, UsageError
    from .media import Audio, Histogram, Html, Image, Plotly, Table, Video
    from .run import Run
    from .toplevel import alert, define_metric, log_artifact, log_code, login, save, unwatch, use_artifact, watch
    from .user_settings import Settings

    run: Any
    """The active run of this process, or None."""
    config: Any
    """The active run's config (W&B's ``wandb.config``)."""
    summary: Any
    """The active run's summary (W&B's ``wandb.summary``)."""


def init(*args: Any, **kwargs: Any) -> Run:
    """Start a run; see :func:`runstream._lifecycle.init` for the arguments."""
    from ._lifecycle import init as _init

    return _init(*args, **kwargs)  # type: ignore[no-any-return]


def log(data: Any, step: int | None = None, commit: bool | None = None, sync: bool | None = None) -> None:
    """``run.log()`` on the active run (``sync``: W&B's deprecated argument, ignored)."""
    if _active_run is None:
        from .errors import UsageError

        raise UsageError("You must call runstream.init() before runstream.log()")
    _active_run.log(data, step=step, commit=commit)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """Finish the active run (no-op without one)."""
    if _active_run is not None:
        _active_run.finish(exit_code=exit_code, quiet=quiet)


_LAZY = {
    "AlertLevel": (".alerts", "AlertLevel"),
    "Api": (".api", "Api"),
    "Artifact": (".artifact", "Artifact"),
    "Run": (".run", "Run"),
    "Settings": (".user_settings", "Settings"),
    "RunstreamError": (".errors", "RunstreamError"),
    "UsageError": (".errors", "UsageError"),
    "RunExistsError": (".broker.errors", "RunExistsError"),
    **{name: (".media", name) for name in ("Audio", "Histogram", "Html", "Image", "Plotly", "Table", "Video")},
    **{name: (".toplevel", name) for name in ("alert", "define_metric", "log_artifact", "log_code", "login",
                                              "save", "unwatch", "use_artifact", "watch")},
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'runstream' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(target[0], __name__), target[1])


class _Package(ModuleType):
    """``runstream.run``, ``runstream.config`` and ``runstream.summary`` follow the active run.

    They are properties of the package's class, so they win over the attributes the import system
    sets for the submodules of the same names (``runstream.run``, ``runstream.config``)."""

    @property
    def run(self) -> Any:
        return self.__dict__.get("_active_run")

    @run.setter
    def run(self, value: Any) -> None:
        _ignore_submodule("run", value)

    @property
    def config(self) -> Any:
        active = self.__dict__.get("_active_run")
        if active is not None:
            return active.config
        from .toplevel import PreInit

        return PreInit("config")

    @config.setter
    def config(self, value: Any) -> None:
        _ignore_submodule("config", value)

    @property
    def summary(self) -> Any:
        active = self.__dict__.get("_active_run")
        if active is not None:
            return active.summary
        from .toplevel import PreInit

        return PreInit("summary")

    @summary.setter
    def summary(self, value: Any) -> None:
        _ignore_submodule("summary", value)


def _ignore_submodule(name: str, value: Any) -> None:
    if not isinstance(value, ModuleType):
        raise AttributeError(f"runstream.{name} follows the active run; it cannot be assigned")


sys.modules[__name__].__class__ = _Package
