"""The spool: a run's write-ahead log, one memory-mapped append-only file per writer.

``run.log()`` copies its row into the mapping and returns: no system call, yet the bytes are in the
kernel's page cache, so a SIGKILL of the trainer loses nothing that ``log()`` returned. The
background worker turns spooled records into events and marks them acknowledged in the header.

File layout::

    [0:8)     magic  b"RSSPOOL1"
    [8:16)    acked seq (u64 LE): every event with seq <= this has a PubAck
    [16:17)   flags: 1 = complete (finish event spooled and acked)
    [24:28)   length of the meta map, then the meta map (msgpack) — run uid, writer, path, mode
    [4096:)   records: [u32 LE length][body]; body[0] is the kind. A zero length ends the log.

The length is written *after* the body, so a record cut short by a kill is invisible.

Record kinds:

* ``K`` keyset ``(kid, [key, ...])`` — the keys of the rows that follow with that kid
* ``R`` row ``(step, timestamp, kid, [value, ...])``
* ``B`` batch marker ``(seq, parts, timestamp, start, end)`` — rows in ``[start, end)`` form the
  ``log`` event(s) ``seq .. seq + parts - 1``
* ``E`` event ``(seq, type, envelope bytes)`` — any other event, already encoded
* ``U`` upload ``(upload_id, kind, spec)`` — files to store (``run.save()``) or an artifact to log:
  the intent, recorded before any byte is uploaded; the ``file``/``artifact`` events that carry
  its ``upload_id`` say it was done (see :mod:`runstream.uploads`), so ``runstream sync`` does
  what a killed process left undone
* ``L`` console line ``(line, stream, ts, text)`` — one line's state, spooled by the tee as written
* ``C`` console marker ``(seq, timestamp, count)`` — the ``L`` records since the previous ``C``
  form the ``output`` event ``seq`` (a line's last state in them wins)
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import msgpack

from .broker.codec import packer, unpack

MAGIC = b"RSSPOOL1"
DATA_START = 4096
INITIAL_SIZE = 1 << 22
K_KEYS, K_ROW, K_BATCH, K_EVENT = b"K"[0], b"R"[0], b"B"[0], b"E"[0]
K_UPLOAD = b"U"[0]
K_LINE, K_LINES = b"L"[0], b"C"[0]
_LEN = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class SpoolLocked(Exception):
    """Another live process writes this spool."""


class Record(NamedTuple):
    kind: int
    offset: int
    body: bytes

    @property
    def end(self) -> int:
        """Offset just past this record: length word, kind byte, body."""
        return self.offset + 5 + len(self.body)


class Spool:
    """A spool file open for appending (the live writer) or for recovery (``runstream sync``).

    All appends happen under :attr:`lock`; the user thread holds it only for a memcpy.
    """

    def __init__(self, path: Path, fd: int, mm: mmap.mmap, meta: dict[str, Any], end: int) -> None:
        self.path = path
        self._fd = fd
        self.mm = mm
        self.meta = meta
        self.end = end
        self.lock = threading.Lock()
        self._pack = packer().pack
        self.closed = False

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def create(cls, path: Path, meta: dict[str, Any]) -> Spool:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        _lock_or_raise(fd, path)
        os.ftruncate(fd, INITIAL_SIZE)
        mm = mmap.mmap(fd, INITIAL_SIZE)
        raw = msgpack.packb(meta, use_bin_type=True)
        if 28 + len(raw) > DATA_START:
            raise ValueError("spool meta too large")
        mm[0:8] = MAGIC
        _LEN.pack_into(mm, 24, len(raw))
        mm[28:28 + len(raw)] = raw
        return cls(path, fd, mm, meta, DATA_START)

    @classmethod
    def open(cls, path: Path) -> Spool:
        """Open an existing spool for recovery; :class:`SpoolLocked` if its writer is alive."""
        fd = os.open(path, os.O_RDWR)
        try:
            _lock_or_raise(fd, path)
            size = os.fstat(fd).st_size
            if size < DATA_START:
                raise ValueError(f"{path} is not a runstream spool (too short)")
            mm = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            raise
        if mm[0:8] != MAGIC:
            mm.close()
            os.close(fd)
            raise ValueError(f"{path} is not a runstream spool")
        (n,) = _LEN.unpack_from(mm, 24)
        meta = unpack(bytes(mm[28:28 + n]))
        spool = cls(path, fd, mm, meta, DATA_START)
        for rec in spool.records():
            spool.end = rec.end
        return spool

    # -- header ----------------------------------------------------------------------------------

    @property
    def acked(self) -> int:
        return int(_U64.unpack_from(self.mm, 8)[0])

    def set_acked(self, seq: int) -> None:
        _U64.pack_into(self.mm, 8, seq)

    @property
    def complete(self) -> bool:
        return self.mm[16] == 1

    def set_complete(self) -> None:
        self.mm[16] = 1

    # -- appending -------------------------------------------------------------------------------

    def append(self, kind: int, payload: bytes) -> int:
        """Append one record (caller holds :attr:`lock`); return its offset."""
        n = len(payload)
        off = self.end
        stop = off + 5 + n
        if stop + 4 > len(self.mm):
            self._grow(stop + 4)
        mm = self.mm
        mm[off + 4] = kind
        mm[off + 5:stop] = payload
        _LEN.pack_into(mm, off, n + 1)
        self.end = stop
        return off

    def append_obj(self, kind: int, obj: Any) -> int:
        return self.append(kind, self._pack(obj))

    def _grow(self, need: int) -> None:
        size = len(self.mm)
        while size < need:
            size *= 2
        os.ftruncate(self._fd, size)
        self.mm.resize(size)

    # -- reading ---------------------------------------------------------------------------------

    def records(self, start: int = DATA_START, stop: int | None = None) -> Iterator[Record]:
        """Complete records from ``start`` up to ``stop`` (default: scan to the end of the log).

        Bodies are copies, so the mapping can grow while a reader holds them.
        """
        mm = self.mm
        limit = len(mm) if stop is None else stop
        off = start
        while off + 4 <= limit:
            (n,) = _LEN.unpack_from(mm, off)
            if n == 0 or off + 4 + n > len(mm):
                return
            yield Record(mm[off + 4], off, mm[off + 5:off + 4 + n])
            off += 4 + n

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.mm.flush()
        finally:
            self.mm.close()
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)


def _lock_or_raise(fd: int, path: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
        os.close(fd)
        raise SpoolLocked(f"{path} is being written by a live process") from e


def is_complete(path: Path) -> bool:
    """Cheap check of the header's complete flag, without locking or mapping the file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(17)
    except OSError:
        return False
    return len(head) == 17 and head[:8] == MAGIC and head[16] == 1


def find_spools(root: Path) -> list[Path]:
    """Spool files under ``root`` (a spool file, a run folder, or a folder of run folders)."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*.rsp") if p.is_file())


def read_meta(path: Path) -> dict[str, Any] | None:
    """A spool's meta map (run uid, writer, path), read without locking; None if unreadable."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(DATA_START)
    except OSError:
        return None
    if len(head) < 28 or head[:8] != MAGIC:
        return None
    (n,) = _LEN.unpack_from(head, 24)
    try:
        meta = unpack(head[28:28 + n])
    except Exception:  # a torn or foreign file: not ours to send
        return None
    return meta if isinstance(meta, dict) else None
