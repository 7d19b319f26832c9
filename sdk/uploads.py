"""Doing an upload intent: store files and artifacts in the object store, then record the event.

Shared by the live :class:`~runstream.uploader.Uploader` thread and ``runstream sync``, so a
killed process's uploads finish the same way. An intent is a ``U`` spool record
``(upload_id, kind, spec)`` written before any byte goes out; the ``file``/``artifact`` events
made from it carry its ``upload_id``. :func:`complete_uploads` (sync) redoes every intent without
its event, and re-sends ``live``/``end`` files whose content differs from their last event.

Nothing heavy is imported: hashing is hashlib, the network is the SDK's blocking client.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .broker.codec import decode_event, encode_event, envelope, pack, unpack
from .filenames import MAX_FILES_PER_SAVE, check_name, relative_name
from .spool import K_BATCH, K_EVENT, K_UPLOAD, Spool

Emit = Callable[[str, dict[str, Any]], int]
"""Spool one event (type, body) and return its seq."""

PART_BYTES = 512 * 1024
"""Manifest entries per ``artifact`` event, at most, in encoded bytes."""


# -- files ------------------------------------------------------------------------------------------


def file_spec(pattern: str, base: str | None, run_dir: str, policy: str) -> dict[str, Any]:
    return {"pattern": os.path.abspath(pattern), "base": None if base is None else os.path.abspath(base),
            "run_dir": os.path.abspath(run_dir), "policy": policy}


def _prefix_dir(pattern: str) -> str:
    """The folder part of a pattern before its first wildcard."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for p in parts[:-1]:
        if glob.has_magic(p):
            break
        fixed.append(p)
    return os.path.join(*fixed) if fixed else os.sep


def expand(spec: dict[str, Any], *, strict: bool = False) -> list[tuple[Path, str]]:
    """The files a ``save()`` spec matches now, with their stored names.

    The name is relative to ``base`` when given; else to the run's folder for a file inside it,
    else to the pattern's folder. Symlinks matched by a wildcard are skipped.

    Raises:
        UsageError (with ``strict``): more files than :data:`MAX_FILES_PER_SAVE`, or a bad name.
    """
    from .errors import UsageError

    pattern = spec["pattern"]
    magic = glob.has_magic(pattern)
    paths = sorted(glob.glob(pattern, recursive=True)) if magic else [pattern]
    out: list[tuple[Path, str]] = []
    for p in paths:
        if not os.path.isfile(p) or (magic and os.path.islink(p)):
            continue
        if spec["base"] is not None:
            base = spec["base"]
        elif os.path.abspath(p).startswith(spec["run_dir"] + os.sep):
            base = spec["run_dir"]
        else:
            base = _prefix_dir(pattern)
        try:
            out.append((Path(p), relative_name(Path(p), Path(base))))
        except UsageError:
            if strict:
                raise
        if len(out) > MAX_FILES_PER_SAVE:
            if strict:
                raise UsageError(f"run.save({pattern!r}) matches more than {MAX_FILES_PER_SAVE} files, the limit "
                                 "per call; save a narrower pattern or an archive")
            return out[:MAX_FILES_PER_SAVE]
    return out


def store_file(store: Any, path: Path, name: str, policy: str, upload_id: str, emit: Emit,
               known: dict[str, str]) -> bool:
    """Upload one file unless ``known`` says its name already holds this content; True if recorded."""
    from .broker.objects import hash_file

    st = os.stat(path)
    sha, size = hash_file(path)
    if known.get(name) == sha:
        return False
    store.put_file(path, sha)
    emit("file", {"name": name, "size": size, "sha256": sha, "mtime": st.st_mtime, "policy": policy,
                  "upload_id": upload_id})
    known[name] = sha
    return True


# -- artifacts --------------------------------------------------------------------------------------


