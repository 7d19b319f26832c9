"""The pure fold: event lists in, changes and run states out (no NATS, no DuckDB)."""

from __future__ import annotations

import math
from typing import Any

import msgpack
import pyarrow as pa

from runstream.broker.codec import encode_event, encode_log_body, envelope, flatten, pack
from runstream.broker.names import run_subject
from runstream.projector import ProjectionState, Record, fold
from runstream.projector.state import RunState

UID = "0123456789abcdefghijklmnop"


class Log:
    """Builds a stream of records for one run, numbering stream seqs and writer seqs."""

    def __init__(self, uid: str = UID, entity: str = "ent") -> None:
        self.uid, self.entity = uid, entity
        self.records: list[Record] = []
        self.seqs: dict[str, int] = {}

    def add(
        self,
        type_: str,
        body: dict[str, Any],
        *,
        writer: str = "w1",
        seq: int | None = None,
        ts: float = 1000.0,
    ) -> Record:
        if seq is None:
            seq = self.seqs.get(writer, 0) + 1
        self.seqs[writer] = max(seq, self.seqs.get(writer, 0))
        env = envelope(type_, self.uid, writer, seq, ts, body)
        return self.raw(run_subject(self.entity, self.uid, type_), encode_event(env))

    def raw(self, subject: str, data: bytes) -> Record:
        rec = Record(len(self.records) + 1, subject, data, 1.0)
        self.records.append(rec)
        return rec

    def init(self, **kw: Any) -> Record:
        body = {
            "entity": self.entity,
            "project": "proj",
            "run_id": "abc",
            "name": "n1",
            "start_time": 1000.0,
            **kw,
        }
        return self.add("init", body, ts=body["start_time"])

    def log(self, rows: list[tuple[Any, float, dict[str, Any]]], **kw: Any) -> Record:
        return self.add("log", encode_log_body(rows), **kw)

    def log_rows(self, rows: list[tuple[Any, float, dict[str, Any]]], **kw: Any) -> Record:
        return self.add("log_rows", log_rows_body(rows), **kw)


def log_rows_body(rows: list[tuple[Any, float, dict[str, Any]]]) -> dict[str, Any]:
    """Rows of ``(step, timestamp, values)`` → a ``log_rows`` body, one keyset per distinct key
    tuple (as the SDK spools them: values unflattened)."""
    keysets: dict[tuple[str, ...], int] = {}
    packed = []
    for step, ts, values in rows:
        kid = keysets.setdefault(tuple(values), len(keysets))
        packed.append(msgpack.packb([step, ts, kid, list(values.values())], use_bin_type=True))
    return {"n": len(rows), "keys": {kid: list(keys) for keys, kid in keysets.items()}, "rows": b"".join(packed)}


def project(records: list[Record], state: ProjectionState | None = None) -> tuple[ProjectionState, Any]:
    state = state or ProjectionState()
    return state, fold(state, records)


def history(changes: Any) -> list[tuple[Any, ...]]:
    """Last write per (run, step, key), like the store keeps it."""
    rows: dict[tuple[str, int, str], tuple[Any, ...]] = {}
    for chunk in changes.history:
        for b in chunk.batches:
            for r in pa.Table.from_batches([b]).to_pylist():
                rows[(r["run_uid"], r["step"], r["key"])] = (r["step"], r["key"], r["value"], r["value_json"])
    return [rows[k] for k in sorted(rows)]


def summary(changes: Any, uid: str = UID) -> dict[str, Any]:
    return {k: (v if v is not None else j) for k, v, j in changes.summary[uid]}


def run(state: ProjectionState, uid: str = UID) -> RunState:
    return state.runs[uid]


