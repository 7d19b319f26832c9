"""``runstream demo`` (and ``make demo``): a simulated training on the local stack, then a query.

What it does, in order:

1. starts the embedded stack (nats-server + runstream server) unless ``RUNSTREAM_NATS_URL`` points
   at an existing cluster;
2. trains four simulated models with different optimizers, learning rates and batch sizes (200
   steps each, ``loss``/``accuracy`` every step, ``val/*`` every 50 steps);
3. runs one training that diverges and raises inside ``with runstream.init(...)`` → state ``failed``;
4. runs one training in ``mode="offline"`` (spool only), then sends it with ``sync_paths``;
5. forks the first run at step 100 with a lower learning rate (``fork_from``: the fork reads its
   parent's first 101 steps in place and trains on from step 101);
6. rewinds the diverged run to step 40 and continues it with a sane learning rate
   (``resume_from``: same run id, the rows after step 40 stay as an archived branch) → finished;
7. queries the projection with SQL (read-your-writes) and prints each run's state and best loss;
8. says how to query further, where the web app is, and how to stop the stack, which it leaves
   running.

The runs go to ``demo/awesome-project``; their local files under ``<RUNSTREAM_DIR>/demo-runs``.
Training is in-process, one run at a time (one active run per process).
"""

from __future__ import annotations

import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

ENTITY = "demo"
PROJECT = "awesome-project"
STEPS = 200


class Diverged(RuntimeError):
    """Raised by the failing demo run, as a real training loop would on a NaN loss."""


@dataclass(frozen=True)
class Trial:
    """One simulated training: its hyperparameters and how its curves behave."""

    optimizer: str
    learning_rate: float
    batch_size: int
    seed: int

    @property
    def config(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer, "learning_rate": self.learning_rate,
                "batch_size": self.batch_size, "epochs": 10, "steps": STEPS, "model": "mlp-2x256"}


TRIALS = (
    Trial("sgd", 0.1, 32, 1),
    Trial("sgd", 0.03, 64, 2),
    Trial("adam", 0.003, 64, 3),
    Trial("adam", 0.001, 128, 4),
)
DIVERGING = Trial("sgd", 1.5, 32, 5)
OFFLINE = Trial("adamw", 0.002, 64, 6)
FORK_STEP = 100
FORKED = Trial("sgd", 0.01, 32, 7)
"""The first trial's learning rate, decayed from step 101 on (``fork_from``)."""
REWIND_STEP = 40
REWOUND = Trial("sgd", 0.05, 32, 8)
"""The diverged trial, continued from step 41 with a learning rate that does not blow up."""


def curves(trial: Trial, step: int, rng: random.Random) -> tuple[float, float]:
    """Simulated training loss and accuracy at ``step``: exponential decay to a floor, plus noise."""
    speed = {"sgd": 0.6, "adam": 1.0, "adamw": 1.1}.get(trial.optimizer, 0.8)
    rate = speed * min(trial.learning_rate, 0.01) ** 0.5 * 0.25
    lr_miss = abs(math.log10(trial.learning_rate / 0.003))  # 0.003 is the sweet spot
    floor = 0.05 + 0.02 * math.log2(trial.batch_size / 32 + 1) + 0.04 * lr_miss
    loss = floor + 2.3 * math.exp(-rate * step) + rng.gauss(0, 0.03) * math.exp(-step / 150)
    accuracy = max(0.0, min(1.0, 1.0 - loss / 2.4 - 0.05 + rng.gauss(0, 0.01)))
    return max(loss, 1e-4), accuracy


