"""The SQL sandbox against a real DuckDB file: what it refuses, and that the database still works."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from runstream.query.errors import QueryError, QueryRefused, QueryTimeout
from runstream.query.sandbox import Sandbox, check_sql, harden


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect(str(tmp_path / "runstream.duckdb"))
    c.execute("CREATE TABLE runs (run_uid VARCHAR, path VARCHAR, state VARCHAR)")
    c.execute("CREATE TABLE history (run_uid VARCHAR, step BIGINT, key VARCHAR, value DOUBLE)")
    c.execute("INSERT INTO runs VALUES ('u1', 'e/p/a', 'finished'), ('u2', 'e/p/b', 'running')")
    c.execute("INSERT INTO history SELECT 'u1', i, 'loss', 1.0 / (i + 1) FROM range(100) t(i)")
    yield c
    c.close()


@pytest.fixture
def sandbox(con: duckdb.DuckDBPyConnection) -> Sandbox:
    return Sandbox(con, batch_size=16)


@pytest.mark.parametrize("sql", [
    "SELECT * FROM runs", "  select 1;  ", "WITH x AS (SELECT 1 AS a) SELECT * FROM x", "FROM runs",
    "VALUES (1, 2)", "DESCRIBE runs", "SHOW TABLES", "SUMMARIZE history", "EXPLAIN SELECT 1",
    "EXPLAIN ANALYZE SELECT count(*) FROM history", "PIVOT runs ON state USING count(*)",
    "-- a comment\nSELECT 1",
])
def test_read_statements_pass_the_check(sql: str) -> None:
    assert check_sql(sql)


@pytest.mark.parametrize(("sql", "named"), [
    ("COPY runs TO '/tmp/x.csv'", "COPY"),
    ("ATTACH '/tmp/other.db'", "ATTACH"),
    ("INSTALL httpfs", "INSTALL/LOAD"),
    ("LOAD httpfs", "INSTALL/LOAD"),
    ("SET threads = 1", "SET/RESET"),
    ("RESET threads", "SET/RESET"),
    ("PRAGMA threads = 1", "PRAGMA"),
    ("CALL pragma_version()", "CALL"),
    ("CREATE TABLE x (a INT)", "CREATE"),
    ("INSERT INTO runs VALUES ('u', 'p', 's')", "INSERT"),
    ("DELETE FROM runs", "DELETE"),
    ("DROP TABLE runs", "DROP"),
    ("EXPORT DATABASE '/tmp/x'", "EXPORT"),
    ("BEGIN", "transaction"),
    ("SELECT 1; SELECT 2", "2 statements"),
    ("SELECT 1; DROP TABLE runs", "2 statements"),
    ("EXPLAIN ANALYZE COPY runs TO '/tmp/x.csv'", "EXPLAIN of COPY"),
    ("", "empty"),
])
def test_refused_statements_name_what_was_refused(sandbox: Sandbox, sql: str, named: str) -> None:
    with pytest.raises(QueryRefused, match="refused") as info:
        sandbox.query(sql)
    assert named in str(info.value)


def test_syntax_error_is_a_query_error(sandbox: Sandbox) -> None:
    with pytest.raises(QueryError, match="syntax error"):
        sandbox.query("SELEC 1")


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM glob('/*')",
    "SELECT * FROM read_parquet('http://127.0.0.1:1/x.parquet')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
])
def test_file_and_network_access_is_refused(sandbox: Sandbox, sql: str) -> None:
    with pytest.raises(QueryRefused, match="file, network and extension access is disabled"):
        sandbox.query(sql)


def test_copy_writes_no_file_even_past_the_check(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    Sandbox(con)
    target = tmp_path / "x.csv"
    with pytest.raises(duckdb.PermissionException):
        con.cursor().execute(f"COPY runs TO '{target}'")
    assert not target.exists()


def test_settings_are_locked_for_every_connection(con: duckdb.DuckDBPyConnection) -> None:
    Sandbox(con)
    for sql in ("SET enable_external_access = true", "SET lock_configuration = false", "SET threads = 1"):
        with pytest.raises(duckdb.InvalidInputException, match="locked"):
            con.cursor().execute(sql)


def test_python_objects_of_the_process_are_invisible(sandbox: Sandbox) -> None:
    secret_table = pa.table({"password": ["hunter2"]})  # noqa: F841 - the query must not see it
    with pytest.raises(QueryError, match="secret_table"):
        sandbox.query("SELECT * FROM secret_table")


def test_the_owner_still_writes_arrow_batches(con: duckdb.DuckDBPyConnection, sandbox: Sandbox) -> None:
    batch = pa.table({"run_uid": ["u3"], "path": ["e/p/c"], "state": ["running"]})
    con.register("batch", batch)
    con.execute("INSERT INTO runs SELECT * FROM batch")
    con.unregister("batch")
    con.from_arrow(batch).insert_into("runs")
    assert sandbox.query("SELECT count(*) AS n FROM runs").table.column("n").to_pylist() == [4]


def test_harden_is_idempotent(con: duckdb.DuckDBPyConnection) -> None:
    harden(con)
    harden(con)


def test_row_cap_sets_truncated(sandbox: Sandbox) -> None:
    res = sandbox.query("SELECT * FROM history ORDER BY step", max_rows=10)
    assert res.table.num_rows == 10 and res.truncated
    assert res.table.column("step").to_pylist() == list(range(10))
    exact = sandbox.query("SELECT * FROM history", max_rows=100)
    assert exact.table.num_rows == 100 and not exact.truncated
    assert sandbox.query("SELECT * FROM runs WHERE false").table.num_rows == 0
    assert sandbox.query("SELECT * FROM runs WHERE false").table.column_names == ["run_uid", "path", "state"]


def test_row_cap_stops_an_endless_result(sandbox: Sandbox) -> None:
    res = sandbox.query("SELECT * FROM range(1000000000000)", max_rows=5)
    assert res.truncated and res.table.num_rows == 5


def test_endless_cross_join_is_interrupted(sandbox: Sandbox) -> None:
    t0 = time.monotonic()
    with pytest.raises(QueryTimeout, match="time limit of 0.5s"):
        sandbox.query("SELECT count(*) FROM range(1000000000) a, range(1000000000) b", timeout=0.5)
    assert time.monotonic() - t0 < 10
    assert sandbox.query("SELECT 42 AS x").table.column("x").to_pylist() == [42]


def test_other_queries_run_while_one_is_stuck(sandbox: Sandbox) -> None:
    errors: list[BaseException] = []

    def stuck() -> None:
        try:
            sandbox.query("SELECT count(*) FROM range(1000000000) a, range(1000000000) b", timeout=3)
        except QueryTimeout as e:
            errors.append(e)

    t = threading.Thread(target=stuck)
    t.start()
    assert sandbox.query("SELECT count(*) AS n FROM runs").table.column("n").to_pylist() == [2]
    sandbox.interrupt_all()
    t.join(10)
    assert len(errors) == 1


def test_writes_through_a_select_are_refused(sandbox: Sandbox) -> None:
    with pytest.raises(QueryError):
        sandbox.query("SELECT * FROM query('INSERT INTO runs VALUES (1, 2, 3)')")
    assert sandbox.query("SELECT count(*) AS n FROM runs").table.column("n").to_pylist() == [2]
