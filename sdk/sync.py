"""``runstream sync``: send what spools still hold — offline runs, killed trainers, broker outages.

Idempotent: events carry the message ids they had when first spooled, so the server drops what it
already has and the projector skips what it already applied. Running it twice changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .broker.errors import RunExistsError
from .broker.miniclient import MiniNats
from .outbox import Outbox
from .publisher import publish_until_acked
from .settings import Settings
from .spool import K_BATCH, Spool, SpoolLocked, is_complete
from .spool import find_spools as _find

Progress = Callable[[int, int], None]


@dataclass
class SyncReport:
    runs: list[str] = field(default_factory=list)
    """Paths of the runs whose spools were sent."""
    events_sent: int = 0
    already_acked: int = 0
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    last_stream_seq: int = 0


def find_spools(root: Path) -> list[Path]:
    return _find(root)


def seal_leftovers(spool: Spool) -> int:
    """Seal what a killed writer spooled after its last markers: rows into a batch, console lines
    into an ``output`` event (in that order), exactly as the live writer would have sealed them.

    Returns the number of rows and lines sealed. Markers are appended as the same writer,
    continuing its seq, so a second sync finds nothing left to seal.
    """
    from .broker.codec import pack, unpack
    from .spool import DATA_START, K_EVENT, K_LINE, K_LINES, K_ROW

    last_seq = 0
    tail_start = DATA_START
    rows = lines = 0
    for rec in spool.records():
        if rec.kind == K_BATCH:
            seq, parts, *_ = unpack(rec.body)
            last_seq = max(last_seq, seq + parts - 1)
            tail_start, rows = rec.end, 0
        elif rec.kind == K_LINES:
            last_seq = max(last_seq, unpack(rec.body)[0])
            lines = 0
        elif rec.kind == K_EVENT:  # rows and lines before it may still be unsealed (Run._append_aside)
            last_seq = max(last_seq, unpack(rec.body)[0])
        elif rec.kind == K_ROW:
            rows += 1
        elif rec.kind == K_LINE:
            lines += 1
    now = time.time()
    if rows:
        last_seq += 1
        spool.append(K_BATCH, pack((last_seq, 1, now, tail_start, spool.end)))
    if lines:
        spool.append(K_LINES, pack((last_seq + 1, now, lines)))
    return rows + lines


def sync_paths(paths: Iterable[Path | str], settings: Settings, *, progress: Progress | None = None,
               include_complete: bool = False) -> SyncReport:
    """Send every spool under ``paths``; see :class:`SyncReport`."""
    from . import stack
    from .broker.miniclient import MiniNats

    spools: list[Path] = []
    for p in paths:
        spools.extend(find_spools(Path(p)))
    if not spools:
        return SyncReport()
    client = MiniNats.for_settings(stack.nats_url(settings), settings, name="runstream-sync")
    try:
        client.connect()
        client.ensure_log()
        return send_spools(client, spools, timeout=settings.finish_timeout, progress=progress,
                           include_complete=include_complete)
    finally:
        client.close()


def send_spools(client: MiniNats, paths: list[Path], *, timeout: float, progress: Progress | None = None,
                include_complete: bool = False) -> SyncReport:
    """Send the unacknowledged events of each spool over an open connection."""
    report = SyncReport()
    opened: list[tuple[Spool, list[Any]]] = []
    try:
        for path in paths:
            if not include_complete and is_complete(path):
                continue
            try:
                spool = Spool.open(path)
            except SpoolLocked:
                report.skipped.append(f"{path}: still being written by a live process")
                continue
            except (OSError, ValueError) as e:
                report.errors.append(f"{path}: {e}")
                continue
            if spool.complete and not include_complete:
                spool.close()
                continue
            seal_leftovers(spool)
            from .uploads import complete_uploads

            report.errors.extend(complete_uploads(client, spool)[1])  # saved files, logged artifacts
            events = Outbox(spool).poll()
            todo = [ev for ev in events if ev.seq > spool.acked]
            report.already_acked += len(events) - len(todo)
            opened.append((spool, todo))
        total = sum(len(t) for _, t in opened)
        if progress:
            progress(0, total)
        done = 0
        for spool, todo in opened:
            meta = spool.meta
            run_path = f"{meta['entity']}/{meta['project']}/{meta['run_id']}"
            try:
                _claim_or_confirm(client, meta)
            except RunExistsError as e:
                report.errors.append(f"{spool.path}: {e}")
                continue
            ok = True
            deadline = time.monotonic() + timeout
            for ev in todo:
                seq = publish_until_acked(client, spool, ev, deadline)
                if seq is None:
                    report.errors.append(f"{spool.path}: event {ev.seq} not acknowledged within {timeout:.0f}s")
                    ok = False
                    break
                report.last_stream_seq = max(report.last_stream_seq, seq)
                report.events_sent += 1
                done += 1
                if progress:
                    progress(done, total)
            if ok and _has_finish(spool):
                spool.set_complete()
            report.runs.append(run_path)
    finally:
        for spool, _ in opened:
            spool.close()
    return report


def _has_finish(spool: Spool) -> bool:
    ob = Outbox(spool)
    ob.poll()
    return ob.saw_finish and spool.acked >= ob.last_seq


def _claim_or_confirm(client: MiniNats, meta: dict[str, Any]) -> None:
    """Register the run's path, or confirm it is already this run's (a second sync)."""
    try:
        client.claim_path(meta["entity"], meta["project"], meta["run_id"], meta["run_uid"])
    except RunExistsError:
        if client.resolve_path(meta["entity"], meta["project"], meta["run_id"]) != meta["run_uid"]:
            raise