def test_init_fills_the_run_and_flattens_config() -> None:
    log = Log()
    log.init(config={"opt": {"lr": 0.1, "betas": [0.9, 0.99]}, "epochs": 10}, tags=["a"], notes="hi")
    state, ch = project(log.records)
    rs = run(state)
    assert (rs.entity, rs.project, rs.run_id, rs.name, rs.state) == ("ent", "proj", "abc", "n1", "running")
    assert rs.tags == ["a"] and rs.notes == "hi" and rs.created_at == 1000.0
    assert {k: (v, j) for k, v, j in ch.config[UID]} == {
        "opt.lr": (0.1, None),
        "opt.betas": (None, "[0.9,0.99]"),
        "epochs": (10.0, None),
    }


def test_summary_is_the_last_logged_value() -> None:
    log = Log()
    log.init()
    log.log([(0, 1.0, {"loss": 3.0, "acc": 0.1}), (1, 2.0, {"loss": 2.0})])
    log.log([(2, 3.0, {"loss": 1.0})])
    _, ch = project(log.records)
    assert summary(ch) == {"loss": 1.0, "acc": 0.1}


def test_explicit_summary_wins_until_logged_again_and_delete() -> None:
    log = Log()
    log.init()
    log.log([(0, 1.0, {"loss": 3.0, "acc": 0.5})])
    log.add("summary", {"set": {"loss": 0.0, "best": "x"}, "delete": ["acc"]})
    state, ch = project(log.records)
    assert summary(ch) == {"loss": 0.0, "best": '"x"'}
    log.log([(1, 2.0, {"loss": 2.5, "acc": 0.7})])
    ch = fold(state, log.records)
    assert summary(ch) == {"loss": 2.5, "best": '"x"', "acc": 0.7}


def test_define_metric_aggregates_and_globs() -> None:
    log = Log()
    log.init()
    log.log([(0, 1.0, {"loss": 4.0, "val/acc": 0.2, "val/f1": 0.5, "lr": 0.1})])
    log.add("define_metric", {"name": "loss", "summary": ["min", "max", "mean", "first"]})
    log.add("define_metric", {"name": "val/*", "summary": ["max", "last"]})
    log.add("define_metric", {"name": "lr", "summary": ["none"]})
    log.log([(1, 2.0, {"loss": 2.0, "val/acc": 0.9, "val/f1": 0.4, "lr": 0.05}), (2, 3.0, {"loss": 3.0})])
    _, ch = project(log.records)
    assert summary(ch) == {
        "loss.min": 2.0,
        "loss.max": 4.0,
        "loss.mean": 3.0,
        "loss.first": 4.0,
        "val/acc": 0.9,
        "val/acc.max": 0.9,
        "val/f1": 0.4,
        "val/f1.max": 0.5,
    }
    assert [m[0] for m in ch.metrics[UID]] == ["loss", "lr", "val/*"]


def test_backwards_steps_last_write_wins() -> None:
    log = Log()
    log.init()
    log.log([(5, 1.0, {"x": 1.0}), (6, 1.0, {"x": 2.0})])
    log.log([(5, 2.0, {"x": 10.0}), (3, 2.0, {"x": 30.0})])
    state, ch = project(log.records)
    assert history(ch) == [(3, "x", 30.0, None), (5, "x", 10.0, None), (6, "x", 2.0, None)]
    assert [c.dirty for c in ch.history] == [False, True]
    assert run(state).max_step == 6 and summary(ch) == {"x": 30.0}


def test_redelivered_event_is_applied_once_but_out_of_order_seqs_apply() -> None:
    log = Log()
    log.init()
    log.log([(0, 1.0, {"x": 1.0})], seq=5)
    log.log([(1, 1.0, {"x": 2.0})], seq=3)  # a retry arriving late: applied
    log.log([(0, 1.0, {"x": 99.0})], seq=5)  # a redelivery: skipped
    state, ch = project(log.records)
    assert history(ch) == [(0, "x", 1.0, None), (1, "x", 2.0, None)]
    assert ch.skipped == 1 and len(ch.applied) == 3
    again = fold(ProjectionState(runs=state.runs), log.records)  # same log, stream seqs forgotten
    assert again.skipped == 4 and not again.history


