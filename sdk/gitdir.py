"""Is a folder inside a git work tree? Answered by looking for ``.git``, without running git.

Run metadata and the code snapshot ask git several questions at ``init()``; outside a work tree
each of those processes only fails, yet costs a fork and tens of MB while it lives. Looking first
is a few ``stat`` calls.
"""

from __future__ import annotations

import os
from pathlib import Path


def in_work_tree(where: Path) -> bool:
    """True when ``where`` or a folder above it holds ``.git`` (a folder, or the file a linked work
    tree or submodule has), or ``GIT_DIR`` names a repository for git to use."""
    if os.environ.get("GIT_DIR"):
        return True
    try:
        here = where.resolve()
    except OSError:
        return False
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return True
    return False
