"""Lineage: which stored history *lines* a run's visible history is made of. Pure functions.

Every history point is stored once, under the line it was logged on. A plain run has one line
(named after its uid). A fork does not copy its parent's points: its visible history is a list of
*segments*, ``[line, min_step, max_step]``, that takes the parent's lines up to the fork step and
its own line from the next step on. A rewind is the same move within one run: it opens a new
*branch* whose segments are the current branch's, cut at the rewind step, plus a new line; the
older branches stay as they were (archived, still queryable), because the log still has them.

The segments of every branch of every run go to the ``history_segments`` table (the ``history``
view joins the current branch's segments to the point tables), and each run's *clock* — the
sessions that continue ``_runtime``, ``[since, runtime_offset]`` — to ``history_clock``.
"""

from __future__ import annotations

import math
from typing import Any

MIN_STEP = -(2**63)
MAX_STEP = 2**63 - 1

Segment = list[Any]
"""``[line name, min_step, max_step]`` (inclusive)."""


def line_name(run_uid: str, branch: int) -> str:
    """The stored line of a run's branch: the uid itself for branch 0, ``<uid>~<branch>`` after."""
    return run_uid if branch == 0 else f"{run_uid}~{branch}"


def cut_step(step: float) -> int:
    """The last step kept by a fork or rewind at ``step`` (float steps: up to its floor)."""
    if not math.isfinite(step):
        raise ValueError(f"fork/rewind step {step!r} is not a finite number")
    return math.floor(step)


def cut(segments: list[Segment], step: float) -> list[Segment]:
    """``segments`` limited to the steps up to ``step`` (segments entirely above it go)."""
    last = cut_step(step)
    return [[line, lo, min(hi, last)] for line, lo, hi in segments if lo <= last]


def continued(segments: list[Segment], step: float, line: str) -> list[Segment]:
    """The segments of a history that keeps ``segments`` up to ``step`` and continues on ``line``."""
    return [*cut(segments, step), [line, cut_step(step) + 1, MAX_STEP]]


def clock_until(clock: list[list[float]], since: float) -> list[list[float]]:
    """The sessions of ``clock`` that started before ``since`` (what a fork or rewind keeps)."""
    return [list(c) for c in clock if c[0] < since]


def segment_rows(run_uid: str, branch: int, segments: list[Segment], current: bool) -> list[dict[str, Any]]:
    """``history_segments`` rows of one branch."""
    return [{"run_uid": run_uid, "branch": branch, "line": line, "min_step": lo, "max_step": hi,
             "current": current} for line, lo, hi in segments]


SEGMENT_KEYS = ("run_uid", "branch", "line")
CLOCK_KEYS = ("run_uid", "since")
