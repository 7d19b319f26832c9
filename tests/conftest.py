"""Shared fixtures: a real nats-server from the wheel on a free port with a temp store, and real
DuckDB files under tmp_path. Never the machine's NATS on 4222, never a mock."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runstream.broker import NatsServer
from runstream.settings import Settings, load_settings


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One nats-server for the whole test session (tests isolate themselves by entity/project)."""
    base = tmp_path_factory.mktemp("nats")
    srv = NatsServer(base / "js", log_file=base / "nats.log")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of this test alone, for tests that kill or restart it."""
    srv = NatsServer(tmp_path / "js", log_file=tmp_path / "nats.log")
    srv.start()
    yield srv
    srv.kill()


@pytest.fixture
def rs_env(nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment pointing runstream at the session's server, with run files under tmp_path."""
    env = {
        "RUNSTREAM_NATS_URL": nats_server.url,
        "RUNSTREAM_DIR": str(tmp_path / "data"),
        "RUNSTREAM_RUN_DIR": str(tmp_path / "work"),
        "RUNSTREAM_QUIET": "1",
        "RUNSTREAM_HEARTBEAT_INTERVAL": "1",
        "RUNSTREAM_CRASH_TIMEOUT": "3",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return {**os.environ, **env}


@pytest.fixture
def settings(rs_env: dict[str, str]) -> Settings:
    return load_settings(env=rs_env)


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02,
             what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[Any]:
    """A three-node JetStream cluster of this test alone, rendered from ``deploy/nats/`` for
    loopback ports (:class:`tests.cluster.LocalCluster`), formed and healthy. Stopped at teardown
    whatever the test did; its configs and node logs stay under ``tmp_path / "cluster"``. It starts
    three processes and waits for elections: mark the tests that use it ``slow``."""
    from tests.cluster import LocalCluster

    cluster = LocalCluster(tmp_path / "cluster", nodes=3)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


# -- the fault battery (`make faults`) ------------------------------------------------------------

FAULT_ROWS: list[tuple[str, str, str]] = []
"""(fault, expected, observed) recorded by the ``fault`` marked tests, printed as one table."""


@pytest.fixture
def fault_report() -> Callable[[str, str, str], None]:
    """Record one row of the fault table: the fault, what should happen, what the test saw."""
    def report(fault: str, expected: str, observed: str) -> None:
        FAULT_ROWS.append((fault, expected, observed))
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FAULT_ROWS:
        return
    head = ("fault", "expected", "observed")
    widths = [max(len(r[i]) for r in [head, *FAULT_ROWS]) for i in range(3)]
    tr = terminalreporter
    tr.section("fault battery")
    for row in [head, tuple("-" * w for w in widths), *FAULT_ROWS]:
        tr.write_line(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
