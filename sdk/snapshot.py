"""The code and environment snapshot of a run: ``requirements.txt`` and, in a dirty git work
tree, ``diff.patch``, saved as run files (setting ``code_snapshot``, ``RUNSTREAM_CODE_SNAPSHOT=0``
turns it off).

Taken on the uploader thread, never on ``init()``'s path: ``importlib.metadata`` lists the
installed distributions in milliseconds (``pip freeze`` would start a second interpreter).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_TIMEOUT = 10.0
SNAPSHOT_DIR = "files"
"""Under the run's folder: where the snapshot files are written before upload."""


def requirements() -> str:
    """``name==version`` of every installed distribution, sorted, one a line."""
    from importlib import metadata

    seen: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.name
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={dist.version}"
    return "".join(f"{line}\n" for _, line in sorted(seen.items()))


def git_diff(cwd: Path) -> str | None:
    """``git diff HEAD`` of the work tree at ``cwd`` (staged and unstaged changes), or None when
    it is not a git work tree, git is missing, or nothing changed."""
    from .gitdir import in_work_tree

    if not in_work_tree(cwd):
        return None
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0"}
    try:
        proc = subprocess.run(["git", "diff", "HEAD", "--no-color", "--no-ext-diff", "--binary"], cwd=cwd,
                              env=env, capture_output=True, timeout=GIT_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    return proc.stdout.decode("utf-8", errors="surrogateescape")


def write_snapshot(run_dir: Path, cwd: Path) -> list[Path]:
    """Write the snapshot files under ``run_dir/files``; return them."""
    out = run_dir / SNAPSHOT_DIR
    out.mkdir(parents=True, exist_ok=True)
    written = []
    req = out / "requirements.txt"
    req.write_text(requirements())
    written.append(req)
    diff = git_diff(cwd)
    if diff is not None:
        patch = out / "diff.patch"
        patch.write_bytes(diff.encode("utf-8", errors="surrogateescape"))
        written.append(patch)
    return written
