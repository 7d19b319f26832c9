"""The public surface of ``import runstream``, and what importing it and starting a run may load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import runstream

HEAVY = ("nats", "aiohttp", "duckdb", "pyarrow", "pydantic", "pandas", "numpy", "asyncio", "anyio")


def test_public_names() -> None:
    assert set(runstream.__all__) == {
        "Api", "Artifact", "Run", "RunExistsError", "RunstreamError", "Settings", "UsageError", "__version__",
        "finish", "init", "log", "run",
        # W&B's module-level API (issue 15): aliases of the active run, media types, AlertLevel
        "AlertLevel", "Audio", "Histogram", "Html", "Image", "Plotly", "Table", "Video", "alert", "config",
        "define_metric", "log_artifact", "log_code", "login", "save", "summary", "unwatch", "use_artifact", "watch",
    }
    for name in runstream.__all__:
        assert getattr(runstream, name, "missing") != "missing", name


def test_run_config_and_summary_follow_the_active_run_not_the_submodules() -> None:
    """``runstream.run`` and ``runstream.config`` are also submodules' names: importing those must
    not replace the active run's (None here) or its config."""
    import runstream.config
    import runstream.run  # noqa: F401

    assert runstream.run is None
    assert repr(runstream.config) == "<runstream.config: no active run; call runstream.init() first>"
    assert repr(runstream.summary) == "<runstream.summary: no active run; call runstream.init() first>"
    with pytest.raises(AttributeError, match="follows the active run"):
        runstream.run = object()


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
