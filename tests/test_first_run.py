"""A first run on the embedded stack: ``init(settings=runstream.Settings(...))`` uses the configured
stack (never a second one in a literal ``./~/.runstream``), the terminal links the web app, and the
web app's port is stable across restarts."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from runstream import stack
from runstream.settings import Settings, load_settings
from tests.sdk_helpers import python
from tests.test_stack import _nats_processes

pytestmark = pytest.mark.slow


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, dict[str, str]]]:
    """An embedded stack of this test (no external NATS), a HOME of its own; stopped afterwards."""
    for name in ("RUNSTREAM_NATS_URL", "RUNSTREAM_SERVER_NAME", "RUNSTREAM_API_URL", "RUNSTREAM_API_KEY",
                 "RUNSTREAM_RUN_DIR"):
        monkeypatch.delenv(name, raising=False)
    env = {"RUNSTREAM_DIR": str(tmp_path / "rs"), "RUNSTREAM_QUIET": "1", "HOME": str(tmp_path / "home"),
           "RUNSTREAM_HTTP_PORT": "0", "RUNSTREAM_CODE_SNAPSHOT": "0", "RUNSTREAM_STATS_INTERVAL": "0"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    (tmp_path / "home").mkdir()
    (tmp_path / "work").mkdir()
    settings = load_settings()
    yield settings, {k: v for k, v in os.environ.items() if k != "RUNSTREAM_NATS_URL"}
    stack.down(settings)


def test_settings_object_uses_the_configured_stack_and_orphans_nothing(
        local: tuple[Settings, dict[str, str]], tmp_path: Path) -> None:
    settings, env = local
    script = """
        import runstream
        run = runstream.init(entity="nico", project="first", settings=runstream.Settings(console="off"))
        run.log({"loss": 0.5})
        print(run.url)
        run.finish()
    """
    proc = python(script, {**env, "RUNSTREAM_QUIET": "0"}, tmp_path / "work", check=True)
    st = stack.status(settings)
    assert st.running and st.http_url
    run_id = proc.stdout.strip().rsplit("/", 1)[-1]
    assert proc.stdout.strip() == f"{st.http_url}/nico/first/runs/{run_id}"
    assert f"runstream: 🚀 View run at {st.http_url}/nico/first/runs/{run_id}\n" in proc.stderr
    assert not (tmp_path / "work" / "~").exists()
    assert not (tmp_path / "home" / ".runstream").exists()
    assert _nats_processes(tmp_path) == [st.nats_pid]  # one stack, the configured one
    stack.down(settings)
    assert _nats_processes(tmp_path) == []
    assert not stack._alive(st.server_pid)


def test_the_web_port_is_kept_across_restarts(local: tuple[Settings, dict[str, str]],
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    settings, _ = local
    monkeypatch.setenv("RUNSTREAM_HTTP_PORT", "14280")  # the default: the recorded port is asked for first
    settings = load_settings()
    with socket.socket() as taken:  # the default port may be taken on this machine: the first start picks one
        try:
            taken.bind(("127.0.0.1", 14280))
        except OSError:
            pass
        first = stack.up(settings).http_url
    assert first is not None
    port = int(first.rsplit(":", 1)[1].rstrip("/"))
    data = json.loads((settings.dir / "stack.json").read_text())
    assert data["web_port"] == port
    stack.down(settings)
    assert stack.up(settings).http_url == first  # the recorded port again, though 14280 may now be free
    stack.down(settings)
    capsys.readouterr()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        moved = stack.up(settings.replace(quiet=False)).http_url
        assert moved is not None and moved != first
        err = capsys.readouterr().err
        assert err == (f"runstream: the web app's port {port} is in use by another program, so it is at {moved} "
                       f"this time (bookmarks to port {port} will work again once that port is free and the stack "
                       "restarts; `runstream down` and `runstream up`, or set RUNSTREAM_HTTP_PORT)\n")
        stack.down(settings)
    assert stack.up(settings).http_url == first
