"""``runstream sync``: send what spools still hold — offline runs, killed trainers, broker outages.

Idempotent: events carry the message ids they had when first spooled, so the server drops what it
already has and the projector skips what it already applied. Running it twice changes nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .broker.errors import RunExistsError
from .outbox import Outbox
from .publisher import Publisher
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
    """Turn rows spooled after the last batch marker (a killed writer's tail) into a batch.

    Returns the number of rows sealed. Markers are appended as the same writer, continuing its seq.
    """
    from .broker.codec import pack, unpack
    from .spool import DATA_START, K_EVENT, K_ROW

    last_seq = 0
    tail_start = DATA_START
    rows = 0
    for rec in spool.records():
        if rec.kind == K_BATCH:
            seq, parts, *_ = unpack(rec.body)
            last_seq = max(last_seq, seq + parts - 1)
            tail_start, rows = rec.end, 0
        elif rec.kind == K_EVENT:
            last_seq = max(last_seq, unpack(rec.body)[0])
            tail_start, rows = rec.end, 0
        elif rec.kind == K_ROW:
            rows += 1
    if rows:
        spool.append(K_BATCH, pack((last_seq + 1, 1, time.time(), tail_start, spool.end)))
    return rows


def sync_paths(paths: Iterable[Path | str], settings: Settings, *, progress: Progress | None = None,
               include_complete: bool = False) -> SyncReport:
    """Send every spool under ``paths``; see :class:`SyncReport`."""
    spools: list[Path] = []
    for p in paths:
        spools.extend(find_spools(Path(p)))
    return asyncio.run(_sync(spools, settings, progress, include_complete))


async def _sync(paths: list[Path], settings: Settings, progress: Progress | None,
                include_complete: bool) -> SyncReport:
    from . import stack
    from .broker.jetstream import connect, ensure_log

    if not paths:
        return SyncReport()
    url = stack.nats_url(settings)
    nc = await connect(url, creds=settings.nats_creds, token=settings.nats_token, user=settings.nats_user,
                       password=settings.nats_password, name="runstream-sync")
    try:
        js = nc.jetstream()
        await ensure_log(js)
        return await send_spools(js, paths, timeout=settings.finish_timeout, progress=progress,
                                 include_complete=include_complete)
    finally:
        await nc.close()


async def send_spools(js: Any, paths: list[Path], *, timeout: float, progress: Progress | None = None,
                      include_complete: bool = False) -> SyncReport:
    """Send the unacknowledged events of each spool over an open JetStream context."""
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
            path = f"{meta['entity']}/{meta['project']}/{meta['run_id']}"
            try:
                await _claim_or_confirm(js, meta)
            except RunExistsError as e:
                report.errors.append(f"{spool.path}: {e}")
                continue
            pub = Publisher(js, spool)
            ok = True
            for ev in todo:
                if not await pub.publish(ev, deadline=asyncio.get_running_loop().time() + timeout):
                    report.errors.append(f"{spool.path}: event {ev.seq} not acknowledged within {timeout:.0f}s")
                    ok = False
                    break
                report.events_sent += 1
                done += 1
                if progress:
                    progress(done, total)
            report.last_stream_seq = max(report.last_stream_seq, pub.last_stream_seq)
            if ok and _has_finish(spool):
                spool.set_complete()
            report.runs.append(path)
    finally:
        for spool, _ in opened:
            spool.close()
    return report


def _has_finish(spool: Spool) -> bool:
    ob = Outbox(spool)
    ob.poll()
    return ob.saw_finish and spool.acked >= ob.last_seq


async def _claim_or_confirm(js: Any, meta: dict[str, Any]) -> None:
    """Register the run's path, or confirm it is already this run's (a second sync)."""
    from .broker.jetstream import claim_path, resolve_path

    try:
        await claim_path(js, meta["entity"], meta["project"], meta["run_id"], meta["run_uid"])
    except RunExistsError:
        owner = await resolve_path(js, meta["entity"], meta["project"], meta["run_id"])
        if owner != meta["run_uid"]:
            raise
