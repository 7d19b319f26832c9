"""Fault battery: oversized HTTP requests against a real server subprocess (real NATS, DuckDB)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from runstream.broker import NatsServer
from runstream.query.limits import MAX_BODY_BYTES
from tests.query_helpers import ServerProc, http_server, log_run, unique, use_server

pytestmark = pytest.mark.fault


@pytest.fixture(scope="module")
def server(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProc, str]]:
    yield from http_server(nats_server, tmp_path_factory.mktemp("limits"))


def _send(method: str, url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_oversized_bodies_and_edits_are_refused_with_413(
        server: tuple[ServerProc, str], rs_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        fault_report: Any) -> None:
    use_server(server, rs_env, monkeypatch)
    _, url = server
    entity = unique("limits")
    path = log_run(entity, "p", steps=2, id="big")
    big_sql = json.dumps({"sql": "SELECT 1 -- " + "x" * (MAX_BODY_BYTES + 10)}).encode()
    status, reply = _send("POST", f"{url}/api/sql", big_sql)
    assert status == 413 and reply["kind"] == "too_large"
    assert reply["error"].startswith("request body too large: 16.8 MB, the limit is 16.8 MB (16777216 bytes)")
    status, reply = _send("PATCH", f"{url}/api/runs/{path}", json.dumps({"notes": "n" * 20_000_000}).encode())
    assert (status, reply["kind"]) == (413, "too_large")
    # under the body limit, over what NATS carries in one message: refused before the publish
    status, reply = _send("PATCH", f"{url}/api/runs/{path}", json.dumps({"notes": "n" * 10_000_000}).encode())
    assert (status, reply["kind"]) == (413, "too_large")
    assert "larger than the broker carries in one message" in reply["error"]
    status, reply = _send("PATCH", f"{url}/api/runs/{path}", json.dumps({"notes": "fine"}).encode())
    assert status == 200 and reply["changes"] == {"notes": "fine"}
    fault_report("17 MB SQL body / 20 MB PATCH / 10 MB notes", "413 with the limit, never 500",
                 "413 too_large (body limit 16 MiB; NATS payload); a small edit still 200")


SLOW = "SELECT count(*) FROM range(1000000000000) t(i) WHERE i % 7 = 3"


def test_one_client_cannot_take_every_sql_slot(server: tuple[ServerProc, str], rs_env: dict[str, str],
                                               monkeypatch: pytest.MonkeyPatch, fault_report: Any) -> None:
    import threading
    import time

    from runstream.query.client import QueryClient
    from tests.conftest import wait_for

    use_server(server, rs_env, monkeypatch)
    srv, url = server
    hog: list[int] = []

    def slow() -> None:  # sent again when a probe below held a slot at that moment (429 comes at once)
        deadline = time.monotonic() + 20
        status = 429
        while status == 429 and time.monotonic() < deadline:
            status, _ = _send("POST", f"{url}/api/sql", json.dumps({"sql": SLOW, "timeout": 8}).encode())
        hog.append(status)

    threads = [threading.Thread(target=slow) for _ in range(4)]  # this client's share: 4 of 8 slots
    for t in threads:
        t.start()
    try:
        def refused() -> dict[str, Any] | None:  # a quick query: answered until the 4 slow ones run
            status, reply = _send("POST", f"{url}/api/sql", json.dumps({"sql": "SELECT 1"}).encode())
            return reply if status == 429 else None
        reply = wait_for(refused, timeout=15, what="a fifth query of one client refused")
        assert reply["kind"] == "busy"
        assert "one client may run 4 of this server's 8 SQL slots at once" in reply["error"]
        # another client (the NATS RPC) still gets a slot while the first one holds its share
        table = QueryClient(srv.settings).sql("SELECT 42 AS answer", timeout=10).table
        assert table.to_pylist() == [{"answer": 42}]
    finally:
        for t in threads:
            t.join(30)
    assert hog == [408, 408, 408, 408]
    fault_report("one client runs 4 slow queries, then a 5th (8 slots)", "the 5th refused, others still served",
                 "5th: 429 busy; another client's query answered; the 4 slow ones interrupted (408)")
