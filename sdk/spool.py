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

**A full disk.** The file's blocks are reserved (``posix_fallocate``) before the mapping grows over
them, so a write into the mapping can never meet a missing block (SIGBUS). When the reservation
fails with ENOSPC, records are kept in memory, in order, at the offsets they will have
(:attr:`Spool.end` stays the logical end, :attr:`Spool.durable_end` what the file holds), up to
:data:`PENDING_LIMIT` bytes; one warning on stderr says where and how much waits, and they are
written as soon as a reservation succeeds again (tried by the next append after
:data:`RETRY_S` seconds, and by the worker's every poll). Past the bound, the append waits for
space rather than drop anything. Only a process that dies while the disk is still full loses
the records held in memory, and the warning says so.

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

import errno
import fcntl
import mmap
import os
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import msgpack

from .broker.codec import packer, unpack

MAGIC = b"RSSPOOL1"
DATA_START = 4096
INITIAL_SIZE = 1 << 22
PENDING_LIMIT = 256 << 20
"""Bytes of records held in memory while the disk is full; past it an append waits for space."""
RETRY_S = 1.0
"""While records wait in memory, an append tries to reserve space again at most this often."""
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
        """The logical end: offsets of records appended so far, held in memory ones included."""
        self.durable_end = end
        """The end of what the file holds (records past it wait in :attr:`pending`)."""
        self.pending = bytearray()
        """Records appended while the disk was full, in order: the bytes of [durable_end, end)."""
        self._retry_at = 0.0
        self._warned_full = False
        self._last_error: OSError | None = None
        self.lock = threading.Lock()
        self._pack = packer().pack
        self.closed = False

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def create(cls, path: Path, meta: dict[str, Any]) -> Spool:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        _lock_or_raise(fd, path)
        try:
            _reserve(fd, 0, INITIAL_SIZE)
        except OSError as e:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise OSError(e.errno, f"cannot create the spool {path}: {os.strerror(e.errno or 0)} "
                          f"({INITIAL_SIZE >> 20} MB needed)") from e
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
        spool.durable_end = spool.end
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
        """Append one record (caller holds :attr:`lock`); return its offset.

        On a full disk the record waits in memory (see the module's docstring); the offset is the
        one it will have in the file.
        """
        n = len(payload)
        off = self.end
        stop = off + 5 + n
        if self.pending and not self._flush_pending(time.monotonic()):
            self._hold(kind, payload)
            return off
        if stop + 4 > len(self.mm) and not self._grow(stop + 4):
            self._hold(kind, payload)
            return off
        mm = self.mm
        mm[off + 4] = kind
        mm[off + 5:stop] = payload
        _LEN.pack_into(mm, off, n + 1)
        self.end = self.durable_end = stop
        return off

    def append_obj(self, kind: int, obj: Any) -> int:
        return self.append(kind, self._pack(obj))

    def _grow(self, need: int) -> bool:
        """Reserve blocks up to ``need`` (rounded up by doubling), then map them; False on ENOSPC."""
        size = len(self.mm)
        while size < need:
            size *= 2
        try:
            _reserve(self._fd, len(self.mm), size - len(self.mm))
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise
            self._last_error = e
            return False
        self.mm.resize(size)
        return True

    def _hold(self, kind: int, payload: bytes) -> None:
        """Keep a record in memory (disk full); wait for space past :data:`PENDING_LIMIT`."""
        if not self._warned_full:
            self._warned_full = True
            _say(f"runstream: no space left on the disk of {self.path} "
                 f"({self._last_error}). log() goes on: records are kept in memory "
                 f"(up to {PENDING_LIMIT >> 20} MB, then log() waits for space) and written to the spool as "
                 "soon as space returns. If this process ends before that, the records held in memory are "
                 "lost: free space on that disk.")
        self.pending += _LEN.pack(len(payload) + 1) + bytes((kind,)) + payload
        self.end += 5 + len(payload)
        if self._retry_at == 0.0:
            self._retry_at = time.monotonic() + RETRY_S
        while len(self.pending) > PENDING_LIMIT:
            time.sleep(RETRY_S)
            self._flush_pending(time.monotonic(), force=True)

    def flush_pending(self) -> bool:
        """Write the records held in memory if space returned (caller holds :attr:`lock`); True
        when none wait any more."""
        return not self.pending or self._flush_pending(time.monotonic(), force=True)

    def _flush_pending(self, now: float, force: bool = False) -> bool:
        if not force and now < self._retry_at:
            return False
        self._retry_at = now + RETRY_S
        data = self.pending
        off = self.durable_end
        if off + len(data) + 4 > len(self.mm) and not self._grow(off + len(data) + 4):
            return False
        # bodies first, each length word after its body (a record cut short stays invisible);
        # the first length word last, so the log never shows a part of the held records
        self.mm[off + 4:off + len(data)] = data[4:]
        self.mm[off:off + 4] = data[:4]
        self.durable_end = self.end
        _say(f"runstream: space is back: {len(data) / 1e6:.1f} MB of records held in memory are now in "
             f"{self.path}")
        self.pending = bytearray()
        self._warned_full = False
        return True

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
        if self.pending and not self._flush_pending(time.monotonic(), force=True):
            _say(f"runstream: the disk of {self.path} is still full: {len(self.pending) / 1e6:.1f} MB of records "
                 "held in memory are lost (everything before them is in the spool)")
        try:
            self.mm.flush()
        finally:
            self.mm.close()
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)


def _reserve(fd: int, offset: int, length: int) -> None:
    """Allocate the file's blocks in ``[offset, offset + length)`` (OSError ENOSPC when the disk
    is full): a mapping over reserved blocks never faults for lack of space."""
    if length > 0:
        os.posix_fallocate(fd, offset, length)


def _say(message: str) -> None:
    """Write straight to fd 2: the console tee wraps ``sys.stderr`` and takes the spool lock."""
    try:
        os.write(2, (message + "\n").encode())
    except OSError:
        pass


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
