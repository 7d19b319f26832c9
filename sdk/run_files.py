"""What ``run.save()``, ``run.log_artifact()`` and ``run.use_artifact()`` do (the Run delegates here).

``save`` and ``log_artifact`` check their arguments, spool the intent (a ``U`` record) and hand it
to the run's :class:`~runstream.uploader.Uploader`: they return at once. ``use_artifact`` is a
lookup, so it blocks: it resolves the version in the artifact registry, reads the manifest from
the object store and spools the ``artifact`` input event (the lineage edge).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from .errors import UsageError
from .filenames import check_alias, check_artifact_name, safe_destination
from .spool import K_UPLOAD

POLICIES = ("live", "end", "now")


def _new_upload_id() -> str:
    return os.urandom(8).hex()


_STARTING = threading.Lock()


def uploader(run: Any) -> Any:
    """The run's uploader thread, started on first use; it first saves the code and environment
    snapshot when the run's ``code_snapshot`` setting is on (see :mod:`.snapshot`)."""
    with _STARTING:  # the snapshot starts it on the metadata thread, run.save() on the user's
        up = run.__dict__.get("_uploader")
        if up is None:
            from .uploader import Uploader

            url = run._worker.url if run._worker is not None else None
            up = run.__dict__["_uploader"] = Uploader(run, url, snapshot=bool(run.settings.code_snapshot))
            up.start()
    return up


def save_intent(run: Any, spec: dict[str, Any]) -> str:
    """Spool a ``files`` intent (the uploader's snapshot uses it too); return its upload id."""
    return _intent(run, "files", spec)


def _intent(run: Any, kind: str, spec: dict[str, Any]) -> str:
    upload_id = _new_upload_id()
    with run._lock:
        run._spool.append(K_UPLOAD, run._pack((upload_id, kind, spec)))
    return upload_id


def save(run: Any, glob_str: str | os.PathLike[str], base_path: str | os.PathLike[str] | None = None,
         policy: str = "live") -> list[str]:
    """See :meth:`runstream.Run.save`."""
    from .uploads import expand, file_spec

    if run._finished:
        raise UsageError(f"run {run.path} is finished; save files before finish()")
    if policy not in POLICIES:
        raise UsageError(f"policy must be one of {', '.join(POLICIES)}, not {policy!r}")
    pattern = os.fspath(glob_str)
    if not pattern:
        raise UsageError("run.save() needs a path or a glob pattern")
    spec = file_spec(pattern, None if base_path is None else os.fspath(base_path), str(run.dir), policy)
    import glob

    matched = expand(spec, strict=True)
    if not matched and not glob.has_magic(pattern):
        raise UsageError(f"run.save(): {pattern} is not a file")
    up = uploader(run)
    up.submit(_intent(run, "files", spec), "files", spec)
    return [name for _, name in matched]


def artifact_of_path(run: Any, path: str | os.PathLike[str], name: str | None, type: str | None) -> Any:
    """``log_artifact("model.pt", name=..., type=...)``: an artifact of one file or folder. As in W&B,
    the name defaults to ``run-<id>-<file name>`` and the type to ``unspecified``."""
    import re

    from .artifact import Artifact

    p = Path(os.fspath(path))
    if not p.exists():
        raise UsageError(f"log_artifact(): {os.fspath(path)} is not a file or folder")
    if name is None:
        name = re.sub(r"[^A-Za-z0-9._-]", "_", f"run-{run.id}-{p.resolve().name}")[:128]
    art = Artifact(name, type or "unspecified")
    if p.is_dir():
        art.add_dir(p)
    else:
        art.add_file(p)
    return art


CODE_SKIP = frozenset({".git", ".venv", "venv", "__pycache__", "node_modules", "runstream-runs", "wandb",
                       ".mypy_cache", ".pytest_cache", ".ruff_cache"})
"""Folders ``log_code`` never descends into."""


def log_code(run: Any, root: str | os.PathLike[str], name: str | None, include_fn: Any, exclude_fn: Any) -> Any:
    """See :meth:`runstream.Run.log_code`: the matching files under ``root`` as a ``code`` artifact."""
    import re

    from .artifact import Artifact

    base = Path(os.fspath(root)).resolve()
    if not base.is_dir():
        raise UsageError(f"log_code(): {os.fspath(root)} is not a folder")
    include = include_fn or (lambda p: p.endswith(".py"))
    art = Artifact(name or re.sub(r"[^A-Za-z0-9._-]", "_", f"source-{run.project}-{run.id}")[:128], "code")
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in CODE_SKIP)
        for f in sorted(filenames):
            full = os.path.join(dirpath, f)
            if os.path.islink(full) or not include(full) or (exclude_fn is not None and exclude_fn(full)):
                continue
            art.add_file(full, name=os.path.relpath(full, base).replace(os.sep, "/"))
    if not art._files:
        return None  # W&B: nothing matched, nothing logged
    return log_artifact(run, art)


