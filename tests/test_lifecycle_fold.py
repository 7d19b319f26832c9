"""Move and delete in the fold and the store: no NATS, a real DuckDB file under tmp_path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runstream.broker.codec import encode_event, encode_log_body, envelope
from runstream.broker.names import run_subject
from runstream.projector import ProjectionState, Record, fold
from runstream.projector.schema import PUBLIC_TABLES
from runstream.projector.store import Store

A = "0123456789abcdefghijklmnop"
B = "0123456789abcdefghijklmnoq"


class Stream:
    """Records of several runs, numbered as a stream would number them."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.seqs: dict[tuple[str, str], int] = {}

    def add(self, uid: str, type_: str, body: dict[str, Any], writer: str = "w1", ts: float = 1000.0) -> Record:
        seq = self.seqs[(uid, writer)] = self.seqs.get((uid, writer), 0) + 1
        data = encode_event(envelope(type_, uid, writer, seq, ts, body))
        rec = Record(len(self.records) + 1, run_subject("ent", uid, type_), data, 1.0)
        self.records.append(rec)
        return rec

    def init(self, uid: str, run_id: str, **kw: Any) -> Record:
        return self.add(uid, "init", {"entity": "ent", "project": "proj", "run_id": run_id, "name": run_id,
                                      "start_time": 1000.0, "config": {"lr": 0.1}, **kw})

    def log(self, uid: str, steps: range) -> Record:
        return self.add(uid, "log", encode_log_body([(s, 1000.0 + s, {"loss": 1.0 / (s + 1)}) for s in steps]))

    def raw(self, subject: str, data: bytes) -> Record:
        rec = Record(len(self.records) + 1, subject, data, 1.0)
        self.records.append(rec)
        return rec


def public(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    return {t: sorted(map(repr, store.con.execute(f"SELECT * FROM {t}").fetchall())) for t in PUBLIC_TABLES}


def rows_of(store: Store, uid: str) -> dict[str, int]:
    """How many rows of ``uid`` each table with a run_uid column (and the point tables) holds."""
    out = {}
    for (table,) in store.con.execute("SELECT DISTINCT table_name FROM duckdb_columns() WHERE "
                                      "column_name = 'run_uid' AND schema_name = 'main'").fetchall():
        n = store.con.execute(f'SELECT count(*) FROM "{table}" WHERE run_uid = ?', [uid]).fetchone()
        out[table] = int(n[0]) if n else 0
    return out


def test_move_changes_the_path_and_nothing_else(tmp_path: Path) -> None:
    s = Stream()
    s.init(A, "a1")
    s.log(A, range(5))
    s.add(A, "move", {"entity": "ent", "project": "other", "run_id": "a1", "from_path": "ent/proj/a1"},
          writer="api:1", ts=5000.0)
    s.log(A, range(5, 8))  # a live run keeps logging into its moved run
    store = Store(tmp_path / "p.duckdb")
    store.apply(fold(store.load(), s.records))
    assert store.rows("runs", "WHERE run_uid = ?", [A])[0][1:5] == ("ent", "other", "a1", "ent/other/a1")
    assert store.con.execute("SELECT count(*), max(step) FROM history WHERE run_uid = ?", [A]).fetchone() == (8, 7)
    hb = store.con.execute("SELECT epoch(heartbeat_at) FROM runs").fetchone()
    assert hb is not None and hb[0] < 5000.0  # the server's move is no sign of life


def test_delete_purges_every_table_and_drops_later_events(tmp_path: Path) -> None:
    s = Stream()
    s.init(A, "a1")
    s.log(A, range(5))
    s.add(A, "summary", {"set": {"best": 1}})
    s.init(B, "b1")
    s.log(B, range(3))
    s.raw(run_subject("ent", A, "log"), b"\xc1 not msgpack")  # a dead letter of A
    store = Store(tmp_path / "p.duckdb")
    store.con.execute("CREATE TABLE custom_side (run_uid VARCHAR, line VARCHAR)")  # another engineer's side table
    store.con.execute("INSERT INTO custom_side VALUES (?, 'hello'), (?, 'other')", [A, B])
    state = store.load()
    store.apply(fold(state, s.records))
    assert rows_of(store, A)["runs"] == 1
    assert store.con.execute("SELECT count(*) FROM dead_letters").fetchone() == (1,)

    tomb = s.add(A, "delete", {}, writer="api:2", ts=6000.0)
    late = [s.log(A, range(5, 7)), s.raw(run_subject("ent", A, "log"), b"\xc1 late garbage")]
    ch = fold(state, s.records[tomb.stream_seq - 1:])
    assert ch.purged == [A] and ch.dropped == 2 and ch.late == [(A, r.stream_seq) for r in late]
    assert not ch.dead_letters
    store.apply(ch)
    left = rows_of(store, A)
    assert left.pop("projector_state") == 1  # the tombstone
    assert left.pop("history_run_ids") == 1  # its code, never freed
    assert left.pop("applied") == 1  # the tombstone's own (run, writer, seq)
    assert set(left.values()) == {0}, left
    assert store.con.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)
    assert store.con.execute("SELECT count(*) FROM history WHERE run_uid = ?", [A]).fetchone() == (0,)
    assert store.con.execute("SELECT count(*) FROM history WHERE run_uid = ?", [B]).fetchone() == (3,)
    assert store.rows("custom_side") == [(B, "other")]

    # the stream after the server's purge: everything of A below the tombstone is gone
    purged = [r for r in s.records if not (A in r.subject and r.stream_seq < tomb.stream_seq)]
    scratch = Store(tmp_path / "replay.duckdb")
    scratch.apply(fold(scratch.load(), purged))
    assert public(scratch) == public(store)
    restarted = Store(tmp_path / "p.duckdb")  # the tombstone survives a restart: late events stay dropped
    store.close()
    again = fold(restarted.load(), [s.log(A, range(9, 10))])
    assert again.dropped == 1 and not again.runs


def test_delete_in_the_same_batch_as_the_runs_events(tmp_path: Path) -> None:
    s = Stream()
    s.init(A, "a1")
    s.log(A, range(5))
    s.add(A, "delete", {}, writer="api:1")
    s.init(B, "b1")
    store = Store(tmp_path / "p.duckdb")
    ch = fold(store.load(), s.records)
    assert not ch.history and [a.run_uid for a in ch.applied] == [A, B]  # only the tombstone of A
    store.apply(ch)
    assert store.con.execute("SELECT run_uid FROM runs").fetchall() == [(B,)]
    assert store.con.execute("SELECT count(*) FROM history").fetchone() == (0,)


def test_a_replayed_tombstone_alone_leaves_no_trace(tmp_path: Path) -> None:
    s = Stream()
    s.add(A, "delete", {}, writer="api:1")
    store = Store(tmp_path / "p.duckdb")
    state = ProjectionState()
    store.apply(fold(state, s.records))
    assert all(not rows for rows in public(store).values())
    assert state.runs[A].deleted_at == 1000.0