def test_log_before_init_makes_a_placeholder() -> None:
    log = Log()
    log.log([(0, 1.0, {"x": 1.0})], ts=990.0)
    state, _ = project(log.records)
    rs = run(state)
    assert rs.entity == "ent" and rs.project is None and not rs.has_init
    log.init()
    ch = fold(state, log.records)
    assert run(state).project == "proj" and run(state).has_init and summary(ch) == {"x": 1.0}


def test_nan_inf_negative_zero_and_non_numeric_values() -> None:
    log = Log()
    log.init()
    log.log(
        [
            (
                0,
                1.0,
                {
                    "a": math.nan,
                    "b": math.inf,
                    "c": -math.inf,
                    "d": -0.0,
                    "s": "txt",
                    "l": [1, 2],
                    "n": None,
                    "t": True,
                    "by": b"\x00\x01",
                },
            )
        ]
    )
    _, ch = project(log.records)
    rows = {k: (v, j) for _, k, v, j in history(ch)}
    assert math.isnan(rows["a"][0]) and rows["b"][0] == math.inf and rows["c"][0] == -math.inf
    assert rows["d"][0] == 0.0 and math.copysign(1.0, rows["d"][0]) == -1.0
    assert rows["s"] == (None, '"txt"') and rows["l"] == (None, "[1,2]") and rows["n"] == (None, "null")
    assert rows["t"] == (1.0, None) and rows["by"] == (None, '"base64:AAE="')


def test_masked_columns_keep_only_logged_cells() -> None:
    log = Log()
    log.init()
    log.log([(0, 1.0, {"x": 1.0}), (1, 2.0, {"y": "a"}), (2, 3.0, {"x": 3.0, "y": 4})])
    _, ch = project(log.records)
    assert history(ch) == [
        (0, "x", 1.0, None),
        (1, "y", None, '"a"'),
        (2, "x", 3.0, None),
        (2, "y", 4.0, None),
    ]


def test_malformed_events_become_dead_letters_and_folding_goes_on() -> None:
    log = Log()
    log.init()
    log.raw(run_subject("ent", UID, "log"), b"\xc1 not msgpack")
    log.add("teleport", {})
    log.add("finish", {"exit_code": "zero"})
    log.log([(1.5, 1.0, {"x": 1.0})])
    bad = encode_log_body([(0, 1.0, {"x": 1.0}), (1, 1.0, {"x": 2.0})])
    bad["cols"]["x"]["f"] = bad["cols"]["x"]["f"][:8]
    log.add("log", bad)
    log.raw("not.a.run.subject", encode_event(envelope("heartbeat", UID, "w1", 99, 1.0, {})))
    log.raw(
        run_subject("ent", "otheruid", "heartbeat"),
        encode_event(envelope("heartbeat", UID, "w1", 98, 1.0, {})),
    )
    log.raw(run_subject("ent", UID, "heartbeat"), pack([1, 2]))
    log.log([(3.0, 1.0, {"x": 7.0})])
    state, ch = project(log.records)
    reasons = [d.reason for d in ch.dead_letters]
    assert len(reasons) == 8, reasons
    assert "not msgpack" in reasons[0]
    assert "unknown event type 'teleport'" in reasons[1]
    assert "finish event" in reasons[2]
    assert "step 1.5 is not an integer" in reasons[3]
    assert "float64" in reasons[4]
    assert "not a run event subject" in reasons[5]
    assert "does not match subject run" in reasons[6]
    assert "not a map" in reasons[7]
    assert history(ch) == [(3, "x", 7.0, None)]
    assert ch.checkpoint == len(log.records) and state.checkpoint == ch.checkpoint


