"""runstream.projector — folds the event stream into DuckDB, checkpointed; the crash reaper.

Importing this package starts nothing. Start reading at :mod:`.fold` (the pure fold), then
:mod:`.store` (one transaction per batch) and :mod:`.service` (the consumer loop); the SQL tables
are documented in :mod:`.schema`.
"""

from .errors import CatchUpTimeout, EventRejected, ProjectorError, StoreError
from .fold import Changes, Record, fold
from .reaper import Reaper
from .service import Projector, catch_up, replay_file
from .state import ProjectionState, RunState
from .store import Store

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
