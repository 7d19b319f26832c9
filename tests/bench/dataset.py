"""The data row 5 reads back, the same for runstream and every peer: a project of small runs with a
random learning rate and a final loss, and what the filter "lr > 0.01, sorted by loss" must return."""

from __future__ import annotations

import random
from dataclasses import dataclass

LR_THRESHOLD = 0.01
SEED = 5


@dataclass(frozen=True)
class SmallRun:
    run_id: str
    lr: float
    loss: float
    """The final loss (the run's summary): the last of its ``STEPS`` logged losses."""

    def rows(self, t0: float) -> list[tuple[int, float, dict[str, float]]]:
        """(step, timestamp, values): the loss falls to its final value."""
        return [(s, t0 + s, {"loss": self.loss * (STEPS - s), "acc": s / STEPS}) for s in range(STEPS)]


STEPS = 3


def small_runs(n: int, seed: int = SEED) -> list[SmallRun]:
    """``n`` runs, lr log-uniform in [1e-4, 1e-1] (a third above the threshold), distinct losses."""
    rng = random.Random(seed * 1_000_003 + n)
    return [
        SmallRun(f"r{i:06d}", round(10 ** rng.uniform(-4, -1), 8), round(rng.uniform(0.05, 2.0), 9)) for i in range(n)
    ]


def expected(runs: list[SmallRun]) -> list[str]:
    """Run ids with lr > threshold, by final loss ascending."""
    return [r.run_id for r in sorted((r for r in runs if r.lr > LR_THRESHOLD), key=lambda r: r.loss)]


def history_values(step: int, metrics: int) -> dict[str, float]:
    return {f"m{j}": step * 0.001 + j for j in range(metrics)}