def test_crashed_then_heartbeat_returns_to_running() -> None:
    log = Log()
    log.init(start_time=1000.0)
    log.add("heartbeat", {}, ts=1010.0)
    log.add("crashed", {"last_heartbeat": 1010.0, "timeout": 60.0}, writer="reaper", seq=1010000, ts=1100.0)
    state, _ = project(log.records)
    assert run(state).state == "crashed" and run(state).heartbeat_at == 1010.0
    log.add("heartbeat", {}, ts=1050.0)  # sent before the lapse, delivered late: still crashed
    fold(state, log.records)
    assert run(state).state == "crashed"
    log.add("heartbeat", {}, ts=1200.0)
    fold(state, log.records)
    assert run(state).state == "running" and run(state).heartbeat_at == 1200.0


def test_stale_crash_decision_is_ignored_and_finish_states_stick() -> None:
    log = Log()
    log.init(start_time=1000.0)
    log.add("heartbeat", {}, ts=1200.0)
    log.add("crashed", {"last_heartbeat": 1010.0, "timeout": 60.0}, writer="reaper", seq=1010000)
    state, _ = project(log.records)
    assert run(state).state == "running"
    log.add("finish", {"exit_code": 1, "state": "failed", "runtime": 42.0}, ts=1300.0)
    log.add("crashed", {"last_heartbeat": 1300.0, "timeout": 60.0}, writer="reaper", seq=1300000)
    ch = fold(state, log.records)
    rs = run(state)
    assert (rs.state, rs.exit_code, rs.finished_at, rs.runtime) == ("failed", 1, 1300.0, 42.0)
    assert ch.runs[UID] is rs


def test_state_round_trips_through_bytes() -> None:
    log = Log()
    log.init(config={"a": 1})
    log.log([(0, 1.0, {"x": 1.0, "s": "a"})], seq=7)
    log.add("define_metric", {"name": "x", "summary": ["max"]})
    state, _ = project(log.records)
    rs = run(state)
    back = RunState.from_bytes(rs.to_bytes())
    assert back == rs or back.to_bytes() == rs.to_bytes()
    assert 7 in back.applied["w1"] and 6 not in back.applied["w1"]


def test_meta_edits_fields_and_is_no_sign_of_life() -> None:
    from runstream.broker.codec import encode_event, envelope
    from runstream.projector import ProjectionState, fold
    from runstream.projector.fold import Record

    uid = "00meta0000000000000000000a"
    subj = f"rs.e.run.{uid}."
    init = envelope("init", uid, "w1", 1, 100.0, {"entity": "e", "project": "p", "run_id": "r", "name": "old",
                                                   "tags": ["a"], "start_time": 100.0})
    crashed = envelope("crashed", uid, "reaper", 1, 500.0, {"last_heartbeat": 100.0, "timeout": 300.0})
    meta = envelope("meta", uid, "api:x", 1, 600.0, {"name": "new", "tags": ["b", "c"]})
    state = ProjectionState()
    fold(state, [Record(1, subj + "init", encode_event(init)), Record(2, subj + "crashed", encode_event(crashed)),
                 Record(3, subj + "meta", encode_event(meta))])
    rs = state.runs[uid]
    assert (rs.name, rs.tags, rs.notes) == ("new", ["b", "c"], None)
    assert rs.state == "crashed" and rs.heartbeat_at == 100.0  # the edit did not revive it


# -- log_rows: the same rows, packed as the SDK spools them ----------------------------------------


def flat(rows: list[tuple[Any, float, dict[str, Any]]]) -> list[tuple[Any, float, dict[str, Any]]]:
    """What the SDK hands ``encode_log_body``: nested dicts flattened."""
    return [(step, ts, flatten(values)) for step, ts, values in rows]


def _tables(ch: Any) -> tuple[Any, ...]:
    return repr(history(ch)), repr(ch.summary), [(c.dirty, c.rows.to_pylist() if c.rows else None)
                                                 for c in ch.history]


def test_log_rows_floats_project_like_log() -> None:
    rows = [(0, 1.0, {"loss": 3.0, "acc": 0.1}), (1, 2.0, {"loss": 2.0, "acc": 0.2}), (2, 3.0, {"loss": 1.0})]
    log = Log()
    log.init()
    log.log_rows(rows)
    state, ch = project(log.records)
    assert not ch.dead_letters
    assert history(ch) == [(0, "acc", 0.1, None), (0, "loss", 3.0, None), (1, "acc", 0.2, None),
                           (1, "loss", 2.0, None), (2, "loss", 1.0, None)]
    assert summary(ch) == {"loss": 1.0, "acc": 0.2} and run(state).max_step == 2


