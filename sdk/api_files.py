"""Files and artifacts on the read side of :class:`runstream.Api` (over the server's HTTP API).

    run = api.run("nico/proj/1jx1ud12")
    for f in run.files():
        print(f.name, f.size, f.sha256)
    run.file("model.pt").download("out/")                 # → out/model.pt, byte-identical
    art = api.artifact("nico/proj/mnist:latest")          # or :v3, or :<alias>
    art.download("data/")                                 # references: art.references
    art.logged_by(), art.used_by()                        # lineage: run paths
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from .errors import UsageError
from .filenames import safe_destination

__all__ = ["ApiArtifact", "File"]


def _fetch(client: Any, url: str, dest: Path, sha256: str | None) -> Path:
    """Download ``url`` to ``dest`` via a temporary file; check the content's sha256."""
    import hashlib

    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        with open(tmp, "wb") as fh:
            client.download(url, fh)
        if sha256 is not None:
            h = hashlib.sha256()
            with open(tmp, "rb") as fh:
                while block := fh.read(1 << 20):
                    h.update(block)
            if h.hexdigest() != sha256:
                from .errors import QueryError

                raise QueryError(f"downloaded {dest.name} does not match its sha256 {sha256}; try again")
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


class File:
    """One run file: ``name``, ``size``, ``sha256``, ``mtime``, ``policy``, ``updated_at``."""

    def __init__(self, client: Any, run_url: str, attrs: dict[str, Any]) -> None:
        self._client, self._run_url = client, run_url
        self.name: str = attrs["name"]
        self.size: int = int(attrs["size"])
        self.sha256: str = attrs["sha256"]
        self.mtime: float | None = attrs.get("mtime")
        self.policy: str | None = attrs.get("policy")
        self.updated_at: float | None = attrs.get("updated_at")

    def download(self, root: str | os.PathLike[str] = ".", replace: bool = True) -> Path:
        """Write the file under ``root`` at its name (folders created); return its path.

        Raises:
            UsageError: the name would leave ``root`` or pass through a symlink; or the file
                exists and ``replace`` is False.
        """
        from urllib.parse import quote

        dest = safe_destination(Path(root), self.name)
        if dest.exists() and not replace:
            from .errors import UsageError

            raise UsageError(f"{dest} exists; pass replace=True to overwrite it")
        return _fetch(self._client, f"{self._run_url}/files/{quote(self.name, safe='/')}", dest, self.sha256)

    def __repr__(self) -> str:
        return f"<File {self.name} ({self.size} bytes)>"


class ApiArtifact:
    """One artifact version as the server projected it."""

    def __init__(self, client: Any, attrs: dict[str, Any]) -> None:
        self._client = client
        self._attrs = dict(attrs)
        self.entity: str = attrs["entity"]
        self.project: str = attrs["project"]
        self.name: str = attrs["name"]
        self.type: str = attrs.get("type") or ""
        self.version = f"v{attrs['version']}"
        self.digest: str = attrs["digest"]
        self.description: str | None = attrs.get("description")
        self.metadata: dict[str, Any] = attrs.get("metadata") or {}
        self.size: int = int(attrs.get("size") or 0)
        self.created_at: float | None = attrs.get("created_at")
        self.aliases: list[str] = list(attrs.get("aliases") or [])

    @property
    def qualified_name(self) -> str:
        return f"{self.entity}/{self.project}/{self.name}:{self.version}"

    def _url(self) -> str:
        from .query.http_client import quote_path

        return f"/api/artifacts/{quote_path(self.entity, self.project, self.name, self.version)}"

    def _full(self) -> dict[str, Any]:
        if "files" not in self._attrs:
            self._attrs.update(self._client.json("GET", self._url()))
        return self._attrs

    def files(self) -> list[dict[str, Any]]:
        """The manifest: ``path``, ``sha256``, ``size``, ``ref`` (a reference's URI) per entry."""
        return list(self._full()["files"])

    @property
    def references(self) -> dict[str, str]:
        return {f["path"]: f["ref"] for f in self.files() if f.get("ref")}

    def logged_by(self) -> list[str]:
        """Paths of the runs that logged this version (the first made it)."""
        return list(self._full().get("produced_by") or [])

    def used_by(self) -> list[str]:
        return list(self._full().get("used_by") or [])

    def download(self, root: str | os.PathLike[str] | None = None) -> Path:
        """Write every stored file under ``root`` (default ``./artifacts/<name>:<version>``),
        byte-identical; references are listed in :attr:`references`, not fetched."""
        from urllib.parse import quote

        dest_root = Path(root) if root is not None else Path("artifacts") / f"{self.name}:{self.version}"
        for f in self.files():
            if f.get("sha256") is None:
                continue
            try:
                dest = safe_destination(dest_root, f["path"])
            except UsageError as e:  # a name no download may write; the other files still come
                warnings.warn(f"runstream: artifact {self.qualified_name}: skipped {f['path']!r}: {e}", stacklevel=2)
                continue
            _fetch(self._client, f"{self._url()}/files/{quote(f['path'], safe='/')}", dest, f["sha256"])
        return dest_root

    def __repr__(self) -> str:
        return f"<Artifact {self.qualified_name} type={self.type}>"
