"""Fault battery: a full disk under the trainer's spool.

The disk is a real one: a tmpfs of 16 MB mounted for the test (root only: mounting needs
CAP_SYS_ADMIN; elsewhere the test is skipped, saying so). A filler file takes most of it, so the
spool's first reservation (4 MB) succeeds and its first growth meets ENOSPC, as on a disk that
fills up mid-run. RLIMIT_FSIZE would not do: it raises EFBIG/SIGXFSZ, not ENOSPC, and it never
made a memory-mapped write fault the way a full disk did (SIGBUS).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runstream.spool import INITIAL_SIZE, K_EVENT, Spool
from tests.sdk_helpers import one, project, run_uid, spawn

pytestmark = pytest.mark.fault


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs at ``tmp_path/disk`` (unmounted at teardown)."""
    if os.geteuid() != 0:
        pytest.skip("a full disk is simulated with a small tmpfs, which only root can mount")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """A filler file taking all but ``leave`` bytes of the disk's free space."""
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.posix_fallocate(fd, 0, max(0, free - leave))
    finally:
        os.close(fd)
    return filler


def test_a_spool_on_a_full_disk_holds_records_in_memory_and_writes_them_when_space_returns(
        small_disk: Path, fault_report) -> None:
    filler = fill(small_disk, leave=INITIAL_SIZE + (1 << 20))
    spool = Spool.create(small_disk / "w.rsp", {"run_uid": "u", "writer": "w"})
    payload = b"x" * 4000
    n = 1500  # 6 MB: past the first reservation (4 MB) and past the free space
    with spool.lock:
        offsets = [spool.append(K_EVENT, payload + i.to_bytes(4, "little")) for i in range(n)]
    held = len(spool.pending)
    assert held > 0
    assert spool.durable_end < spool.end
    filler.unlink()
    with spool.lock:
        assert spool.flush_pending() is True
    assert spool.pending == bytearray()
    assert spool.durable_end == spool.end
    spool.close()
    back = Spool.open(small_disk / "w.rsp")
    try:
        recs = list(back.records())
    finally:
        back.close()
    assert [r.offset for r in recs] == offsets
    assert [r.body[-4:] for r in recs] == [i.to_bytes(4, "little") for i in range(n)]
    fault_report("disk full under the spool (unit)", f"{n} records kept, in order",
                 f"{held / 1e6:.1f} MB held in memory, {len(recs)} records in the file after space returned")


def test_a_trainer_on_a_full_disk_keeps_logging_and_loses_nothing(
        small_disk: Path, rs_env: dict[str, str], nats_server, tmp_path: Path, fault_report) -> None:
    filler = fill(small_disk, leave=INITIAL_SIZE + (1 << 20))
    gate = tmp_path / "space-is-back"
    n = 3000
    proc = spawn(f"""
        import os, sys, time
        import runstream
        run = runstream.init(entity="faults", project="disk", id="full1", dir={str(small_disk)!r})
        for i in range({n}):
            run.log({{"i": i, "pad": "p" * 2000}})
        print("HELD", len(run._spool.pending), flush=True)
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.05)
        run.finish()
        print("DONE", flush=True)
    """, rs_env, tmp_path)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("HELD "), (line, proc.stderr.read() if proc.poll() is not None else "")
        held = int(line.split()[1])
        assert held > 0
        filler.unlink()
        gate.touch()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out == "DONE\n"
    warning = [ln for ln in err.splitlines() if "no space left" in ln]
    assert len(warning) == 1, err
    assert "log() goes on" in warning[0] and str(small_disk) in warning[0]
    assert sum("space is back" in ln for ln in err.splitlines()) == 1, err
    con = project(tmp_path, nats_server.url)
    uid = run_uid(con, "faults/disk/full1")
    rows = one(con, "SELECT count(*), count(DISTINCT step), sum(value) FROM history "
                    "WHERE run_uid = ? AND key = 'i'", [uid])
    assert rows == (n, n, n * (n - 1) / 2)
    assert one(con, "SELECT state FROM runs WHERE run_uid = ?", [uid]) == "finished"
    fault_report("disk full under a live trainer's spool", f"log() returns, {n} rows, 0 lost, 0 doubled",
                 f"{held / 1e6:.1f} MB held; one warning; {rows[0]} rows, {rows[1]} distinct steps, exit 0")


def test_the_projector_on_a_full_disk_pauses_says_so_and_resumes_when_space_returns(
        small_disk: Path, own_nats, fault_report) -> None:
    import anyio

    from runstream.broker.codec import encode_log_body
    from runstream.broker.names import new_run_uid
    from runstream.projector import Projector
    from tests.test_projector_nats import _event, _init, publish

    uid = new_run_uid()
    events = [_init(uid, "disk")]
    for seq in range(1, 41):
        rows = [(seq * 500 + j, float(seq), {"a": float(j), "pad": "p" * 200}) for j in range(500)]
        events.append(_event("log", uid, seq, float(seq), encode_log_body(rows)))
    db = small_disk / "p.duckdb"
    seen: dict[str, object] = {}

    async def scenario() -> None:
        p = Projector(db, own_nats.url)
        async with anyio.create_task_group() as tg:
            await tg.start(p.run)
            filler = fill(small_disk, leave=0)
            await anyio.to_thread.run_sync(publish, own_nats.url, events)
            with anyio.fail_after(30):
                while p.stalled is None:
                    await anyio.sleep(0.02)
            seen["stalled"] = dict(p.stalled)
            seen["paused_at"] = p.projected_seq
            assert p.cursor().execute("SELECT count(*) FROM runs").fetchone() is not None  # reads go on
            filler.unlink()
            assert await p.wait_for_seq(len(events), timeout=60.0)
            seen["after"] = p.stalled
            seen["points"] = p.cursor().execute(
                "SELECT count(*), count(DISTINCT step) FROM history WHERE run_uid = ? AND key = 'a'",
                [uid]).fetchone()
            tg.cancel_scope.cancel()
        p.close()

    anyio.run(scenario)
    stalled = seen["stalled"]
    assert isinstance(stalled, dict) and stalled["reason"] == "disk_full"
    assert "No space left on device" in stalled["message"] and "resumes by itself" in stalled["message"]
    assert isinstance(seen["paused_at"], int) and seen["paused_at"] < len(events)
    assert seen["after"] is None
    assert seen["points"] == (40 * 500, 40 * 500)
    fault_report("disk full under the DuckDB file", "projecting pauses, health says so, resumes; 0 lost",
                 f"paused at seq {seen['paused_at']} of {len(events)}; resumed; "
                 f"{seen['points'][0]} points, 0 doubled")
