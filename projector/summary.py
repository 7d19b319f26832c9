"""A run's summary, config and metric definitions as rows, derived from its fold state (pure).

Summary rules (W&B's): every logged key's summary is its last logged value, unless
``define_metric`` chose aggregates for it (``key.min``, ``key.max``, ``key.mean``, ``key.first``,
and ``key`` itself only with ``"last"``; ``"none"`` hides it). A ``summary`` event sets or deletes
keys explicitly; an explicit value wins until the key is logged again.
"""

from __future__ import annotations

from typing import Any

from .state import KeyStats, RunState
from .values import split_value

Row = tuple[str, float | None, str | None]
"""``(key, value, value_json)``."""


def metric_for(state: RunState, key: str) -> dict[str, Any] | None:
    """The ``define_metric`` that governs ``key``: an exact name first, else the most recently
    defined glob (``name*``) whose prefix matches."""
    exact = state.metrics.get(key)
    if exact is not None:
        return exact
    found = None
    for name, spec in state.metrics.items():
        if name.endswith("*") and key.startswith(name[:-1]):
            found = spec
    return found


def _aggregates(key: str, stats: KeyStats, wanted: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "none" in wanted:
        return out
    for agg in wanted:
        if agg == "last":
            out[key] = stats.last
        elif agg == "first":
            out[f"{key}.first"] = stats.first
        elif stats.count == 0:
            continue  # min/max/mean of a key never logged as a number
        elif agg == "min":
            out[f"{key}.min"] = stats.min
        elif agg == "max":
            out[f"{key}.max"] = stats.max
        elif agg == "mean":
            out[f"{key}.mean"] = stats.total / stats.count
    return out


def summary_values(state: RunState) -> dict[str, Any]:
    """The run's summary as ``{key: value}``."""
    out: dict[str, Any] = {}
    deleted = set(state.deleted)
    for key, stats in state.stats.items():
        if key in deleted or stats.logged == 0:
            continue
        spec = metric_for(state, key)
        wanted = (spec or {}).get("summary") or ["last"]
        out.update(_aggregates(key, stats, wanted))
    out.update(state.explicit)
    for key in deleted:
        out.pop(key, None)
    return out


def value_rows(values: dict[str, Any]) -> list[Row]:
    """``{key: value}`` → rows sorted by key."""
    return [(k, *split_value(values[k])) for k in sorted(values)]


def summary_rows(state: RunState) -> list[Row]:
    return value_rows(summary_values(state))


def config_rows(state: RunState) -> list[Row]:
    return value_rows(state.config)


def metric_rows(state: RunState) -> list[tuple[str, str | None, list[str] | None, str | None, bool]]:
    """``(name, step_metric, summary, goal, hidden)`` per ``define_metric``."""
    return [(name, m.get("step_metric"), m.get("summary"), m.get("goal"), bool(m.get("hidden")))
            for name, m in sorted(state.metrics.items())]