def test_log_rows_mixed_values_and_nested_dicts_are_flattened() -> None:
    log = Log()
    log.init()
    log.log_rows([(0, 1.0, {"a": math.nan, "b": -0.0, "i": 3, "big": 2**60, "t": True, "s": "txt",
                            "l": [1, [2]], "n": None, "by": b"\x00\x01", "e": {},
                            "opt": {"lr": 0.1, "m": {"x": "y", "z": 2}}})])
    _, ch = project(log.records)
    assert not ch.dead_letters
    rows = {k: (v, j) for _, k, v, j in history(ch)}
    assert math.isnan(rows["a"][0]) and math.copysign(1.0, rows["b"][0]) == -1.0
    assert rows["i"] == (3.0, None) and rows["t"] == (1.0, None) and rows["big"] == (None, str(2**60))
    assert rows["s"] == (None, '"txt"') and rows["l"] == (None, "[1,[2]]") and rows["n"] == (None, "null")
    assert rows["by"] == (None, '"base64:AAE="') and rows["e"] == (None, "{}")
    assert rows["opt.lr"] == (0.1, None) and rows["opt.m.x"] == (None, '"y"') and rows["opt.m.z"] == (2.0, None)
    assert "opt" not in rows


def test_log_rows_backwards_steps_and_a_step_twice_within_one_event() -> None:
    log = Log()
    log.init()
    log.log_rows([(5, 1.0, {"x": 1.0}), (6, 1.0, {"x": 2.0})])
    log.log_rows([(5, 2.0, {"x": 10.0}), (3, 2.0, {"x": 30.0}), (3, 2.5, {"x": 31.0, "y": "s"}),
                  (3.0, 2.6, {"x": 32.0})])
    state, ch = project(log.records)
    assert not ch.dead_letters
    # the store keeps the last write per (step, key): the later row within the event wins
    assert history(ch) == [(3, "x", 32.0, None), (3, "y", None, '"s"'), (5, "x", 10.0, None), (6, "x", 2.0, None)]
    assert [c.dirty for c in ch.history] == [False, True]
    assert run(state).max_step == 6 and summary(ch) == {"x": 32.0, "y": "\"s\""}


def test_log_rows_several_keysets_share_keys() -> None:
    rows = [(0, 1.0, {"loss": 1.0}), (1, 2.0, {"loss": 2.0, "val": 0.5}), (2, 3.0, {"loss": 3.0}),
            (3, 4.0, {"loss": "nan?", "val": {"f1": 0.1}}), (4, 5.0, {})]
    a, b = Log(), Log()
    a.init(), b.init()
    a.log(flat(rows))
    b.log_rows(rows)
    assert len(log_rows_body(rows)["keys"]) == 3
    _, ca = project(a.records)
    _, cb = project(b.records)
    assert not cb.dead_letters and _tables(ca) == _tables(cb)


def test_same_rows_as_log_and_as_log_rows_give_identical_tables(tmp_path: Any) -> None:
    from runstream.projector import Store
    from runstream.projector.schema import PUBLIC_TABLES

    batches = [
        [(0, 1.0, {"loss": 3.0, "acc": 0.1, "s": "a"}), (1, 2.0, {"loss": math.nan, "opt": {"lr": 0.1}})],
        [(1, 3.0, {"loss": -0.0, "acc": True}), (0, 3.5, {"loss": math.inf, "big": 2**60, "l": [1, {"k": 2}]})],
        [(7, 4.0, {}), (8, 4.5, {"acc": 2, "n": None, "opt": {"lr": 0.2, "mom": {"b": 0.9}}})],
    ]
    out = []
    for kind in ("log", "log_rows"):
        log = Log()
        log.init()
        log.add("define_metric", {"name": "loss", "summary": ["min", "max", "mean", "first", "last"]})
        for rows in batches:
            log.log(flat(rows)) if kind == "log" else log.log_rows(rows)
        store = Store(tmp_path / f"{kind}.duckdb")
        changes = fold(store.load(), log.records)
        assert not changes.dead_letters
        store.apply(changes)
        out.append({t: repr(sorted(store.con.execute(f"SELECT * EXCLUDE (stream_seq) FROM {t}" if t == "applied"
                                                     else f"SELECT * FROM {t}").fetchall(), key=repr))
                    for t in PUBLIC_TABLES})
        store.close()
    assert out[0] == out[1]


