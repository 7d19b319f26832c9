"""Names of run files and artifact entries: the limits, the checks, and the one safe way to write
one under a download root.

A stored name is a relative POSIX path of ``/``-separated components. It can never escape the
folder it is downloaded into: :func:`check_name` refuses absolute paths, ``..`` and ``.``
components, backslashes (Windows separators), drive letters and colons, NUL and other control or
invisible format characters (bidi overrides, zero-width), and names whose Unicode compatibility
form (NFKC: fullwidth ``／``, ``．．``, ...) would spell any of those; :func:`safe_destination`
also refuses to write through a symlink that already sits at the destination.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from .errors import UsageError

MAX_NAME_CHARS = 512
"""Characters in a file or artifact entry name."""
MAX_COMPONENT_BYTES = 255
"""UTF-8 bytes in one path component (what file systems allow)."""
MAX_FILES_PER_SAVE = 10_000
"""Files one ``run.save()`` pattern may match."""
MAX_FILES_PER_ARTIFACT = 10_000
"""Entries (files and references) in one artifact."""
MAX_ARTIFACT_NAME = 128
"""Characters in an artifact name, type or alias."""

_ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_BAD_CHARS = frozenset("\\:")


def check_name(name: str, what: str = "file name") -> str:
    """Return ``name`` as stored (components joined by ``/``) or raise UsageError saying why."""
    if not isinstance(name, str) or not name:
        raise UsageError(f"{what} must be a non-empty string, not {name!r}")
    if len(name) > MAX_NAME_CHARS:
        raise UsageError(f"{what} {name[:40]!r}... is {len(name)} characters long; the limit is {MAX_NAME_CHARS}")
    for form in (name, unicodedata.normalize("NFKC", name)):
        for ch in form:
            if ch in _BAD_CHARS:
                raise UsageError(f"{what} {name!r} contains {ch!r}; names are relative paths separated by '/' "
                                 "(no backslashes, drive letters or colons)")
            if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
                raise UsageError(f"{what} {name!r} contains the control or invisible character "
                                 f"U+{ord(ch):04X}; rename the file")
        if form.startswith("/"):
            raise UsageError(f"{what} {name!r} is an absolute path; names are relative to the run's files "
                             "(pass base_path= to save a file under a shorter name)")
        for part in form.split("/"):
            if part in ("", ".", ".."):
                raise UsageError(f"{what} {name!r} has an empty, '.' or '..' component; names may not "
                                 "leave the folder they are downloaded into")
            if part != part.strip():
                raise UsageError(f"{what} {name!r}: a component starts or ends with whitespace")
    for part in name.split("/"):
        if len(part.encode()) > MAX_COMPONENT_BYTES:
            raise UsageError(f"{what} {name!r}: a component is longer than {MAX_COMPONENT_BYTES} bytes")
    return name


def check_artifact_name(value: str, what: str = "artifact name") -> str:
    """Artifact names, types and aliases: letters, digits, ``.``, ``_`` and ``-``, at most 128."""
    if not isinstance(value, str) or not _ARTIFACT_NAME.match(value) or len(value) > MAX_ARTIFACT_NAME:
        raise UsageError(f"{what} {value!r} must be 1-{MAX_ARTIFACT_NAME} characters of letters, digits, "
                         "'.', '_' and '-', starting with a letter or digit")
    return value


def check_alias(alias: str) -> str:
    check_artifact_name(alias, "artifact alias")
    if alias[0] == "v" and alias[1:].isdigit():
        raise UsageError(f"artifact alias {alias!r} looks like a version number; versions are assigned "
                         "by runstream (v0, v1, ...), pick another alias")
    return alias


def relative_name(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` as a stored name; UsageError when it is not under ``base``."""
    try:
        rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(base))
    except ValueError:
        raise UsageError(f"{path} is not under base_path {base}; pass a base_path that contains it") from None
    return check_name(rel.as_posix())


def safe_destination(root: Path, name: str) -> Path:
    """The path to write entry ``name`` at under ``root``, its folders created.

    Raises:
        UsageError: the name is unsafe, or a folder or the file on the way is a symlink (it could
            point anywhere), or the result would not lie under ``root``.
    """
    check_name(name)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    real_root = Path(os.path.realpath(root))
    cur = real_root
    parts = name.split("/")
    for part in parts[:-1]:
        cur = cur / part
        if cur.is_symlink():
            raise UsageError(f"cannot write {name!r} under {root}: {cur} is a symlink; remove it first")
        cur.mkdir(exist_ok=True)
    dest = cur / parts[-1]
    if dest.is_symlink():
        raise UsageError(f"cannot write {name!r} under {root}: {dest} is a symlink; remove it first")
    if dest.is_dir():
        raise UsageError(f"cannot write {name!r} under {root}: {dest} is a folder")
    if not os.path.realpath(dest).startswith(str(real_root) + os.sep):
        raise UsageError(f"{name!r} would be written outside {root}")
    return dest
