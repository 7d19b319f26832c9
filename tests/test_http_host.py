"""``RUNSTREAM_HTTP_HOST``: the address the server's HTTP API listens on (loopback by default; the
deploy/ manifests set every interface behind a Service, with an API key)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from runstream.broker import NatsServer
from runstream.query.server import read_http_url
from tests.query_helpers import start_server

pytestmark = pytest.mark.slow


def _status(url: str, key: str | None = None) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_the_api_listens_where_it_is_told(nats_server: NatsServer, tmp_path: Path) -> None:
    env = {**os.environ, "RUNSTREAM_NATS_URL": nats_server.url, "RUNSTREAM_QUIET": "1", "RUNSTREAM_HTTP_PORT": "0",
           "RUNSTREAM_HTTP_HOST": "127.0.0.2", "RUNSTREAM_API_KEY": "k-host-test", "RUNSTREAM_DIR": str(tmp_path)}
    srv = start_server(nats_server, tmp_path, env)
    try:
        url = read_http_url(srv.dir, srv.proc.pid)
        assert url is not None and url.startswith("http://127.0.0.2:")
        port = url.rsplit(":", 1)[1]
        assert _status(f"{url}/api/health", "k-host-test") == 200
        assert _status(f"{url}/api/health") == 401  # the key still guards it
        with pytest.raises(urllib.error.URLError):  # not on 127.0.0.1
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5)
    finally:
        assert srv.stop() == 0, srv.log.read_text()


def test_every_interface_without_a_key_is_warned_about_and_recorded_as_loopback(nats_server: NatsServer,
                                                                                tmp_path: Path) -> None:
    env = {**os.environ, "RUNSTREAM_NATS_URL": nats_server.url, "RUNSTREAM_QUIET": "1", "RUNSTREAM_HTTP_PORT": "0",
           "RUNSTREAM_HTTP_HOST": "0.0.0.0", "RUNSTREAM_DIR": str(tmp_path)}
    env.pop("RUNSTREAM_API_KEY", None)
    srv = start_server(nats_server, tmp_path, env)
    try:
        info = json.loads((srv.dir / "server.http.json").read_text())
        assert info["url"].startswith("http://127.0.0.1:")
        assert _status(f"{info['url']}/api/health") == 200
    finally:
        assert srv.stop() == 0
    assert ("the HTTP API listens on 0.0.0.0 without an API key: anyone who can reach it reads and edits every "
            "run; set RUNSTREAM_API_KEY") in srv.log.read_text()
