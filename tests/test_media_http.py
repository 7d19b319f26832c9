"""A run's media over HTTP (a real server subprocess with an API key): the media list, keys,
histograms over steps and a logged table's rows (paged, sorted, filtered), as JSON and Arrow; a
caller without the key is refused on every route."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import runstream
from runstream.broker import NatsServer

from .query_helpers import ServerProc, http_server, unique, use_server

KEY = "media-key"


@pytest.fixture(scope="module")
def server(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProc, str]]:
    yield from http_server(nats_server, tmp_path_factory.mktemp("media-http"), RUNSTREAM_API_KEY=KEY)


@pytest.fixture
def logged(server: tuple[ServerProc, str], rs_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
           tmp_path: Path) -> str:
    use_server(server, rs_env, monkeypatch, RUNSTREAM_API_KEY=KEY, RUNSTREAM_CODE_SNAPSHOT="0")
    entity = unique("media")
    with runstream.init(entity=entity, project="p", id="m", settings={"console": "off"}) as run:
        for step in range(3):
            run.log({"img": runstream.Image(np.full((2, 3), step * 40, np.uint8)),
                     "w": runstream.Histogram(np_histogram=([step, 1.0], [0.0, 0.5, 1.0]))})
        run.log({"preds": runstream.Table(columns=["id", "label", "score"],
                                          data=[[i, ["cat", "dog", "bird"][i % 3], i / 10] for i in range(12)])})
    return f"{entity}/p/m"


def get(url: str, key: str | None = KEY, accept: str | None = None) -> tuple[int, bytes, Any]:
    req = urllib.request.Request(url)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    if accept:
        req.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read(), resp.headers  # case-insensitive
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def get_json(url: str) -> Any:
    status, body, _ = get(url)
    assert status == 200, body
    return json.loads(body)


def test_media_routes(server: tuple[ServerProc, str], logged: str) -> None:
    base = f"{server[1]}/api/runs/{logged}"
    keys = get_json(f"{base}/media/keys?fresh=true")["keys"]
    assert keys == [{"key": "img", "type": "image-file", "steps": 3, "min_step": 0, "max_step": 2},
                    {"key": "preds", "type": "table-file", "steps": 1, "min_step": 3, "max_step": 3},
                    {"key": "w", "type": "histogram", "steps": 3, "min_step": 0, "max_step": 2}]
    imgs = get_json(f"{base}/media?key=img")["media"]
    assert [(m["step"], m["type"], m["width"], m["height"], m["format"]) for m in imgs] == [
        (0, "image-file", 3, 2, "png"), (1, "image-file", 3, 2, "png"), (2, "image-file", 3, 2, "png")]
    status, png, _ = get(f"{base}/files/{imgs[1]['path']}")
    from runstream.media import png_bytes

    assert status == 200 and png == png_bytes(bytes([40] * 6), 3, 2, 1)

    hist = get_json(f"{base}/media/histograms?key=w")
    assert hist == {"key": "w", "steps": [{"step": s, "bins": [0.0, 0.5, 1.0], "values": [s, 1]} for s in range(3)]}
    status, body, _ = get(f"{base}/media/histograms?key=w&format=arrow")
    assert status == 200
    assert pa.ipc.open_stream(body).read_all().to_pydict() == {
        "step": [0, 1, 2], "bins": [[0.0, 0.5, 1.0]] * 3, "values": [[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]]}

    page = get_json(f"{base}/media/table?key=preds&filter=DOG&sort=score&desc=true&limit=2&offset=1")
    assert page == {"key": "preds", "step": 3, "columns": ["id", "label", "score"], "total": 4, "offset": 1,
                    "rows": [[7, "dog", 0.7], [4, "dog", 0.4]]}
    status, body, headers = get(f"{base}/media/table?key=preds&limit=3",
                                accept="application/vnd.apache.arrow.stream")
    assert status == 200 and headers.get("X-Runstream-Total-Rows") == "12"
    assert pa.ipc.open_stream(body).read_all().to_pydict() == {"id": [0, 1, 2], "label": ["cat", "dog", "bird"],
                                                               "score": [0.0, 0.1, 0.2]}
    status, body, _ = get(f"{base}/media/table?key=preds&sort=nope")
    assert (status, json.loads(body)["error"]) == (400, "table 'preds' has no column 'nope' to sort by")
    status, body, _ = get(f"{base}/media/table?key=img")
    assert status == 404 and "has no table 'img'" in json.loads(body)["error"]


def test_media_routes_refuse_a_caller_without_the_key(server: tuple[ServerProc, str], logged: str) -> None:
    base = f"{server[1]}/api/runs/{logged}"
    for route in ("media", "media/keys", "media/histograms?key=w", "media/table?key=preds"):
        for key in (None, "wrong"):
            status, _, _ = get(f"{base}/{route}", key=key)
            assert status == 401, (route, key)