def _rows_event(log: Log, n: int, keys: dict[int, list[str]], rows: list[Any] | bytes) -> Record:
    blob = rows if isinstance(rows, bytes) else b"".join(msgpack.packb(r) for r in rows)
    return log.add("log_rows", {"n": n, "keys": keys, "rows": blob})


def test_malformed_log_rows_become_dead_letters_and_folding_goes_on() -> None:
    log = Log()
    log.init()
    good = [0, 1.0, 0, [1.0]]
    _rows_event(log, 2, {0: ["x"]}, [good, [1, 1.0, 7, [2.0]]])
    _rows_event(log, 2, {0: ["x"]}, [good, [1, 1.0, 0, [2.0, 3.0]]])
    _rows_event(log, 2, {0: ["x"]}, [good, [1.5, 1.0, 0, [2.0]]])
    _rows_event(log, 1, {0: ["x"]}, [[-1, 1.0, 0, [2.0]]])
    _rows_event(log, 1, {0: ["x"]}, [["1", 1.0, 0, [2.0]]])
    _rows_event(log, 1, {0: ["x"]}, [[1, "now", 0, [2.0]]])
    _rows_event(log, 2, {0: ["x"]}, [good, [1, 1.0, 0]])
    _rows_event(log, 1, {0: ["x"]}, b"\xc1 not msgpack")
    _rows_event(log, 3, {0: ["x"]}, [good, good])
    _rows_event(log, 1, {0: ["x"]}, [good, good])
    _rows_event(log, 1, {0: ["x"]}, msgpack.packb(good) + b"\x93")
    _rows_event(log, 1, {0: ["x"]}, [[2**63, 1.0, 0, [2.0]]])
    log.add("log_rows", {"n": 1, "keys": {"0": ["x"]}, "rows": msgpack.packb(good)})
    log.add("log_rows", {"n": 1, "keys": {0: ["x"]}, "rows": "text"})
    _rows_event(log, 1, {0: ["x"]}, [[3, 1.0, 0, [7.0]]])
    state, ch = project(log.records)
    reasons = [d.reason for d in ch.dead_letters]
    assert len(reasons) == 14, reasons
    expected = [
        "row 1 names keyset 7, which is not in 'keys'",
        "row 1: values (2.0, 3.0) do not match the 1 keys of keyset 0",
        "row 1: step 1.5 is not a non-negative integer",
        "row 0: step -1 is not a non-negative integer",
        "row 0: step '1' is not a non-negative integer",
        "row 0: timestamp 'now' is not a number",
        "row 1 is (1, 1.0, 0), not an array [step, timestamp, kid, values]",
        "'rows' is not msgpack after 0 rows: FormatError",
        "'rows' holds 2 rows, 'n' says 3",
        "'rows' holds 2 rows, 'n' says 1",
        "'rows' ends inside row 1",
        "a step does not fit a 64-bit integer",
        "log_rows event: keys",
        "log_rows event: rows",
    ]
    for reason, want in zip(reasons, expected, strict=True):
        assert want in reason, (reason, want)
        assert reason.startswith("log_rows event")
    assert history(ch) == [(3, "x", 7.0, None)] and run(state).max_step == 3
    assert ch.checkpoint == len(log.records)