def train(run: Any, trial: Trial, start: int = 0) -> None:
    """Log the steps ``start`` … ``STEPS - 1`` of a simulated training to ``run``."""
    rng = random.Random(trial.seed)
    best = 0.0
    for step in range(start, STEPS):
        loss, acc = curves(trial, step, rng)
        row: dict[str, Any] = {"loss": loss, "accuracy": acc, "epoch": step * 10 // STEPS}
        if step % 50 == 49:
            row["val/loss"] = loss * 1.08 + 0.02
            row["val/accuracy"] = acc * 0.97
        run.log(row, step=step)
        best = max(best, acc)
    run.summary["best_accuracy"] = best


def train_diverging(run: Any, trial: Trial) -> None:
    """A learning rate too high: the loss grows, turns NaN, and the training loop raises."""
    rng = random.Random(trial.seed)
    loss = 2.3
    for step in range(STEPS):
        loss *= 1.0 + trial.learning_rate * 0.05 * (1 + rng.random())
        if step == 60:
            run.log({"loss": math.nan, "accuracy": 0.1}, step=step)
            raise Diverged(f"loss is NaN at step {step} (learning_rate={trial.learning_rate})")
        run.log({"loss": loss, "accuracy": max(0.0, 0.12 - step * 0.0005)}, step=step)


def main(out: TextIO | None = None) -> int:
    """Run the demo; return 0 when every run reached the state it should have, else 1."""
    import runstream
    from runstream import stack
    from runstream.progress import ProgressBar
    from runstream.settings import load_settings
    from runstream.sync import sync_paths

    out = out or sys.stdout
    settings = load_settings()

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    if settings.embedded:
        st = stack.up(settings)
        say(f"demo: local stack running — nats {st.nats_url}, data in {st.dir}")
    else:
        say(f"demo: using the NATS server at {settings.nats_url}")
    files = settings.run_dir if settings.run_dir else settings.dir / "demo-runs"
    expected: dict[str, str] = {}  # run id → the state it must end in

    for trial in TRIALS:
        say(f"\ndemo: training {trial.optimizer} lr={trial.learning_rate} batch={trial.batch_size}")
        with runstream.init(entity=ENTITY, project=PROJECT, config=trial.config, dir=files,
                            group="sweep-1", job_type="train", tags=["demo", trial.optimizer]) as run:
            train(run, trial)
        say(f"demo: run {run.path} ({run.name}) → {run.state}")
        expected[run.id] = "finished"

    say(f"\ndemo: training {DIVERGING.optimizer} lr={DIVERGING.learning_rate} (this one diverges)")
    failing: Any = None
    try:
        with runstream.init(entity=ENTITY, project=PROJECT, config=DIVERGING.config, dir=files,
                            group="sweep-1", job_type="train", tags=["demo", "unstable"]) as failing:
            train_diverging(failing, DIVERGING)
    except Diverged as e:
        say(f"demo: the training raised {type(e).__name__}: {e}")
    say(f"demo: run {failing.path} ({failing.name}) → {failing.state}")
    expected[failing.id] = "failed"

    say("\ndemo: training offline (spool only), then `runstream sync`")
    with runstream.init(entity=ENTITY, project=PROJECT, config=OFFLINE.config, dir=files, mode="offline",
                        job_type="train", tags=["demo", "offline"]) as offline:
        train(offline, OFFLINE)
    with ProgressBar(None, "sync", file=out) as bar:
        def progress(done: int, total: int) -> None:
            if total and bar.total is None:
                bar.total = total
            bar.set(done)

        report = sync_paths([offline.dir], settings, progress=progress)
    if report.errors:
        for error in report.errors:
            say(f"demo: sync error: {error}")
        return 1
    say(f"demo: synced {offline.path}: {report.events_sent} events sent")
    expected[offline.id] = "finished"

    first = next(iter(expected))
    say(f"\ndemo: forking run {first} at step {FORK_STEP} with learning_rate={FORKED.learning_rate} "
        f"(fork_from=\"{first}?_step={FORK_STEP}\")")
    with runstream.init(entity=ENTITY, project=PROJECT, config={"learning_rate": FORKED.learning_rate},
                        dir=files, fork_from=f"{first}?_step={FORK_STEP}", group="sweep-1", job_type="train",
                        tags=["demo", "fork"]) as fork:
        train(fork, FORKED, start=fork.step)
    say(f"demo: run {fork.path} ({fork.name}) → {fork.state}: steps 0-{FORK_STEP} read from {first}, "
        f"{FORK_STEP + 1}-{STEPS - 1} its own")
    expected[fork.id] = "finished"

    say(f"\ndemo: rewinding the diverged run {failing.id} to step {REWIND_STEP} with "
        f"learning_rate={REWOUND.learning_rate} (resume_from=\"{failing.id}?_step={REWIND_STEP}\")")
    with runstream.init(entity=ENTITY, project=PROJECT, config={"learning_rate": REWOUND.learning_rate},
                        dir=files, resume_from=f"{failing.id}?_step={REWIND_STEP}") as rewound:
        train(rewound, REWOUND, start=rewound.step)
    say(f"demo: run {rewound.path} → {rewound.state}; its steps after {REWIND_STEP} before the rewind stay "
        "readable as branch 0 (Api().run(path).history(branch=0))")
    expected[failing.id] = "finished"

    return _report(settings, expected, say)


def results_sql(run_ids: list[str]) -> str:
    """The demo's query: state, optimizer, learning rate and best loss of the given runs."""
    ids = ", ".join("'" + i.replace("'", "''") + "'" for i in run_ids)
    return f"""
SELECT r.run_id AS id, r.name, r.state, r.mode, r.origin_kind AS origin,
       replace(opt.value_json, '"', '') AS optimizer, lr.value AS learning_rate,
       round(min(h.value), 4) AS best_loss, max(h.step) AS last_step
FROM runs r
LEFT JOIN config opt ON opt.run_uid = r.run_uid AND opt.key = 'optimizer'
LEFT JOIN config lr ON lr.run_uid = r.run_uid AND lr.key = 'learning_rate'
LEFT JOIN history h ON h.run_uid = r.run_uid AND h.key = 'loss' AND isfinite(h.value)
WHERE r.entity = '{ENTITY}' AND r.project = '{PROJECT}' AND r.run_id IN ({ids})
GROUP BY ALL
ORDER BY best_loss NULLS LAST
""".strip()


def _report(settings: Any, expected: dict[str, str], say: Any) -> int:
    from runstream.query.client import QueryClient
    from runstream.query.render import render_table, table_rows

    client = QueryClient(settings)
    sql = results_sql(list(expected))
    # read-your-writes: wait until the projection has every event the stream holds now
    result = client.sql(sql, wait_seq=client.stream_last_seq())
    columns, rows = table_rows(result.table)
    say("\ndemo: the runs as the projection sees them (SQL over DuckDB):\n")
    say(render_table(columns, rows))
    states = {row["id"]: row["state"] for row in result.to_pylist()}
    wrong = {i: (states.get(i), want) for i, want in expected.items() if states.get(i) != want}
    for run_id, (got, want) in wrong.items():
        say(f"demo: ERROR run {ENTITY}/{PROJECT}/{run_id} is {got or 'missing'}, expected {want}")

    first = next(iter(expected))
    say("Query it:")
    say(f"  runstream runs {ENTITY}/{PROJECT}")
    say(f"  runstream show {ENTITY}/{PROJECT}/{first}")
    say(f"  runstream sql \"SELECT name, state, runtime FROM runs WHERE project = '{PROJECT}'\"")
    say("  runstream ui                      # the web app: workspace, charts, run pages")
    hint = command_hint()
    if hint:
        say(hint)
    if settings.embedded:
        from runstream import stack

        try:
            say(f"The web app is at {stack.http_url(settings).rstrip('/')}/")
        except Exception:  # the URL is a convenience; the demo's result does not depend on it
            pass
        say(f"The local stack keeps running (data in {settings.dir}); stop it with: runstream down")
    return 1 if wrong else 0


def command_hint(which: Any = None, executable: str | None = None) -> str | None:
    """How to get the ``runstream`` command, when it is not on ``PATH`` (``make demo`` runs it from
    ``.venv/bin``); None when it is."""
    import shutil

    which = which or shutil.which
    if which("runstream"):
        return None
    bindir = Path(executable or sys.executable).parent
    if not (bindir / "activate").is_file():
        return f"The runstream command is {bindir / 'runstream'} (that folder is not on your PATH)"
    return (f"The runstream command is {bindir / 'runstream'}; put it on your PATH with:\n"
            f"  . {bindir / 'activate'}\n"
            "(or pip install runstream into your own environment)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
