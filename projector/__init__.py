"""runstream.projector — folds the event stream into DuckDB, checkpointed; the crash reaper.

Importing this package starts nothing and loads nothing heavy: the names below are imported on
first use, so ``from runstream.projector.errors import ProjectorError`` (the CLI does) costs no
pyarrow, DuckDB or pydantic import (~0.45 s). Start reading at :mod:`.fold` (the pure fold),
then :mod:`.store` (one transaction per batch) and :mod:`.service` (the consumer loop); the SQL
tables are documented in :mod:`.schema`.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import CatchUpTimeout, EventRejected, ProjectorError, StoreError
    from .fold import Changes, Record, fold
    from .reaper import Reaper
    from .service import Projector, catch_up, replay_file
    from .state import ProjectionState, RunState
    from .store import Store

_WHERE = {
    "CatchUpTimeout": "errors", "EventRejected": "errors", "ProjectorError": "errors", "StoreError": "errors",
    "Changes": "fold", "Record": "fold", "fold": "fold",
    "Reaper": "reaper",
    "Projector": "service", "catch_up": "service", "replay_file": "service",
    "ProjectionState": "state", "RunState": "state",
    "Store": "store",
}

__all__ = [
    "CatchUpTimeout",
    "Changes",
    "EventRejected",
    "ProjectionState",
    "Projector",
    "ProjectorError",
    "Reaper",
    "Record",
    "RunState",
    "Store",
    "StoreError",
    "catch_up",
    "fold",
    "replay_file",
]


class _Package(types.ModuleType):
    """This package's module type: importing the submodule :mod:`.fold` binds the package's
    ``fold`` attribute to the function ``fold`` (as an eager ``from .fold import fold`` did),
    never to the submodule, whichever import loads it first."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "fold" and isinstance(value, types.ModuleType):
            value = value.fold
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
