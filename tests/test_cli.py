"""The ``runstream`` CLI: pure formatting with exact strings, then commands against a real server."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from runstream.broker import NatsServer
from runstream.cli import health_lines, main, runs_query, runs_table, sql_literal
from runstream.query.render import (
    format_duration,
    format_summary,
    format_value,
    render_run,
    render_table,
    to_csv,
    to_json,
)
from tests.query_helpers import ServerProc, log_run, serve_for_test, unique

UTC = dt.UTC
T0 = dt.datetime(2024, 5, 1, 12, 30, 5, tzinfo=UTC)


@pytest.fixture
def query_server(nats_server: NatsServer, tmp_path: Path, rs_env: dict[str, str],
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerProc]:
    yield from serve_for_test(nats_server, tmp_path, rs_env, monkeypatch)


# -- pure formatting -------------------------------------------------------------------------------


def test_render_table_aligns_numbers_right_and_text_left() -> None:
    text = render_table(["name", "loss", "note"], [("a", 0.5, None), ("longer", 12, "x" * 50)],
                        max_col_width=10)
    assert text == (
        "name    loss  note\n"
        "------  ----  ----------\n"
        "a        0.5\n"
        "longer    12  xxxxxxxxx…\n"
    )


def test_render_table_empty() -> None:
    assert render_table(["a", "b"], []) == "a  b\n-  -\n"


@pytest.mark.parametrize(("seconds", "text"), [
    (None, ""), (0.25, "0.25s"), (3.0, "3s"), (4.5, "4.5s"), (42.4, "42s"), (185, "3m 05s"),
    (7384, "2h 03m 04s"), (93784, "1d 02h 03m"),
])
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(("value", "text"), [
    (None, ""), (True, "true"), (0.1 + 0.2, "0.3"), (float("nan"), "nan"), (float("-inf"), "-inf"),
    (1234567.0, "1.23457e+06"), (T0, "2024-05-01 12:30:05"), (["a", 1], "[a, 1]"),
    ([("k", 1.5)], "{k: 1.5}"), (b"xyz", "<3 bytes>"),
])
def test_format_value(value: object, text: str) -> None:
    assert format_value(value, UTC) == text


def test_format_summary_hides_private_keys_and_counts_the_rest() -> None:
    items = [("_step", 9), ("acc", 0.9), ("b", 1), ("c", 2), ("d", 3), ("e", 4)]
    assert format_summary(items) == "acc=0.9 b=1 c=2 d=3 +1"


def test_runs_table_exact() -> None:
    rows = [("nico/proj/abc", "happy-cat-1", "finished", T0, 185.0, [{"k": "loss", "v": "0.1"},
                                                                      {"k": "_step", "v": "9"}]),
            ("nico/proj/xyz", None, "running", T0, None, None)]
    assert runs_table([], rows, tz=UTC) == (
        "path           name         state     created              runtime  summary\n"
        "-------------  -----------  --------  -------------------  -------  --------\n"
        "nico/proj/abc  happy-cat-1  finished  2024-05-01 12:30:05  3m 05s   loss=0.1\n"
        "nico/proj/xyz               running   2024-05-01 12:30:05\n"
    )


def test_runs_query_quotes_names() -> None:
    q = runs_query("o'brien", "p", 10)
    assert "r.entity = 'o''brien'" in q and "r.project = 'p'" in q and q.endswith("LIMIT 10")
    assert sql_literal("a'b") == "'a''b'"


def test_csv_and_json() -> None:
    table = pa.table({"a": [1, None], "t": [T0, None], "l": [["x"], None], "f": [float("nan"), 0.5]})
    assert to_csv(table) == 'a,t,l,f\n1,2024-05-01T12:30:05+00:00,"[""x""]",nan\n,,,0.5\n'
    assert json.loads(to_json(table)) == [
        {"a": 1, "t": "2024-05-01T12:30:05+00:00", "l": ["x"], "f": "nan"},
        {"a": None, "t": None, "l": None, "f": 0.5},
    ]


def test_render_run_names_its_origin() -> None:
    base = {"path": "e/p/c", "name": "n", "state": "finished", "run_uid": "u2", "metadata": None}
    fork = {**base, "origin_kind": "fork", "origin_run_uid": "u1", "origin_step": 4.5, "origin_depth": 2,
            "origin_path": "e/p/parent"}
    assert "origin     fork of e/p/parent at step 4.5 (depth 2)\n" in render_run(fork, [], [], tz=UTC)
    unknown = {**fork, "origin_path": None}  # the parent is gone from the projection: its uid
    assert "fork of u1 at step 4.5" in render_run(unknown, [], [], tz=UTC)
    rewound = {**base, "origin_kind": "rewind", "origin_run_uid": "u2", "origin_step": 40.0}
    assert "origin     rewound at step 40\n" in render_run(rewound, [], [], tz=UTC)
    resumed = {**base, "origin_kind": "resume", "origin_run_uid": "u2"}
    assert "origin     resumed\n" in render_run(resumed, [], [], tz=UTC)


def test_render_run_exact() -> None:
    run = {"path": "e/p/id1", "name": "n", "state": "finished", "exit_code": 0, "created_at": T0,
           "heartbeat_at": None, "finished_at": T0, "runtime": 12.0, "last_step": 4, "tags": ["a", "b"],
           "notes": None, "metadata": '{"host": "box", "python": "3.11"}', "run_uid": "u1"}
    assert render_run(run, [("lr", 0.01)], [], tz=UTC) == (
        "path       e/p/id1\n"
        "name       n\n"
        "state      finished (exit code 0)\n"
        "created    2024-05-01 12:30:05\n"
        "finished   2024-05-01 12:30:05\n"
        "runtime    12s\n"
        "last step  4\n"
        "tags       a, b\n"
        "uid        u1\n"
        "\n"
        "config\n"
        "  lr  0.01\n"
        "\n"
        "summary\n"
        "  (none)\n"
        "\n"
        "metadata\n"
        "  host    box\n"
        "  python  3.11\n"
    )


def test_health_lines() -> None:
    health = {"projected_seq": 5, "stream_last_seq": 7, "lag": 2, "uptime_s": 65.0,
              "replay": {"running": True, "done": 3, "total": 7}}
    assert health_lines(health, None) == ["projector at stream seq 5 of 7 (lag 2), up 1m 05s",
                                          "replay    running: 3/7"]
    assert health_lines(None, "no server") == ["projector unknown: no server"]
    stalled = {**health, "replay": {}, "stalled": {"reason": "disk_full", "message": "the disk of x is full"}}
    assert health_lines(stalled, None) == ["projector at stream seq 5 of 7 (lag 2), up 1m 05s",
                                           "projector PAUSED: the disk of x is full"]


def test_health_lines_say_where_the_broker_stands() -> None:
    import time

    since = time.mktime((2026, 12, 2, 6, 30, 5, 0, 0, -1))
    up = {"projected_seq": 9, "stream_last_seq": 9, "lag": 0, "uptime_s": 5.0,
          "broker": {"connected": True, "since": since, "url": "nats://10.0.0.2:4333", "failing": []}}
    assert health_lines(up, None) == ["projector at stream seq 9 of 9 (lag 0), up 5s",
                                      "broker    connected to nats://10.0.0.2:4333 since 06:30:05"]
    down = {"projected_seq": 9, "stream_last_seq": None, "lag": None, "uptime_s": 5.0,
            "broker": {"connected": False, "since": since, "last_error": "TimeoutError",
                       "failing": ["fetch", "stream info"]}}
    assert health_lines(down, None) == [
        "projector at stream seq 9 of ? (lag ?), up 5s",
        "broker    unreachable since 06:30:05: reads answer from the database, the lag is as last known "
        "(last error: TimeoutError); retrying: fetch, stream info"]


# -- commands against a real server ----------------------------------------------------------------


def test_sql_formats(query_server: ServerProc, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "SELECT 1 AS a, 'x' AS b"]) == 0
    assert capsys.readouterr().out == "a  b\n-  -\n1  x\n(1 row)\n"
    assert main(["sql", "SELECT 1 AS a", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"a": 1}]
    assert main(["sql", "SELECT * FROM range(3) t(i)", "--format", "csv", "--max-rows", "2"]) == 0
    out = capsys.readouterr()
    assert out.out == "i\n0\n1\n" and "truncated to 2 rows" in out.err


def test_sql_refused_exits_1_with_the_reason(query_server: ServerProc,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "COPY runs TO '/tmp/x.csv'"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("runstream: error: refused: COPY")


def test_runs_and_show(query_server: ServerProc, capsys: pytest.CaptureFixture[str]) -> None:
    entity = unique("cli")
    path = log_run(entity, "proj", steps=3)
    assert main(["runs", f"{entity}/proj"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["path", "name", "state", "created", "runtime", "summary"]
    assert out[2].startswith(path) and "finished" in out[2] and "loss=0.333333" in out[2]
    assert main(["show", path]) == 0
    out = capsys.readouterr().out
    assert f"path       {path}\n" in out and "state      finished (exit code 0)\n" in out
    assert "config\n  epochs  3\n  lr      0.01\n" in out
    assert main(["show", f"{entity}/proj/nope"]) == 1
    assert "no run" in capsys.readouterr().err
    assert main(["show", "not-a-path"]) == 1
    assert "expected ENTITY/PROJECT/ID" in capsys.readouterr().err
    assert main(["runs", f"{entity}/empty"]) == 0
    assert capsys.readouterr().out == f"no runs in {entity}/empty\n"


def test_status_and_replay_via_the_server(query_server: ServerProc,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    log_run(unique("st"), "p", steps=1)
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "(external; RUNSTREAM_NATS_URL)" in out and f"pid {query_server.proc.pid}" in out
    assert main(["replay"]) == 0
    assert "replayed the log up to stream seq" in capsys.readouterr().out


def test_replay_without_a_server_rebuilds_the_file(nats_server: NatsServer, rs_env: dict[str, str],
                                                    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RUNSTREAM_SERVER_NAME", unique("absent"))
    entity = unique("file")
    log_run(entity, "p", steps=2)
    assert main(["replay"]) == 0
    db = tmp_path / "data" / "runstream.duckdb"
    assert str(db) in capsys.readouterr().out
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM runs WHERE entity = ?", [entity]).fetchone() == (1,)


def test_no_server_is_a_clear_error(rs_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    name = unique("absent")
    monkeypatch.setenv("RUNSTREAM_SERVER_NAME", name)
    assert main(["sql", "SELECT 1", "--server", name]) == 1  # SQL without --server goes to any server
    assert f"no runstream server named '{name}'" in capsys.readouterr().err


def test_sync_sends_an_offline_run(query_server: ServerProc, capsys: pytest.CaptureFixture[str]) -> None:
    entity = unique("sync")
    path = log_run(entity, "p", steps=4, mode="offline")
    assert main(["sync"]) == 0
    assert "synced 1 run" in capsys.readouterr().out
    assert main(["sql", f"SELECT path, state FROM runs WHERE entity = '{entity}'", "--format", "csv"]) == 0
    assert capsys.readouterr().out == f"path,state\n{path},finished\n"
    assert main(["sync"]) == 0  # idempotent
    assert "0 events sent" in capsys.readouterr().out


def test_subprocess_help_and_usage_errors(rs_env: dict[str, str]) -> None:
    res = subprocess.run([sys.executable, "-m", "runstream.cli", "--help"], env=rs_env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    for command in ("up", "down", "status", "server", "runs", "show", "sql", "replay", "sync", "demo"):
        assert f"    {command} " in res.stdout
    res = subprocess.run([sys.executable, "-m", "runstream.cli", "sql"], env=rs_env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "SQL" in res.stderr


def test_subprocess_sql(query_server: ServerProc, rs_env: dict[str, str]) -> None:
    env = {**rs_env, "RUNSTREAM_SERVER_NAME": query_server.name}
    cmd = [sys.executable, "-m", "runstream.cli", "sql", "SELECT 42 AS answer", "--format", "json"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == [{"answer": 42}]
