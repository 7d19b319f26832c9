"""The benchmark suite (issue 3): runstream against W&B, MLflow and Aim, in one run.

``python -m tests.bench [--quick] [--reps N] [--out FILE] ...`` — see :mod:`.cli`. Every
scenario × system runs in a fresh interpreter (:mod:`.child`), so start-up time and the peak RSS of
the process tree are measured; the orchestrator interleaves systems in a rotated order across
repetitions and prints one table (median, min–max, target, ratio runstream/peer) plus a JSON file.

This package imports nothing heavy at import time: a child measuring ``import runstream`` must start
from a clean interpreter.
"""
