"""runstream — experiment tracking on an event log (W&B's semantics, NATS JetStream + DuckDB).

    import runstream

    run = runstream.init(project="awesome-project", config={"lr": 0.01})
    for step in range(100):
        run.log({"loss": 1 / (step + 1)})
    run.finish()

``import runstream`` starts nothing and loads only what the hot path needs; the rest loads on use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Api",
    "Artifact",
    "Run",
    "RunExistsError",
    "RunstreamError",
    "Settings",
    "UsageError",
    "__version__",
    "finish",
    "init",
    "log",
    "run",
]

run: Any = None
"""The active run of this process, or None."""

if TYPE_CHECKING:
    from .api import Api
    from .artifact import Artifact
    from .broker.errors import RunExistsError
    from .errors import RunstreamError, UsageError
    from .run import Run
    from .settings import Settings


def init(*args: Any, **kwargs: Any) -> Run:
    """Start a run; see :func:`runstream._lifecycle.init` for the arguments."""
    from ._lifecycle import init as _init

    return _init(*args, **kwargs)  # type: ignore[no-any-return]


def log(data: Any, step: int | None = None, commit: bool | None = None) -> None:
    """``run.log()`` on the active run."""
    if run is None:
        from .errors import UsageError

        raise UsageError("runstream.log() called before runstream.init()")
    run.log(data, step=step, commit=commit)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """Finish the active run (no-op without one)."""
    if run is not None:
        run.finish(exit_code=exit_code, quiet=quiet)


_LAZY = {
    "Api": (".api", "Api"),
    "Artifact": (".artifact", "Artifact"),
    "Run": (".run", "Run"),
    "Settings": (".settings", "Settings"),
    "RunstreamError": (".errors", "RunstreamError"),
    "UsageError": (".errors", "UsageError"),
    "RunExistsError": (".broker.errors", "RunExistsError"),
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'runstream' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(target[0], __name__), target[1])
