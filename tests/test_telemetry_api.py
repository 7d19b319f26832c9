"""System metrics and console lines read back: Api, HTTP and ``runstream logs`` against a real
server subprocess; the follow loop's hold-back of unfinished lines with a scripted client."""

from __future__ import annotations

import io
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

import runstream
from runstream.api import Api
from runstream.broker import NatsServer
from runstream.cli import main as cli_main
from runstream.logs import print_logs
from tests.query_helpers import ServerProc, http_server, unique, use_server

from .conftest import wait_for


@pytest.fixture(scope="module")
def server(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProc, str]]:
    yield from http_server(nats_server, tmp_path_factory.mktemp("telemetry-api"))


@pytest.fixture
def recorded(server: tuple[ServerProc, str], rs_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """A finished run of this process with system samples and console lines; returns its path."""
    use_server(server, rs_env, monkeypatch)
    entity = unique("tel")
    run = runstream.init(entity=entity, project="p", id="r", settings={"stats_interval": 0.1})
    path = f"{entity}/p/r"
    try:
        print("hello from the run")
        print("to stderr", file=__import__("sys").stderr)
        api = Api()
        wait_for(lambda: api.run(path).history(stream="system", pandas=False).num_rows >= 2, timeout=60,
                 interval=0.2, what="two system samples through the HTTP API")
    finally:
        run.finish()
    return path


def test_system_history_is_wide_one_row_per_sample(recorded: str) -> None:
    table = Api().run(recorded).history(stream="system", pandas=False)
    names = table.column_names
    assert names[:4] == ["_timestamp", "_runtime", "_writer", "_label"]
    assert {"system.cpu", "system.memory_percent", "system.proc.memory.rssMB"} <= set(names)
    ts = table.column("_timestamp").to_pylist()
    assert ts == sorted(ts) and len(set(ts)) == len(ts)
    assert all(v is not None and v > 0 for v in table.column("system.proc.memory.rssMB").to_pylist())
    only = Api().run(recorded).history(stream="system", keys=["system.cpu"], samples=1, pandas=False)
    assert only.column_names == ["_timestamp", "_runtime", "_writer", "_label", "system.cpu"] and only.num_rows == 1
    with pytest.raises(ValueError, match="stream"):
        Api().run(recorded).history(stream="nope")


def test_logs_through_the_api_http_and_cli(recorded: str, server: tuple[ServerProc, str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    lines = Api().run(recorded).logs()
    assert [(ln["stream"], ln["line"], ln["text"]) for ln in lines] == [
        ("stdout", 0, "hello from the run"), ("stderr", 1, "to stderr")]
    assert lines[0]["label"] is None and lines[0]["writer"] and lines[0]["timestamp"] > 0
    assert Api().run(recorded).logs(stream="stderr")[0]["text"] == "to stderr"
    assert Api().run(recorded).logs(text=True) == "hello from the run\nto stderr\n"
    _, url = server
    with urllib.request.urlopen(f"{url}/api/runs/{recorded}/logs?format=text") as resp:
        assert resp.headers["content-type"].startswith("text/plain")
        assert 'filename="r-output.log"' in resp.headers["content-disposition"]
        assert resp.read() == b"hello from the run\nto stderr\n"
    capsys.readouterr()
    assert cli_main(["logs", recorded]) == 0
    assert capsys.readouterr().out == "hello from the run\nto stderr\n"
    assert cli_main(["logs", recorded, "--follow", "--stream", "stdout"]) == 0
    out, err = capsys.readouterr()
    assert out == "hello from the run\n" and "is finished" in err


class ScriptedClient:
    """Answers of the ``…/logs`` route in turn (our own client seam; the server is tested above)."""

    def __init__(self, replies: list[dict[str, Any]]) -> None:
        self.replies = replies
        self.params: list[dict[str, Any]] = []

    def json(self, method: str, url: str, params: dict[str, Any]) -> dict[str, Any]:
        self.params.append(params)
        return self.replies.pop(0)


def _ln(writer: str, line: int, text: str) -> dict[str, Any]:
    return {"writer": writer, "line": line, "text": text}


def test_follow_holds_back_each_writers_newest_line_until_it_is_settled() -> None:
    client = ScriptedClient([
        {"state": "running", "lines": [_ln("w", 0, "a"), _ln("w", 1, "progress 10%")]},
        {"state": "running", "lines": [_ln("w", 1, "progress 100%"), _ln("w", 2, "b")]},
        {"state": "finished", "lines": [_ln("w", 2, "b"), _ln("w", 3, "last")]},
    ])
    out = io.StringIO()
    waits: list[float] = []
    assert print_logs(client, "/logs", out, follow=True, sleep=waits.append) == "finished"
    assert out.getvalue() == "a\nprogress 100%\nb\nlast\n"
    assert [p.get("after") for p in client.params] == [None, '{"w": 0}', '{"w": 1}']
    assert waits == [0.5, 0.5]
