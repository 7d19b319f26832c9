"""Helpers for SDK integration tests: project the stream into a DuckDB file and query it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import duckdb


def project(tmp_path: Path, url: str) -> duckdb.DuckDBPyConnection:
    """Project everything in the stream into ``tmp_path/proj.duckdb``; return a read connection."""
    from runstream.projector import catch_up

    db = tmp_path / "proj.duckdb"
    catch_up(db, url, timeout=60)
    return duckdb.connect(str(db), read_only=True)


def run_uid(con: duckdb.DuckDBPyConnection, path: str) -> str:
    row = con.execute("SELECT run_uid FROM runs WHERE path = ?", [path]).fetchone()
    assert row is not None, f"run {path} is not in the runs table"
    return str(row[0])


def one(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    row = con.execute(sql, params or []).fetchone()
    return None if row is None else row[0] if len(row) == 1 else row


def history(con: duckdb.DuckDBPyConnection, path: str, key: str) -> list[tuple[int, Any]]:
    uid = run_uid(con, path)
    return [tuple(r) for r in con.execute(
        "SELECT step, coalesce(value::VARCHAR, value_json) FROM history WHERE run_uid = ? AND key = ? ORDER BY step",
        [uid, key]).fetchall()]


def python(script: str, env: dict[str, str], cwd: Path, timeout: float = 120,
           check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run a Python snippet in a fresh interpreter with runstream's environment."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"script failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def spawn(script: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-u", "-c", textwrap.dedent(script)], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def env_with(base: dict[str, str], **extra: str) -> dict[str, str]:
    out = dict(base)
    out.update(extra)
    out.setdefault("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
    return out


def run_gated(script: str, env: dict[str, str], cwd: Path, meanwhile: Any, *args: str,
              timeout: float = 600) -> tuple[str, str]:
    """Run a trainer script that prints ``half`` and then waits for a line on stdin: call
    ``meanwhile()`` (kill a node, restart a server...) at that point, let it go on, and return its
    ``(stdout, stderr)`` once it exited 0. The child never outlives the call."""
    p = subprocess.Popen([sys.executable, "-u", "-c", textwrap.dedent(script), *args], env=env, cwd=cwd,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdin is not None
        first = p.stdout.readline().strip()
        assert first == "half", f"the trainer said {first!r}: {p.stderr.read() if p.stderr else ''}"
        meanwhile()
        p.stdin.write("go\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    return out, err
