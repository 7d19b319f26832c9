"""Files and artifacts through a real server subprocess: HTTP routes, the Api and ``runstream files``."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import runstream
from runstream.api import Api
from runstream.broker import NatsServer
from runstream.cli import main as cli_main
from runstream.query.errors import NotFound

from .query_helpers import ServerProc, http_server, unique, use_server


@pytest.fixture(scope="module")
def server(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProc, str]]:
    yield from http_server(nats_server, tmp_path_factory.mktemp("files-http"))


@pytest.fixture
def logged(server: tuple[ServerProc, str], rs_env: dict[str, str], tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    use_server(server, rs_env, monkeypatch)
    entity = unique("fh")
    src = tmp_path / "src"
    (src / "ckpt").mkdir(parents=True)
    (src / "ckpt" / "model.pt").write_bytes(os.urandom(400_000))
    (src / "notes <b>.html").write_text("<script>alert(1)</script>")
    run = runstream.init(entity=entity, project="p", id="prod", settings={"code_snapshot": False})
    run.save(str(src / "**" / "*"), base_path=str(src), policy="now")
    a = runstream.Artifact("weights", "model", metadata={"epochs": 3})
    a.add_dir(str(src / "ckpt"))
    a.add_reference("https://example.com/data.csv")
    run.log_artifact(a, aliases=["prod"]).wait(30)
    run.finish()
    user = runstream.init(entity=entity, project="p", id="user", settings={"code_snapshot": False})
    user.use_artifact("weights:prod")
    user.finish()
    return entity, src


def test_files_list_and_streamed_download(logged: tuple[str, Path], server: tuple[ServerProc, str],
                                          tmp_path: Path) -> None:
    entity, src = logged
    run = Api().run(f"{entity}/p/prod")
    files = run.files()
    assert [f.name for f in files] == ["ckpt/model.pt", "notes <b>.html"]
    assert files[0].size == 400_000 and files[0].policy == "now"
    dest = run.file("ckpt/model.pt").download(tmp_path / "dl")
    assert dest.read_bytes() == (src / "ckpt" / "model.pt").read_bytes()
    with pytest.raises(NotFound):
        run.file("nope.txt")
    _, url = server
    with urllib.request.urlopen(f"{url}/api/runs/{entity}/p/prod/files/notes%20%3Cb%3E.html") as resp:
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Content-Type"] == "application/octet-stream"
        assert resp.headers["Content-Disposition"].startswith("attachment;")
        assert resp.read() == b"<script>alert(1)</script>"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{url}/api/runs/{entity}/p/prod/files/missing")
    assert e.value.code == 404
    e.value.close()


def test_api_artifact_lineage_and_download(logged: tuple[str, Path], tmp_path: Path) -> None:
    entity, src = logged
    api = Api()
    art = api.artifact(f"{entity}/p/weights:prod")
    assert art.version == "v0" and art.type == "model" and art.metadata == {"epochs": 3}
    assert sorted(art.aliases) == ["latest", "prod"]
    assert art.references == {"data.csv": "https://example.com/data.csv"}
    assert art.logged_by() == [f"{entity}/p/prod"] and art.used_by() == [f"{entity}/p/user"]
    root = art.download(tmp_path / "a")
    assert hashlib.sha256((root / "model.pt").read_bytes()).hexdigest() == \
        hashlib.sha256((src / "ckpt" / "model.pt").read_bytes()).hexdigest()
    assert [a.qualified_name for a in api.run(f"{entity}/p/prod").logged_artifacts()] == [f"{entity}/p/weights:v0"]
    assert [a.version for a in api.run(f"{entity}/p/user").used_artifacts()] == ["v0"]
    assert api.run(f"{entity}/p/user").logged_artifacts() == []
    with pytest.raises(NotFound):
        api.artifact(f"{entity}/p/weights:v9")


def test_cli_files_lists_and_downloads(logged: tuple[str, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    entity, src = logged
    assert cli_main(["files", f"{entity}/p/prod"]) == 0
    out = capsys.readouterr().out
    assert "ckpt/model.pt" in out and "400000" in out and "now" in out
    assert cli_main(["files", f"{entity}/p/prod", "--download", str(tmp_path / "all")]) == 0
    assert (tmp_path / "all" / "notes <b>.html").read_text() == "<script>alert(1)</script>"
    assert (tmp_path / "all" / "ckpt" / "model.pt").stat().st_size == 400_000
    assert cli_main(["files", f"{entity}/p/missing"]) == 1
