"""``runstream-runs/resume.json``: the run this directory would continue with ``resume="auto"``.

Written at every online ``init()`` and removed by ``finish()``, so it is left behind only by a
process that never finished (a crash, a kill). Kept apart from :mod:`.origins` so that a plain
``init()`` pays for nothing more than a small file write.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .settings import RUNS_FOLDER

RESUME_FILE = "resume.json"


def resume_file(root: Path) -> Path:
    return root / RUNS_FOLDER / RESUME_FILE


def read_resume_file(root: Path, entity: str, project: str) -> str | None:
    """The run id ``resume="auto"`` resumes in ``root``, if one of this project was left unfinished."""
    try:
        data = json.loads(resume_file(root).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or (data.get("entity"), data.get("project")) != (entity, project):
        return None
    run_id = data.get("run_id")
    return run_id if isinstance(run_id, str) else None


def write_resume_file(root: Path, entity: str, project: str, run_id: str, uid: str) -> None:
    """Remember the run for ``resume="auto"``. Best effort: several processes may start runs in one
    directory at once (each writes its own temporary file; the last rename wins), and a read-only
    directory only costs the auto-resume."""
    path = resume_file(root)
    tmp = path.with_name(f"{RESUME_FILE}.{os.getpid()}.{uid}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"entity": entity, "project": project, "run_id": run_id, "run_uid": uid}))
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)


def clear_resume_file(root: Path, uid: str) -> None:
    """Forget the resume file if it names this run (it finished)."""
    path = resume_file(root)
    try:
        if json.loads(path.read_text()).get("run_uid") == uid:
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass
