"""Blobs in the JetStream Object Store, content-addressed, through the SDK's small blocking client.

Layout (the one JetStream clients share, so ``nats object`` and nats-py read the same bucket):

* stream ``OBJ_<bucket>`` with subjects ``$O.<bucket>.C.>`` (chunks) and ``$O.<bucket>.M.>`` (meta);
* an object's chunks are the messages on ``$O.<bucket>.C.<nuid>`` (a fresh random id per upload);
* its meta is the last message on ``$O.<bucket>.M.<base64url(name)>`` (published with
  ``Nats-Rollup: sub``): JSON with ``name``, ``nuid``, ``size``, ``chunks``, ``digest``
  (``SHA-256=<base64url>``), ``mtime``, ``options.max_chunk_size``.

runstream names every object by the sha256 hex digest of its content, so identical content is
stored once: :meth:`ObjectStore.put_file` first looks the name up and uploads nothing when it is
there. Files are streamed in chunks both ways; a whole file is never held in memory.

Pure helpers (subjects, config, meta) are tested without a server; the rest speaks through
:class:`~runstream.broker.miniclient.MiniNats` (request/reply and publishes with PubAcks only).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .errors import BrokerError

BUCKET = "rs_objects"
"""The one object bucket holding every run file and artifact blob."""
CHUNK_SIZE = 128 * 1024
"""Bytes per chunk message (the JetStream clients' default)."""
WINDOW = 8
"""Chunks published back to back before waiting for their PubAcks: memory stays ~1 MiB."""
MAX_OBJECT_BYTES = 5 * 1024**3
"""The largest object runstream stores (5 GiB); larger files are refused with a clear error."""
READ_BLOCK = 1 << 20

_HEX = frozenset("0123456789abcdef")


class ObjectError(BrokerError):
    """An object could not be stored or read (missing, corrupt, too large)."""


class ObjectNotFound(ObjectError):
    pass


def stream_name(bucket: str = BUCKET) -> str:
    return f"OBJ_{bucket}"


def chunk_subject(nuid: str, bucket: str = BUCKET) -> str:
    return f"$O.{bucket}.C.{nuid}"


def meta_subject(name: str, bucket: str = BUCKET) -> str:
    return f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


def bucket_config(replicas: int = 1, bucket: str = BUCKET) -> dict[str, Any]:
    """The object bucket's stream configuration (JSON, as the JetStream API takes it)."""
    return {"name": stream_name(bucket), "subjects": [f"$O.{bucket}.C.>", f"$O.{bucket}.M.>"],
            "retention": "limits", "storage": "file", "discard": "new", "num_replicas": replicas,
            "allow_rollup_hdrs": True, "allow_direct": True, "max_msgs": -1, "max_bytes": -1,
            "max_age": 0, "max_msg_size": -1, "duplicate_window": 120 * 1_000_000_000}


def digest_field(sha256_bytes: bytes) -> str:
    """The meta's ``digest``: ``SHA-256=`` and the urlsafe base64 of the raw digest."""
    return "SHA-256=" + base64.urlsafe_b64encode(sha256_bytes).decode()


def is_sha256(value: str) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def meta_body(name: str, nuid: str, size: int, chunks: int, sha256_bytes: bytes,
              bucket: str = BUCKET) -> bytes:
    info = {"name": name, "description": None, "headers": None, "bucket": bucket, "nuid": nuid,
            "size": size, "chunks": chunks, "digest": digest_field(sha256_bytes),
            "mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "options": {"max_chunk_size": CHUNK_SIZE}}
    return json.dumps(info).encode()


def hash_file(path: Path, limit: int = MAX_OBJECT_BYTES) -> tuple[str, int]:
    """``(sha256 hex, size)`` of a file, read in blocks; ObjectError past ``limit`` bytes."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(READ_BLOCK):
            size += len(block)
            if size > limit:
                raise ObjectError(f"{path} is larger than {limit / 1024**3:.1f} GiB, the largest object "
                                  "runstream stores; split it or save a smaller file")
            h.update(block)
    return h.hexdigest(), size


class ObjectStore:
    """Content-addressed objects in one bucket, over a :class:`MiniNats` (blocking, one thread)."""

    def __init__(self, client: Any, bucket: str = BUCKET) -> None:
        self.client = client
        self.bucket = bucket
        self.stream = stream_name(bucket)
        self._ensured = False

    def ensure(self, replicas: int | None = None) -> None:
        """Create the bucket's stream unless it exists (with ``replicas``, by default the client's)."""
        if self._ensured:
            return
        from .miniclient import ERR_STREAM_NOT_FOUND, JetStreamError

        try:
            self.client.js_api(f"STREAM.INFO.{self.stream}")
        except JetStreamError as e:
            if e.err_code != ERR_STREAM_NOT_FOUND and e.code != 404:
                raise
            try:
                self.client.js_api(f"STREAM.CREATE.{self.stream}", bucket_config(
                    replicas or int(getattr(self.client, "replicas", 1)), self.bucket))
            except JetStreamError:
                self.client.js_api(f"STREAM.INFO.{self.stream}")  # created meanwhile
        self._ensured = True

    # -- reading ---------------------------------------------------------------------------------

    def _direct_get(self, body: dict[str, Any] | None, last_by_subj: str | None = None) -> Any:
        # the last message of a subject is asked with the subject in the API subject (no body): the
        # broker lets a user's key ask that for meta subjects only, never chunks by sequence
        api = f"$JS.API.DIRECT.GET.{self.stream}" + (f".{last_by_subj}" if last_by_subj else "")
        msg = self.client.request(api, json.dumps(body).encode() if body else b"", timeout=10.0)
        if msg.status == 404:
            return None
        if msg.status is not None and msg.status >= 400:
            raise ObjectError(f"object bucket {self.bucket}: direct get failed with status {msg.status} "
                              f"({msg.headers.get('Description', '')})")
        return msg

    def info(self, name: str) -> dict[str, Any] | None:
        """The meta of object ``name``, or None when there is none (or it was deleted)."""
        msg = self._direct_get(None, last_by_subj=meta_subject(name, self.bucket))
        if msg is None or not msg.payload:
            return None
        info = json.loads(msg.payload)
        return None if info.get("deleted") else dict(info)

    def exists(self, name: str) -> bool:
        return self.info(name) is not None

    def chunks(self, name: str) -> Iterator[bytes]:
        """The object's content, chunk by chunk, checked against its digest at the end.

        Raises:
            ObjectNotFound: no such object. ObjectError: chunks missing or the digest differs.
        """
        info = self.info(name)
        if info is None:
            raise ObjectNotFound(f"object {name} is not in bucket {self.bucket} (purged, or never uploaded)")
        subject = chunk_subject(info["nuid"], self.bucket)
        h = hashlib.sha256()
        seq, got, size = 0, 0, 0
        while got < int(info.get("chunks") or 0):
            msg = self._direct_get({"seq": seq + 1, "next_by_subj": subject})
            if msg is None:
                raise ObjectError(f"object {name}: chunk {got + 1} of {info['chunks']} is missing")
            seq = int(msg.headers.get("Nats-Sequence", seq + 1))
            got += 1
            size += len(msg.payload)
            h.update(msg.payload)
            yield msg.payload
        if size != int(info.get("size") or 0) or digest_field(h.digest()) != info.get("digest"):
            raise ObjectError(f"object {name}: content does not match its digest (corrupt or partial)")

    def download(self, name: str, dest: Path) -> int:
        """Write object ``name`` to ``dest`` (via a temporary file, renamed at the end); return bytes."""
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        n = 0
        try:
            with open(tmp, "wb") as fh:
                for chunk in self.chunks(name):
                    fh.write(chunk)
                    n += len(chunk)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return n

    # -- writing ---------------------------------------------------------------------------------

    def put_file(self, path: Path, sha256: str | None = None) -> tuple[str, int, bool]:
        """Store a file under its sha256; return ``(sha256, size, uploaded)``.

        Nothing is uploaded when an object of that digest exists (``uploaded`` False). The file is
        read twice, in blocks: once to hash it (unless ``sha256`` is given), once to send it.
        """
        self.ensure()
        if sha256 is None:
            sha256, _ = hash_file(path)
        if self.exists(sha256):
            return sha256, os.path.getsize(path), False
        with open(path, "rb") as fh:
            size = self._put_stream(sha256, fh)
        return sha256, size, True

    def put_bytes(self, data: bytes) -> str:
        """Store small content (a manifest); return its sha256."""
        import io

        self.ensure()
        sha = hashlib.sha256(data).hexdigest()
        if not self.exists(sha):
            self._put_stream(sha, io.BytesIO(data))
        return sha

    def _put_stream(self, name: str, fh: BinaryIO) -> int:
        nuid = os.urandom(11).hex()
        subject = chunk_subject(nuid, self.bucket)
        h = hashlib.sha256()
        size = chunks = 0
        try:
            while True:
                window: list[tuple[str, bytes, str]] = []
                while len(window) < WINDOW:
                    block = fh.read(CHUNK_SIZE)
                    if not block:
                        break
                    size += len(block)
                    if size > MAX_OBJECT_BYTES:
                        raise ObjectError(f"object {name} is larger than {MAX_OBJECT_BYTES / 1024**3:.1f} GiB, "
                                          "the largest object runstream stores")
                    h.update(block)
                    window.append((subject, block, f"{nuid}:{chunks + len(window)}"))
                if not window:
                    break
                for ack in self.client.js_publish_many(window, timeout=30.0):
                    if ack.get("error"):
                        raise ObjectError(f"object {name}: chunk refused by the server: {ack['error']}")
                chunks += len(window)
                if len(window) < WINDOW:
                    break
            if h.hexdigest() != name:
                raise ObjectError(f"object {name}: the content changed while it was uploaded; save it again")
            if self.exists(name):  # another writer stored the same content meanwhile: keep theirs
                self._purge_subject(subject)
                return size
            self.client.js_publish(meta_subject(name, self.bucket), meta_body(name, nuid, size, chunks, h.digest(),
                                                                               self.bucket),
                                   headers={"Nats-Rollup": "sub"}, timeout=10.0)
        except BaseException:
            try:
                self._purge_subject(subject)
            except Exception:  # the original error matters more; orphan chunks are harmless
                pass
            raise
        return size

    # -- removing --------------------------------------------------------------------------------

    def _purge_subject(self, subject: str) -> None:
        self.client.js_api(f"STREAM.PURGE.{self.stream}", {"filter": subject})

    def purge(self, name: str) -> bool:
        """Remove object ``name`` for good (chunks and meta); False if it was not there."""
        self.ensure()
        info = self.info(name)
        if info is None:
            return False
        self._purge_subject(chunk_subject(info["nuid"], self.bucket))
        self._purge_subject(meta_subject(name, self.bucket))
        return True

    def count(self) -> int:
        """Objects stored (one meta subject per object): what the dedup tests measure."""
        self.ensure()
        info = self.client.js_api(f"STREAM.INFO.{self.stream}", {"subjects_filter": f"$O.{self.bucket}.M.>"})
        return len((info.get("state") or {}).get("subjects") or {})