def log_artifact(store: Any, kv: Any, entity: str, project: str, run_uid: str, upload_id: str,
                 spec: dict[str, Any], emit: Emit) -> tuple[int, str]:
    """Store an artifact's files and manifest, take its version and move its aliases, then spool
    its ``artifact`` event(s). Returns ``(version, digest)``."""
    from .artifact import manifest_bytes
    from .errors import UsageError

    entries: dict[str, dict[str, Any]] = {}
    total = 0
    for name, source in spec["files"]:
        if not os.path.isfile(source):
            raise UsageError(f"artifact {spec['name']!r}: {source} (entry {name!r}) is gone; it is read "
                             "when uploaded, keep it until the run finishes")
        sha, size, _ = store.put_file(Path(source))
        entries[name] = {"digest": sha, "size": size}
        total += size
    for name, uri in spec["refs"]:
        entries[name] = {"ref": uri}
    digest = store.put_bytes(manifest_bytes(entries))
    claim = kv.claim_version(entity, project, spec["name"], digest, run_uid)
    moved = kv.move_aliases(entity, project, spec["name"], claim.version, ["latest", *spec["aliases"]])
    rows = [(k, v.get("digest"), int(v.get("size", 0)), v.get("ref")) for k, v in sorted(entries.items())]
    parts: list[list[Any]] = [[]]
    size = 0
    for row in rows:
        n = len(pack(row))
        if parts[-1] and size + n > PART_BYTES:
            parts.append([])
            size = 0
        parts[-1].append(row)
        size += n
    head = {"role": "output", "entity": entity, "project": project, "name": spec["name"],
            "type": spec["type"], "version": claim.version, "digest": digest,
            "description": spec["description"], "metadata": spec["metadata"], "size": total,
            "file_count": len(entries), "created": claim.created, "created_by": claim.created_by,
            "created_at": claim.created_at, "parts": len(parts), "upload_id": upload_id}
    for i, part in enumerate(parts):
        emit("artifact", {**head, "aliases": moved if i == 0 else {}, "entries": part, "part": i})
    return claim.version, digest


# -- what a spool left undone (sync) ------------------------------------------------------------------


def scan(spool: Spool) -> tuple[list[tuple[str, str, dict[str, Any]]], set[str], dict[str, str], int]:
    """``(intents, upload ids done, {file name: last sha256}, last seq)`` of a spool."""
    intents: list[tuple[str, str, dict[str, Any]]] = []
    done: set[str] = set()
    known: dict[str, str] = {}
    last_seq = 0
    for rec in spool.records():
        if rec.kind == K_UPLOAD:
            uid, kind, spec = unpack(rec.body)
            intents.append((uid, kind, spec))
        elif rec.kind == K_BATCH:
            seq, parts, *_ = unpack(rec.body)
            last_seq = max(last_seq, seq + parts - 1)
        elif rec.kind == K_EVENT:
            seq, type_, raw = unpack(rec.body)
            last_seq = max(last_seq, seq)
            if type_ in ("file", "artifact"):
                body = decode_event(raw).get("b") or {}
                if body.get("upload_id"):
                    done.add(body["upload_id"])
                if type_ == "file":
                    known[body["name"]] = body["sha256"]
    return intents, done, known, last_seq


def spool_emitter(spool: Spool, last_seq: int) -> Emit:
    """Append events to a spool whose writer is gone, continuing its seq (as ``seal_leftovers``)."""
    meta = spool.meta
    state = {"seq": last_seq}

    def emit(type_: str, body: dict[str, Any]) -> int:
        state["seq"] += 1
        seq = state["seq"]
        raw = encode_event(envelope(type_, meta["run_uid"], meta["writer"], seq, time.time(), body))
        spool.append(K_EVENT, pack((seq, type_, raw)))
        return seq

    return emit


def complete_uploads(client: Any, spool: Spool) -> tuple[int, list[str]]:
    """Do what ``spool``'s writer intended to upload and did not; return (events added, errors)."""
    intents, done, known, last_seq = scan(spool)
    if not intents:
        return 0, []
    from .broker.artifact_kv import ArtifactKV
    from .broker.objects import ObjectStore

    store, kv = ObjectStore(client), ArtifactKV(client)
    append = spool_emitter(spool, last_seq)
    added = [0]

    def emit(type_: str, body: dict[str, Any]) -> int:
        added[0] += 1
        return append(type_, body)

    errors: list[str] = []
    meta = spool.meta
    for upload_id, kind, spec in intents:
        try:
            if kind == "files":
                for path, name in expand(spec):
                    if spec["policy"] == "now" and upload_id in done and name in known:
                        continue
                    store_file(store, path, check_name(name), spec["policy"], upload_id, emit, known)
            elif kind == "artifact" and upload_id not in done:
                log_artifact(store, kv, meta["entity"], meta["project"], meta["run_uid"], upload_id, spec, emit)
        except Exception as e:
            errors.append(f"{spool.path}: upload {kind} {spec.get('pattern') or spec.get('name')!r}: {e}")
    return added[0], errors
