"""Run files and artifacts against a real nats-server (object store, KV) and real DuckDB files."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
from pathlib import Path
from typing import Any

import duckdb
import pytest

import runstream
from runstream.broker import NatsServer
from runstream.broker.artifact_kv import ArtifactKV
from runstream.broker.miniclient import MiniNats
from runstream.broker.objects import ObjectStore
from runstream.errors import UsageError
from runstream.settings import load_settings
from runstream.sync import sync_paths

from .conftest import wait_for
from .query_helpers import unique
from .sdk_helpers import project, python, run_uid

TABLES = ("files", "artifacts", "artifact_files", "artifact_aliases", "artifact_alias_moves", "artifact_usage")
NO_SNAPSHOT = {"code_snapshot": False}


def _client(url: str) -> MiniNats:
    return MiniNats(url).connect()


def _objects(url: str) -> int:
    c = _client(url)
    try:
        return ObjectStore(c).count()
    finally:
        c.close()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in con.execute(sql, params or []).fetchall()]


def test_save_policies_files_table_and_identical_content_once(rs_env: dict[str, str], nats_server: NatsServer,
                                                              tmp_path: Path) -> None:
    entity = unique("files")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    payload = os.urandom(300_000)  # three chunks
    (src / "a.bin").write_bytes(payload)
    (src / "sub" / "same.bin").write_bytes(payload)
    (src / "live.txt").write_text("one")
    (src / "end.txt").write_text("at the end")
    before = _objects(nats_server.url)
    run = runstream.init(entity=entity, project="p", id="r", settings=NO_SNAPSHOT)
    assert run.save(str(src / "a.bin"), policy="now") == ["a.bin"]
    assert run.save(str(src / "**" / "*.bin"), base_path=str(src), policy="now") == ["a.bin", "sub/same.bin"]
    run.save(str(src / "live.txt"), policy="live")
    run.save(str(src / "end.txt"), policy="end")
    up = run._uploader
    wait_for(lambda: up._known.get("live.txt") == hashlib.sha256(b"one").hexdigest(), what="live upload")
    run.log({"x": 1.0})  # never waits for uploads
    (src / "live.txt").write_text("two, changed")
    wait_for(lambda: up._known.get("live.txt") == hashlib.sha256(b"two, changed").hexdigest(),
             what="live re-upload after a change")
    assert "end.txt" not in up._known
    run.finish()
    # a.bin and sub/same.bin are one object; live.txt two versions; end.txt one
    assert _objects(nats_server.url) - before == 4
    con = project(tmp_path, nats_server.url)
    uid = run_uid(con, f"{entity}/p/r")
    rows = _rows(con, "SELECT name, size, sha256, policy FROM files WHERE run_uid = ? ORDER BY name", [uid])
    assert rows == [
        ("a.bin", 300_000, hashlib.sha256(payload).hexdigest(), "now"),
        ("end.txt", 10, _sha(src / "end.txt"), "end"),
        ("live.txt", 12, _sha(src / "live.txt"), "live"),
        ("sub/same.bin", 300_000, hashlib.sha256(payload).hexdigest(), "now"),
    ]
    assert _rows(con, "SELECT count(*) FROM dead_letters") == [(0,)]


def test_save_refuses_bad_arguments(rs_env: dict[str, str], tmp_path: Path) -> None:
    run = runstream.init(entity=unique("files"), project="p", settings=NO_SNAPSHOT)
    try:
        with pytest.raises(UsageError, match="policy"):
            run.save(str(tmp_path), policy="sometimes")
        with pytest.raises(UsageError, match="not a file"):
            run.save(str(tmp_path / "missing.txt"))
        (tmp_path / "f.txt").write_text("x")
        with pytest.raises(UsageError, match="not under base_path"):
            run.save(str(tmp_path / "f.txt"), base_path=str(tmp_path / "elsewhere"))
    finally:
        run.finish()


def test_code_snapshot_requirements_and_diff(rs_env: dict[str, str], nats_server: NatsServer, tmp_path: Path) -> None:
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    (repo / "train.py").write_text("print(1)\n")
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=repo, check=True)
    (repo / "train.py").write_text("print(2)\n")
    entity = unique("snap")
    python(f"""
        import runstream
        runstream.init(entity={entity!r}, project="p", id="on").finish()
        runstream.init(entity={entity!r}, project="p", id="off", settings={{"code_snapshot": False}}).finish()
    """, rs_env, repo, check=True)
    con = project(tmp_path, nats_server.url)
    names = _rows(con, "SELECT r.run_id, f.name FROM files f JOIN runs r USING (run_uid) WHERE r.entity = ? "
                  "ORDER BY ALL", [entity])
    assert names == [("on", "diff.patch"), ("on", "requirements.txt")]
    c = _client(nats_server.url)
    try:
        sha = _rows(con, "SELECT sha256 FROM files WHERE name = 'diff.patch' AND run_uid = ?",
                    [run_uid(con, f"{entity}/p/on")])[0][0]
        patch = b"".join(ObjectStore(c).chunks(sha)).decode()
    finally:
        c.close()
    assert "-print(1)" in patch and "+print(2)" in patch


def test_artifact_versions_aliases_use_and_lineage(rs_env: dict[str, str], nats_server: NatsServer,
                                                   tmp_path: Path) -> None:
    entity = unique("art")
    data = tmp_path / "data"
    (data / "nested").mkdir(parents=True)
    (data / "w.bin").write_bytes(os.urandom(200_000))
    (data / "nested" / "cfg.json").write_text('{"a": 1}')
    producer = runstream.init(entity=entity, project="p", id="producer", settings=NO_SNAPSHOT)

    def art() -> runstream.Artifact:
        a = runstream.Artifact("model", "model", description="weights", metadata={"acc": 0.9})
        a.add_dir(str(data))
        a.add_reference("s3://bucket/raw/train.tar", name="raw/train.tar")
        return a

    first = producer.log_artifact(art(), aliases=["best"])
    assert first.wait(30).version == "v0"
    assert producer.log_artifact(art()).wait(30).version == "v0"  # same content: no new version
    (data / "w.bin").write_bytes(os.urandom(200_000))
    second = producer.log_artifact(art(), aliases=["candidate"]).wait(30)
    assert second.version == "v1" and second.digest != first.digest
    producer.finish()

    consumer = runstream.init(entity=entity, project="p", id="consumer", settings=NO_SNAPSHOT)
    used = consumer.use_artifact("model:best")
    assert used.version == "v0" and used.references == {"raw/train.tar": "s3://bucket/raw/train.tar"}
    root = used.download(tmp_path / "out")
    assert (root / "nested" / "cfg.json").read_text() == '{"a": 1}'
    latest = consumer.use_artifact(f"{entity}/p/model:latest")
    assert latest.version == "v1"
    latest.download(tmp_path / "latest")
    assert _sha(tmp_path / "latest" / "w.bin") == _sha(data / "w.bin")
    with pytest.raises(UsageError, match="no artifact"):
        consumer.use_artifact("model:v7")
    consumer.finish()

    con = project(tmp_path, nats_server.url)
    assert _rows(con, "SELECT version, type, description, file_count FROM artifacts WHERE entity = ? ORDER BY 1",
                 [entity]) == [(0, "model", "weights", 3), (1, "model", "weights", 3)]
    assert _rows(con, "SELECT alias, version FROM artifact_aliases WHERE entity = ? ORDER BY 1", [entity]) == [
        ("best", 0), ("candidate", 1), ("latest", 1)]
    assert _rows(con, "SELECT path, ref FROM artifact_files WHERE entity = ? AND version = 0 ORDER BY 1",
                 [entity]) == [("nested/cfg.json", None), ("raw/train.tar", "s3://bucket/raw/train.tar"),
                               ("w.bin", None)]
    lineage = _rows(con, "SELECT r.run_id, u.role, u.version FROM artifact_usage u JOIN runs r USING (run_uid) "
                    "WHERE u.entity = ? ORDER BY ALL", [entity])
    assert lineage == [("consumer", "input", 0), ("consumer", "input", 1), ("producer", "output", 0),
                       ("producer", "output", 1)]


def test_version_claims_are_race_free(nats_server: NatsServer) -> None:
    """Eight writers at once: distinct contents get distinct versions 0..7; one content gets one."""
    entity = unique("race")
    results: list[tuple[str, int, bool]] = []
    lock = threading.Lock()

    def claim(digest: str) -> None:
        c = _client(nats_server.url)
        try:
            got = ArtifactKV(c).claim_version(entity, "p", "a", digest, "uid")
        finally:
            c.close()
        with lock:
            results.append((digest, got.version, got.created))

    digests = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(8)]
    threads = [threading.Thread(target=claim, args=(d,)) for d in digests]
    threads += [threading.Thread(target=claim, args=(digests[0],)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    by_digest: dict[str, set[int]] = {}
    for d, v, _ in results:
        by_digest.setdefault(d, set()).add(v)
    assert all(len(v) == 1 for v in by_digest.values())          # one content, one version
    versions = sorted(next(iter(v)) for v in by_digest.values())
    assert len(set(versions)) == 8                                 # never two contents on one number
    assert sum(created for _, _, created in results) == 8


def test_a_killed_process_saves_go_up_with_sync(rs_env: dict[str, str], nats_server: NatsServer,
                                                tmp_path: Path) -> None:
    entity = unique("killed")
    (tmp_path / "ckpt.pt").write_bytes(os.urandom(50_000))
    proc = python(f"""
        import os, signal, runstream
        run = runstream.init(entity={entity!r}, project="p", id="k", settings={{"code_snapshot": False}})
        run.save("ckpt.pt", policy="end")
        a = runstream.Artifact("ds", "dataset")
        a.add_file("ckpt.pt")
        run._uploader.url = None          # hold the uploader back: the kill comes before any upload
        run.log_artifact(a)
        os.kill(os.getpid(), signal.SIGKILL)
    """, rs_env, tmp_path)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    report = sync_paths([tmp_path / "work"], load_settings())
    assert report.errors == []
    assert sync_paths([tmp_path / "work"], load_settings()).events_sent == 0
    con = project(tmp_path, nats_server.url)
    uid = run_uid(con, f"{entity}/p/k")
    assert _rows(con, "SELECT name, sha256 FROM files WHERE run_uid = ?", [uid]) == [
        ("ckpt.pt", _sha(tmp_path / "ckpt.pt"))]
    assert _rows(con, "SELECT name, version FROM artifacts WHERE entity = ?", [entity]) == [("ds", 0)]


def test_replay_reproduces_the_files_and_artifact_tables(rs_env: dict[str, str], nats_server: NatsServer,
                                                         tmp_path: Path) -> None:
    entity = unique("replay")
    (tmp_path / "f.txt").write_text("content")
    run = runstream.init(entity=entity, project="p", settings=NO_SNAPSHOT)
    run.save(str(tmp_path / "f.txt"), policy="now")
    a = runstream.Artifact("a", "t")
    a.add_file(str(tmp_path / "f.txt"))
    run.log_artifact(a, aliases=["x"]).wait(30)
    run.finish()
    from runstream.projector import catch_up

    dbs = [tmp_path / "one.duckdb", tmp_path / "two.duckdb"]
    for db in dbs:
        catch_up(db, nats_server.url, timeout=60)
    cons = [duckdb.connect(str(db), read_only=True) for db in dbs]
    for table in TABLES:
        got = [sorted(_rows(c, f"SELECT * FROM {table}"), key=repr) for c in cons]
        assert got[0] == got[1], table
    assert _rows(cons[0], "SELECT count(*) FROM artifacts WHERE entity = ?", [entity]) == [(1,)]


@pytest.mark.slow
def test_200_mb_saved_and_downloaded_back_with_bounded_memory(rs_env: dict[str, str], tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    with open(big, "wb") as fh:
        for i in range(200):
            fh.write(block[i:] + block[:i])
    entity = unique("big")
    proc = python(f"""
        import runstream

        def hwm():  # this process image's peak RSS (ru_maxrss would include the forking parent's)
            with open("/proc/self/status") as fh:
                return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))

        base = hwm()
        run = runstream.init(entity={entity!r}, project="p", settings={{"code_snapshot": False}})
        run.save("big.bin", policy="now")
        a = runstream.Artifact("big", "blob")
        a.add_file("big.bin")
        run.log_artifact(a).wait(300)
        run.use_artifact("big:latest").download("back")
        run.finish()
        print(base, hwm())
    """, rs_env, tmp_path, timeout=600, check=True)
    base_kb, peak_kb = map(int, proc.stdout.split()[-2:])
    assert _sha(tmp_path / "back" / "big.bin") == _sha(big)
    assert peak_kb < 150 * 1024, f"peak RSS {peak_kb / 1024:.0f} MB (at start {base_kb / 1024:.0f} MB)"


def test_purge_removes_only_the_objects_no_other_run_needs(rs_env: dict[str, str], nats_server: NatsServer,
                                                          tmp_path: Path) -> None:
    from runstream.query.files_reads import purge_run_objects, run_object_digests

    entity = unique("purge")
    shared, own = tmp_path / "shared.bin", tmp_path / "own.bin"
    shared.write_bytes(os.urandom(1000))
    own.write_bytes(os.urandom(1000))
    for rid, files in (("a", [shared, own]), ("b", [shared])):
        run = runstream.init(entity=entity, project="p", id=rid, settings=NO_SNAPSHOT)
        for f in files:
            run.save(str(f), policy="now")
        run.finish()
    con = project(tmp_path, nats_server.url)
    uid = run_uid(con, f"{entity}/p/a")
    assert run_object_digests(con, uid) == {_sha(shared), _sha(own)}
    c = _client(nats_server.url)
    try:
        assert purge_run_objects(con, c, uid) == {_sha(own)}
        store = ObjectStore(c)
        assert not store.exists(_sha(own)) and store.exists(_sha(shared))
        assert b"".join(store.chunks(_sha(shared))) == shared.read_bytes()
    finally:
        c.close()
