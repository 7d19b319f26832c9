"""The public surface of ``import runstream``, and what importing it and starting a run may load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import runstream

HEAVY = ("nats", "aiohttp", "duckdb", "pyarrow", "pydantic", "pandas", "numpy", "asyncio", "anyio")


def test_public_names() -> None:
    assert set(runstream.__all__) == {
        "Api", "Artifact", "Run", "RunExistsError", "RunstreamError", "Settings", "UsageError", "__version__",
        "finish", "init", "log", "run",
    }
    for name in runstream.__all__:
        assert getattr(runstream, name, "missing") != "missing", name


def _loaded_after(code: str, env: dict[str, str], cwd: Path) -> dict[str, object]:
    script = code + "\nimport sys, json, threading\nprint(json.dumps({'modules': sorted(sys.modules), " \
                    "'threads': threading.active_count()}))"
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=cwd, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def test_import_starts_nothing_and_stays_light(tmp_path: Path, rs_env: dict[str, str]) -> None:
    got = _loaded_after("import runstream", rs_env, tmp_path)
    assert got["threads"] == 1
    assert not [m for m in got["modules"] if m.split(".")[0] in HEAVY]  # type: ignore[union-attr]


def test_a_whole_run_never_loads_the_heavy_clients(tmp_path: Path, rs_env: dict[str, str]) -> None:
    """The SDK path (init, log, finish) needs neither nats-py nor asyncio nor the query stack."""
    got = _loaded_after(
        "import runstream\nrun = runstream.init(project='light')\nrun.log({'x': 1.0})\nrun.finish()",
        rs_env, tmp_path)
    assert not [m for m in got["modules"] if m.split(".")[0] in HEAVY]  # type: ignore[union-attr]
