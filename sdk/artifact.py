"""``runstream.Artifact``: a versioned set of files and references that runs log and use.

    art = runstream.Artifact("mnist", type="dataset", description="28x28 digits")
    art.add_file("train.npz")                     # stored as "train.npz"
    art.add_dir("images/", name="img")            # "img/<path under images/>"
    art.add_reference("s3://bucket/raw.tar")      # recorded, not uploaded
    run.log_artifact(art, aliases=["best"])       # returns at once; uploads on a background thread
    art.wait()                                    # optional: art.version is then set ("v0", ...)

    used = run.use_artifact("mnist:latest")       # or "mnist:v3", "entity/project/mnist:best"
    root = used.download()                        # files byte-identical; used.references listed

The content digest is the sha256 of the manifest (each entry's path with its content's sha256 and
size, or its reference URI), so a new version is made only when the content changes. Files are
read when uploaded (on the uploader thread, soon after ``log_artifact``): keep them until then.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from .errors import UsageError
from .filenames import MAX_FILES_PER_ARTIFACT, check_artifact_name, check_name

__all__ = ["Artifact", "UsedArtifact", "manifest_bytes"]


def manifest_bytes(entries: dict[str, dict[str, Any]]) -> bytes:
    """The canonical manifest: ``{"version": 1, "entries": {path: {...}}}``, sorted, compact.

    Its sha256 is the artifact's digest (and the name of the object holding it)."""
    return json.dumps({"version": 1, "entries": entries}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


class Artifact:
    """An artifact being assembled for :meth:`runstream.Run.log_artifact`.

    Args:
        name: letters, digits, ``.``, ``_``, ``-`` (at most 128); versions are per
            (entity, project, name).
        type: e.g. ``dataset``, ``model`` (same characters).
        description: free text. metadata: a JSON-able dict.

    Raises:
        UsageError: a bad name or type.
    """

    def __init__(self, name: str, type: str, description: str | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        self.name = check_artifact_name(name)
        self.type = check_artifact_name(type, "artifact type")
        self.description = description
        if metadata is not None and not isinstance(metadata, dict):
            raise UsageError("artifact metadata must be a dict")
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._files: dict[str, str] = {}
        """Entry name → absolute source path."""
        self._refs: dict[str, str] = {}
        self._logged = threading.Event()
        self._frozen = False
        self.version: str | None = None
        """``v0``, ``v1``, ... once logged (see :meth:`wait`)."""
        self.digest: str | None = None
        self.error: BaseException | None = None

    # -- assembling --------------------------------------------------------------------------------

    def _add(self, name: str, kind: str, value: str) -> None:
        if self._frozen:
            raise UsageError(f"artifact {self.name!r} was already logged; make a new Artifact to change it")
        name = check_name(name, "artifact entry name")
        if name in self._files or name in self._refs:
            raise UsageError(f"artifact {self.name!r} already has an entry {name!r}")
        if len(self._files) + len(self._refs) >= MAX_FILES_PER_ARTIFACT:
            raise UsageError(f"artifact {self.name!r} has {MAX_FILES_PER_ARTIFACT} entries, the limit; "
                             "split it into several artifacts, or add the folder as one archive")
        (self._files if kind == "file" else self._refs)[name] = value

    def add_file(self, local_path: str | os.PathLike[str], name: str | None = None) -> None:
        """Add one file, stored as ``name`` (default: its file name)."""
        path = Path(local_path)
        if not path.is_file():
            raise UsageError(f"artifact {self.name!r}: {path} is not a file")
        self._add(name if name is not None else path.name, "file", os.path.abspath(path))

    def add_dir(self, local_path: str | os.PathLike[str], name: str | None = None) -> None:
        """Add every file under a folder, stored at its relative path (under ``name``/ if given).

        Symlinks inside the folder are skipped: they could point anywhere on the machine."""
        root = Path(local_path)
        if not root.is_dir():
            raise UsageError(f"artifact {self.name!r}: {root} is not a folder")
        prefix = "" if not name else check_name(name.rstrip("/"), "artifact entry name") + "/"
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not os.path.islink(os.path.join(dirpath, d)))
            for fn in sorted(filenames):
                full = os.path.join(dirpath, fn)
                if os.path.islink(full) or not os.path.isfile(full):
                    continue
                rel = Path(os.path.relpath(full, root)).as_posix()
                self._add(prefix + rel, "file", os.path.abspath(full))

    def add_reference(self, uri: str, name: str | None = None) -> None:
        """Record a reference (a URI such as ``s3://...``, ``https://...``, ``file:///...``): it is
        listed in the manifest and on download, never fetched or uploaded."""
        if not isinstance(uri, str) or "://" not in uri:
            raise UsageError(f"artifact {self.name!r}: reference {uri!r} must be a URI like s3://bucket/key")
        default = uri.rstrip("/").rsplit("/", 1)[-1] or uri.split("://", 1)[0]
        self._add(name if name is not None else default, "ref", uri)

    # -- after log_artifact ------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> Artifact:
        """Block until the uploader has stored and registered this artifact (``version`` set).

        Raises:
            UsageError: it was not logged, or not done within ``timeout`` (it stays queued).
            Any error the upload ended with.
        """
        if not self._frozen:
            raise UsageError(f"artifact {self.name!r} was not logged; call run.log_artifact() first")
        if not self._logged.wait(timeout):
            raise UsageError(f"artifact {self.name!r} is not uploaded yet after {timeout}s (it stays queued)")
        if self.error is not None:
            raise self.error
        return self

    def _spec(self, aliases: list[str]) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "description": self.description,
                "metadata": self.metadata, "files": sorted(self._files.items()),
                "refs": sorted(self._refs.items()), "aliases": aliases}

    def _done(self, version: int | None, digest: str | None, error: BaseException | None = None) -> None:
        self.version = None if version is None else f"v{version}"
        self.digest = digest
        self.error = error
        self._logged.set()

    def __repr__(self) -> str:
        return f"<Artifact {self.name}:{self.version or '(not logged)'} type={self.type}>"


class UsedArtifact:
    """An artifact version a run uses (from :meth:`runstream.Run.use_artifact`)."""

    def __init__(self, entity: str, project: str, name: str, version: int, digest: str,
                 manifest: dict[str, Any], fetch: Any) -> None:
        self.entity, self.project, self.name = entity, project, name
        self.version = f"v{version}"
        self.digest = digest
        self.entries: dict[str, dict[str, Any]] = dict(manifest.get("entries") or {})
        self.references = {k: v["ref"] for k, v in self.entries.items() if "ref" in v}
        """Entry name → URI of each reference (listed, never downloaded)."""
        self._fetch = fetch

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        """Entry name → ``{"digest", "size"}`` of each stored file."""
        return {k: v for k, v in self.entries.items() if "digest" in v}

    def download(self, root: str | os.PathLike[str] | None = None) -> Path:
        """Write every file of the version under ``root`` (default
        ``./artifacts/<name>:<version>``); return the folder. Files already there with the right
        content are kept. Names are checked so nothing lands outside ``root``."""
        dest = Path(root) if root is not None else Path("artifacts") / f"{self.name}:{self.version}"
        self._fetch(self.files, dest)
        return dest

    def __repr__(self) -> str:
        return f"<UsedArtifact {self.entity}/{self.project}/{self.name}:{self.version}>"
