"""Small statistics on lists of figures."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (``q`` in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return float(sorted_values[k])


def summarize(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": float(statistics.median(values)),
        "min": float(min(values)),
        "max": float(max(values)),
        "n": len(values),
    }


def write_phases(steps: int, metrics: int, per_call_ns: Sequence[int], t0: float, t1: float, t2: float,
                 t3: float, t4: float) -> dict[str, float]:
    """The figures every system's write scenario reports, computed one way for all of them.

    ``t0..t4``: before import, after import, after init, after the logging loop, after finish;
    ``per_call_ns``: each log call's own duration.
    """
    calls = sorted(per_call_ns)
    return {
        "steps": steps,
        "metrics": metrics,
        "points": steps * metrics,
        "import_s": t1 - t0,
        "init_s": t2 - t1,
        "log_us_median": calls[len(calls) // 2] / 1000,
        "log_us_mean": sum(per_call_ns) / steps / 1000,
        "log_us_p99": percentile(calls, 99) / 1000,
        "finish_s": t4 - t3,
    }
