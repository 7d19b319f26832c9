"""Property: incremental projection (any batch boundaries, redeliveries, a restart) equals a
from-scratch projection of the same log, table for table."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runstream.broker.codec import encode_event, encode_log_body, envelope
from runstream.broker.names import run_subject
from runstream.projector import Record, Store, fold
from runstream.projector.schema import PUBLIC_TABLES

UIDS = ["aaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbb", "cccccccccccccccccccccccccc"]
KEYS = ["a", "b", "c.d", "s"]

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-5, 5),
    st.text(max_size=3),
    st.none(),
    st.sampled_from([-0.0, 0.0]),
)
media_refs = st.one_of(
    st.builds(lambda w, sha: {"_type": "image-file", "path": f"media/images/k_{sha}.png", "sha256": sha * 8,
                              "size": 70, "format": "png", "width": w, "height": 2},
              st.integers(1, 4), st.sampled_from(["aa", "bb"])),
    st.builds(lambda n: {"_type": "histogram", "values": [n, 1], "bins": [0.0, 0.5, 1.0], "nbins": 2},
              st.integers(0, 3)),
)
"""Media references as runstream.media writes them: dicts with ``_type`` are one value (the ``media``
view reads them), never flattened into dotted keys."""
nested = st.one_of(values, media_refs, st.dictionaries(st.sampled_from(["d", "e"]), values, max_size=2))
"""A value of a ``log_rows`` row: the SDK ships them unflattened."""
rows = st.lists(
    st.tuples(
        st.integers(0, 8), st.floats(1000, 2000), st.dictionaries(st.sampled_from(KEYS), values, max_size=4)
    ),
    min_size=0,
    max_size=5,
)


@st.composite
def event(draw: st.DrawFn) -> tuple[str, bytes]:
    uid = draw(st.sampled_from(UIDS))
    kind = draw(
        st.sampled_from(
            [
                "init",
                "log",
                "log",
                "log_rows",
                "log_rows",
                "config",
                "summary",
                "define_metric",
                "heartbeat",
                "finish",
                "crashed",
                "output",
                "output",
                "garbage",
                "fork",
                "rewind",
                "resume",
                "join",
            ]
        )
    )
    writer = draw(st.sampled_from(["w1", "w2"]))
    seq = draw(st.integers(0, 12))
    ts = draw(st.floats(1000, 2000))
    body: dict[str, Any]
    if kind == "garbage":
        return run_subject("e", uid, "log"), draw(st.binary(max_size=8))
    if kind in ("fork", "rewind", "resume"):  # an init with an origin: lineage, branches, clock
        origin: dict[str, Any] = {"kind": kind, "run_uid": uid if kind != "fork" else draw(st.sampled_from(UIDS))}
        if kind != "resume":
            origin.update(step=draw(st.sampled_from([0, 2, 3.5, 6])),
                          stats=draw(st.sampled_from([{}, {"a": [2, 2, 3.0, 1.0, 2.0, 1.0, 2.0]}])),
                          last_step=draw(st.sampled_from([None, 2])), runtime=draw(st.floats(0, 50)))
        body = {"entity": "e", "project": "p", "run_id": uid[:4], "start_time": ts, "origin": origin,
                "config": {"lr": draw(values)}}
        return run_subject("e", uid, "init"), encode_event(envelope("init", uid, writer, seq, ts, body))
    if kind == "join":
        body = {"label": draw(st.sampled_from(["rank1", None])), "start_time": ts}
    elif kind == "init":
        body = {
            "entity": "e",
            "project": "p",
            "run_id": uid[:4],
            "name": "n",
            "start_time": ts,
            "config": {"lr": draw(values), "opt": {"m": draw(values)}},
            "tags": ["t"],
        }
    elif kind == "log":
        body = encode_log_body(draw(rows))
        if draw(st.integers(0, 9)) == 0:
            body["step"] = [s + 0.5 for s in body["step"]] or [0.5]
    elif kind == "log_rows":
        body = log_rows_body(draw(st.lists(st.tuples(
            st.integers(0, 8), st.floats(1000, 2000),
            st.dictionaries(st.sampled_from(KEYS), nested, max_size=4)), max_size=5)))
        spoil = draw(st.sampled_from(["none"] * 12 + ["garbage", "n", "keys"]))
        if spoil == "garbage":
            body["rows"] += b"\xc1"
        elif spoil == "n":
            body["n"] += 1
        elif spoil == "keys":
            body["keys"] = {}
    elif kind == "config":
        body = {"set": {draw(st.sampled_from(["lr", "bs"])): draw(values)}}
    elif kind == "summary":
        body = {
            "set": {draw(st.sampled_from(KEYS)): draw(values)},
            "delete": draw(st.lists(st.sampled_from(KEYS), max_size=1)),
        }
    elif kind == "define_metric":
        body = {
            "name": draw(st.sampled_from(["a", "b", "c.*", "*"])),
            "summary": draw(
                st.lists(
                    st.sampled_from(["min", "max", "mean", "last", "first", "none"]),
                    min_size=1,
                    max_size=3,
                    unique=True,
                )
            ),
        }
    elif kind == "finish":
        body = {
            "exit_code": 0,
            "state": draw(st.sampled_from(["finished", "failed", "killed"])),
            "runtime": 5.0,
        }
    elif kind == "output":  # line numbers repeat and go down: appends, in-batch replacements, upserts
        body = {"lines": draw(st.lists(st.fixed_dictionaries({
            "line": st.integers(0, 5), "stream": st.sampled_from(["stdout", "stderr"]),
            "ts": st.floats(1000, 2000), "text": st.text(max_size=3)}), max_size=4))}
    elif kind == "crashed":
        writer = "reaper"
        body = {"last_heartbeat": ts - 100, "timeout": 50.0}
    else:
        body = {}
    return run_subject("e", uid, kind), encode_event(envelope(kind, uid, writer, seq, ts, body))


def log_rows_body(rows_: list[tuple[int, float, dict[str, Any]]]) -> dict[str, Any]:
    """Rows → a ``log_rows`` body, one keyset per distinct key tuple, packed as the SDK spools them."""
    keysets: dict[tuple[str, ...], int] = {}
    packed = b""
    for step, ts, vals in rows_:
        kid = keysets.setdefault(tuple(vals), len(keysets))
        packed += msgpack.packb([step, ts, kid, list(vals.values())])
    return {"n": len(rows_), "keys": {kid: list(k) for k, kid in keysets.items()}, "rows": packed}


@st.composite
def stream(draw: st.DrawFn) -> list[Record]:
    events = draw(st.lists(event(), min_size=1, max_size=40))
    out: list[tuple[str, bytes]] = []
    for ev in events:
        out.append(ev)
        if out and draw(st.integers(0, 5)) == 0:  # a redelivery published again outside the dedup window
            out.append(out[draw(st.integers(0, len(out) - 1))])
    return [Record(i + 1, subj, data, 1000.0 + i) for i, (subj, data) in enumerate(out)]


def _norm(v: Any) -> Any:
    if isinstance(v, float):
        return ("f", repr(v))
    if isinstance(v, list):
        return tuple(_norm(x) for x in v)
    if isinstance(v, dict):  # MAP columns (history_wide.metrics): NaN-safe, order-free
        return tuple(sorted((k, _norm(x)) for k, x in v.items()))
    return v


def tables(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for t in (*PUBLIC_TABLES, "history_branches", "history_wide"):  # the views over lines and clocks too
        rows_ = store.con.execute(f"SELECT * FROM {t}").fetchall()
        out[t] = sorted((tuple(_norm(v) for v in r) for r in rows_), key=repr)
    return out


def project_incrementally(
    path: Path, records: list[Record], cuts: list[int], restart_at: int, overlap: int
) -> dict[str, list[tuple[Any, ...]]]:
    store = Store(path)
    state = store.load()
    bounds = sorted({0, len(records), *(c % (len(records) + 1) for c in cuts)})
    for i, (lo, hi) in enumerate(zip(bounds, bounds[1:], strict=False)):
        if i == restart_at:
            store.close()
            store = Store(path)
            state = store.load()
        batch = records[max(0, lo - overlap) : hi]  # a re-fetch of already projected records
        store.apply(fold(state, batch))
    result = tables(store)
    store.close()
    return result


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=stream(),
    cuts=st.lists(st.integers(0, 100), max_size=6),
    restart_at=st.integers(0, 6),
    overlap=st.integers(0, 3),
)
def test_incremental_projection_equals_replay(
    records: list[Record], cuts: list[int], restart_at: int, overlap: int
) -> None:
    with tempfile.TemporaryDirectory() as d:
        incremental = project_incrementally(Path(d) / "inc.duckdb", records, cuts, restart_at, overlap)
        scratch = Store(Path(d) / "all.duckdb")
        scratch.apply(fold(scratch.load(), records))
        expected = tables(scratch)
        scratch.close()
    assert incremental == expected


def test_log_events_without_values_and_values_changing_type() -> None:
    """Edge cases of the point tables: a log event with steps but no columns, and a (step, key)
    rewritten from a number to text and back, across batches and a restart."""
    uid = UIDS[0]

    def log(seq: int, rows_: list[tuple[int, float, dict[str, Any]]]) -> tuple[str, bytes]:
        env = envelope("log", uid, "w1", seq, 1000.0, encode_log_body(rows_))
        return run_subject("e", uid, "log"), encode_event(env)

    events = [log(0, [(0, 1.0, {}), (1, 1.0, {})]), log(1, [(0, 1.0, {"a": 1.0, "s": "x"})]),
              log(2, [(0, 2.0, {"a": "text", "s": -0.0})]), log(3, [(0, 3.0, {"a": float("nan")})])]
    records = [Record(i + 1, subj, data, 1000.0 + i) for i, (subj, data) in enumerate(events)]
    with tempfile.TemporaryDirectory() as d:
        incremental = project_incrementally(Path(d) / "inc.duckdb", records, [1, 2, 3], 2, 0)
        scratch = Store(Path(d) / "all.duckdb")
        scratch.apply(fold(scratch.load(), records))
        expected = tables(scratch)
        history = scratch.con.execute(
            "SELECT step, key, value, value_json, timestamp FROM history ORDER BY key").fetchall()
        scratch.close()
    assert incremental == expected
    # the step's timestamp is its last row's, for every key
    assert repr(history) == repr([(0, "a", float("nan"), None, 3.0), (0, "s", -0.0, None, 3.0)])


def test_a_file_written_with_history_as_a_table_is_rebuilt_from_the_log() -> None:
    import duckdb

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "old.duckdb"
        con = duckdb.connect(str(path))
        con.execute("CREATE TABLE history (run_uid VARCHAR, step BIGINT, key VARCHAR, value DOUBLE, "
                    "value_json VARCHAR, timestamp DOUBLE)")
        con.execute("CREATE TABLE projector_checkpoint (name VARCHAR PRIMARY KEY, stream_seq BIGINT NOT NULL, "
                    "updated_at TIMESTAMPTZ)")
        con.execute("INSERT INTO projector_checkpoint VALUES ('main', 7, now())")
        con.close()
        store = Store(path)
        try:
            assert store.checkpoint() == 0  # replays the log into the current layout
            assert store.con.execute("SELECT count(*) FROM history").fetchone() == (0,)
        finally:
            store.close()


def _output(seq: int, lines: list[tuple[int, str]], writer: str = "w1") -> Record:
    body = {"lines": [{"line": n, "stream": "stdout", "ts": 1000.0 + n, "text": t} for n, t in lines]}
    return Record(seq, run_subject("e", UIDS[0], "output"), encode_event(envelope("output", UIDS[0], writer, seq,
                                                                                   1000.0, body)), 1000.0)


def test_new_console_lines_are_appended_and_only_a_completed_one_is_replaced() -> None:
    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d) / "p.duckdb")
        state = store.load()
        first = fold(state, [_output(1, [(0, "a"), (1, "load"), (1, "loadi")]), _output(2, [(2, "b")])])
        assert "console" not in first.upserts  # new lines only: no DELETE
        assert [r["text"] for r in first.appends["console"]] == ["a", "loadi", "b"]  # one row a line
        store.apply(first)
        later = fold(state, [_output(3, [(1, "loading done"), (2, "b!"), (3, "c")]), _output(4, [(3, "c!"), (4, "d")])])
        assert [r["line"] for r in later.upserts["console"][1]] == [1, 2]  # lines stored unfinished
        assert [(r["line"], r["text"]) for r in later.appends["console"]] == [(3, "c!"), (4, "d")]
        store.apply(later)
        other = fold(state, [_output(5, [(0, "w2 line")], writer="w2")])
        assert "console" not in other.upserts  # numbering is per writer
        store.apply(other)
        rows = store.con.execute("SELECT writer, line, text FROM console ORDER BY writer, line").fetchall()
        store.close()
    assert rows == [("w1", 0, "a"), ("w1", 1, "loading done"), ("w1", 2, "b!"), ("w1", 3, "c!"), ("w1", 4, "d"),
                    ("w2", 0, "w2 line")]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(st.tuples(st.sampled_from(["w1", "w2"]), st.lists(
        st.tuples(st.integers(0, 6), st.text(max_size=2)), max_size=4)), min_size=1, max_size=12),
    cuts=st.lists(st.integers(0, 100), max_size=6),
    restart_at=st.integers(0, 6),
)
def test_console_rows_are_each_lines_last_state_whatever_the_batches(
    events: list[tuple[str, list[tuple[int, str]]]], cuts: list[int], restart_at: int
) -> None:
    records = [_output(i + 1, lines, writer) for i, (writer, lines) in enumerate(events)]
    last: dict[tuple[str, int], str] = {}
    for writer, lines in events:
        for n, text in lines:
            last[(writer, n)] = text
    with tempfile.TemporaryDirectory() as d:
        got = project_incrementally(Path(d) / "inc.duckdb", records, cuts, restart_at, overlap=1)["console"]
    assert sorted((r[1], r[4], r[6]) for r in got) == sorted((w, n, t) for (w, n), t in last.items())