def log_artifact(run: Any, artifact: Any, aliases: list[str] | None = None) -> Any:
    """See :meth:`runstream.Run.log_artifact`."""
    from .artifact import Artifact

    if run._finished:
        raise UsageError(f"run {run.path} is finished; log artifacts before finish()")
    if not isinstance(artifact, Artifact):
        raise UsageError(f"log_artifact() takes a runstream.Artifact, not {type(artifact).__name__}")
    if artifact._frozen:
        raise UsageError(f"artifact {artifact.name!r} was already logged; make a new Artifact for a new version")
    names = [check_alias(a) for a in (aliases or []) if a != "latest"]
    if not artifact._files and not artifact._refs:
        raise UsageError(f"artifact {artifact.name!r} is empty; add files, folders or references first")
    artifact._frozen = True
    spec = artifact._spec(sorted(set(names)))
    uploader(run).submit(_intent(run, "artifact", spec), "artifact", spec, artifact)
    return artifact


def parse_ref(ref: str, entity: str, project: str) -> tuple[str, str, str, str]:
    """``[entity/project/]name[:alias|:vN]`` → (entity, project, name, alias or version)."""
    if not isinstance(ref, str) or not ref:
        raise UsageError("an artifact reference looks like 'name:alias', 'name:v3' or 'entity/project/name:latest'")
    path, _, version = ref.partition(":")
    parts = path.split("/")
    if len(parts) == 3:
        entity, project, name = parts
    elif len(parts) == 2:
        project, name = parts
    elif len(parts) == 1:
        name = parts[0]
    else:
        raise UsageError(f"artifact reference {ref!r}: expected [entity/project/]name[:alias]")
    check_artifact_name(name)
    version = version or "latest"
    if not (version[0] == "v" and version[1:].isdigit()):
        check_artifact_name(version, "artifact alias")
    return entity, project, name, version


def use_artifact(run: Any, ref: str) -> Any:
    """See :meth:`runstream.Run.use_artifact`."""
    import json

    from .artifact import UsedArtifact
    from .broker.artifact_kv import ArtifactKV
    from .broker.objects import ObjectStore

    if run._finished:
        raise UsageError(f"run {run.path} is finished")
    if run.mode != "online" or run._worker is None or run._worker.url is None:
        raise UsageError("use_artifact() needs the broker: it is not available in offline mode")
    entity, project, name, version = parse_ref(ref, run.entity, run.project)
    with _client(run) as client:
        found = ArtifactKV(client).resolve(entity, project, name, version)
        if found is None:
            raise UsageError(f"no artifact {entity}/{project}/{name}:{version}; log it with run.log_artifact() "
                             "(versions are v0, v1, ...; 'latest' is the newest)")
        number, digest = found
        manifest = json.loads(b"".join(ObjectStore(client).chunks(digest)))
    run._emit("artifact", {"role": "input", "entity": entity, "project": project, "name": name,
                           "version": number, "digest": digest})

    def fetch(files: dict[str, dict[str, Any]], root: Path) -> None:
        with _client(run) as client:
            download_files(ObjectStore(client), files, root)

    return UsedArtifact(entity, project, name, number, digest, manifest, fetch)


def download_files(store: Any, files: dict[str, dict[str, Any]], root: Path) -> None:
    """Write each ``{name: {"digest", "size"}}`` under ``root`` (names checked), skipping files
    already there with the same size and sha256."""
    from .broker.objects import hash_file

    for name, entry in sorted(files.items()):
        dest = safe_destination(root, name)
        if dest.is_file() and dest.stat().st_size == entry.get("size") and hash_file(dest)[0] == entry["digest"]:
            continue
        store.download(entry["digest"], dest)


class _client:
    """A short-lived connection of the calling thread (the MiniNats of the uploader is its own)."""

    def __init__(self, run: Any) -> None:
        from .broker.miniclient import MiniNats

        s = run.settings
        self.client = MiniNats.for_settings(run._worker.url, s, name=f"runstream-artifacts {run.id}")

    def __enter__(self) -> Any:
        return self.client.connect()

    def __exit__(self, *exc: Any) -> None:
        self.client.close()
