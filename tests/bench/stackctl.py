"""A fresh local runstream stack (nats-server + server) under a temp ``RUNSTREAM_DIR`` for one child."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Stack:
    dir: Path
    env: dict[str, str]
    nats_pid: int | None = None
    server_pid: int | None = None
    duckdb_bytes: int = 0
    extra: dict[str, int] = field(default_factory=dict)


def _settings(data_dir: Path):  # type: ignore[no-untyped-def]
    from runstream.settings import load_settings

    return load_settings(env={"RUNSTREAM_DIR": str(data_dir)})


def available() -> str | None:
    """None when the stack can be brought up here, else why not."""
    try:
        from runstream import stack  # noqa: F401
        from runstream.settings import load_settings  # noqa: F401
    except ImportError as e:
        return f"runstream.stack: {e}"
    return None


@contextlib.contextmanager
def local_stack(workdir: Path) -> Iterator[Stack]:
    """Bring a stack up under ``workdir/data`` (not timed), yield its env, take it down; after that,
    ``duckdb_bytes`` holds the size of the DuckDB file (+ WAL) the server left."""
    from runstream import stack

    data = workdir / "data"
    s = _settings(data)
    st = stack.up(s)
    env = {"RUNSTREAM_DIR": str(data), "RUNSTREAM_RUN_DIR": str(workdir / "runs"), "RUNSTREAM_QUIET": "1"}
    handle = Stack(dir=data, env=env, nats_pid=st.nats_pid, server_pid=st.server_pid)
    try:
        yield handle
    finally:
        if st.nats_pid:  # a child that died while it held nats-server stopped
            with contextlib.suppress(OSError):
                os.kill(st.nats_pid, signal.SIGCONT)
        stack.down(s)
        handle.duckdb_bytes = sum(p.stat().st_size for p in data.glob("runstream.duckdb*"))
