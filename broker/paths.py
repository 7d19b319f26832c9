"""What a key of the path bucket (``rs_paths``: ``entity.project.run_id`` → run) holds: pure.

A key is written once when a run claims its path (create-if-absent), and may later be overwritten
(one value per key, never deleted) when the run leaves the path:

* ``<run_uid>`` — the path is the run's (a live alias);
* ``{"moved": <run_uid>, "to": "entity/project/run_id"}`` — the run moved away. The id stays
  reserved for that run in this project: only the same run may claim it again (moving back), so an
  id never silently points at two runs (a spool synced later, a live process, a link by the old
  path never reach another run);
* ``{"deleted": <run_uid>}`` — the run was deleted; the id can never be used again (as in W&B).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

__all__ = ["PathEntry", "deleted_value", "moved_value", "parse_path_value"]

Status = Literal["live", "moved", "deleted"]


@dataclass(frozen=True)
class PathEntry:
    """One key's value: whose it is (``uid``), ``status``, the key's bucket ``seq`` and, for a
    moved run, where it went (``to``)."""

    uid: str
    status: Status
    seq: int = 0
    to: str | None = None

    @property
    def live(self) -> bool:
        return self.status == "live"


def moved_value(run_uid: str, to_path: str) -> bytes:
    return json.dumps({"moved": run_uid, "to": to_path}, ensure_ascii=False).encode()


def deleted_value(run_uid: str) -> bytes:
    return json.dumps({"deleted": run_uid}).encode()


def parse_path_value(data: bytes, seq: int = 0) -> PathEntry:
    """Decode a key's value; ValueError when it is none of the three forms."""
    text = data.decode()
    if not text.startswith("{"):
        if not text:
            raise ValueError("empty path value")
        return PathEntry(text, "live", seq)
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise ValueError(f"malformed path value {text!r}: {e}") from e
    if isinstance(obj, dict) and isinstance(obj.get("deleted"), str):
        return PathEntry(obj["deleted"], "deleted", seq)
    if isinstance(obj, dict) and isinstance(obj.get("moved"), str):
        to = obj.get("to")
        return PathEntry(obj["moved"], "moved", seq, to if isinstance(to, str) else None)
    raise ValueError(f"malformed path value {text!r}")
