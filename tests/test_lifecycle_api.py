"""Move and delete from ``runstream.Api`` and the CLI, against a real server subprocess over HTTP."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from runstream.api import Api
from runstream.broker import NatsServer
from runstream.cli import main as cli_main
from runstream.cli_lifecycle import plan_lines
from runstream.lifecycle_client import forks_first
from runstream.query.errors import Conflict, NotFound
from tests.query_helpers import ServerProc, http_server, log_run, unique, use_server


@pytest.fixture(scope="module")
def server(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProc, str]]:
    yield from http_server(nats_server, tmp_path_factory.mktemp("life-api"))


@pytest.fixture
def entity(server: tuple[ServerProc, str], rs_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    use_server(server, rs_env, monkeypatch)
    return unique("lapi")


class Terminal(io.StringIO):
    """Typed answers on a stdin that says it is a terminal (the CLI only asks on one)."""

    def isatty(self) -> bool:
        return True


def paths(api: Api, project: str) -> list[str]:
    return sorted("/".join(r.path) for r in api.runs(project))


# -- pure -------------------------------------------------------------------------------------------


def test_plan_lines_say_what_will_happen() -> None:
    rows = [{"path": "e/p/a", "entity": "e", "run_id": "a", "name": "n-1", "state": "finished"}]
    assert plan_lines("move", rows, "q") == ["will move 1 run to project 'q':",
                                             "  e/p/a → e/q/a  (n-1, finished)"]
    many = [{**rows[0], "path": f"e/p/{i}"} for i in range(25)]
    lines = plan_lines("delete", many)
    assert lines[0].startswith("will delete 25 runs for good") and lines[-1] == "  ... and 5 more"


def test_forks_go_before_their_parents() -> None:
    rows = [{"run_uid": "p"}, {"run_uid": "c", "origin_kind": "fork", "origin_run_uid": "p"},
            {"run_uid": "g", "origin_kind": "fork", "origin_run_uid": "c"}, {"run_uid": "x"}]
    assert [r["run_uid"] for r in forks_first(rows)] == ["g", "c", "p", "x"]


# -- the Api ----------------------------------------------------------------------------------------


def test_api_moves_and_deletes_one_run_or_a_selection(entity: str) -> None:
    import runstream

    for rid, lr in (("a", 0.1), ("b", 0.2), ("c", 0.001)):
        with runstream.init(entity=entity, project="src", id=rid, config={"lr": lr}) as r:
            for i in range(5):
                r.log({"loss": lr * (5 - i)})
    api = Api()
    run = api.run(f"{entity}/src/a").move("dst")
    assert run.path == [entity, "dst", "a"] and run.config["lr"] == 0.1 and len(run.history()) == 5
    with pytest.raises(NotFound):
        api.run(f"{entity}/src/a")
    log_run(entity, "dst", id="b")
    with pytest.raises(Conflict, match=f"{entity}/dst/b"):
        api.runs(f"{entity}/src").move("dst")
    assert paths(api, f"{entity}/src") == [f"{entity}/src/b", f"{entity}/src/c"]  # nothing moved
    moved = api.runs(f"{entity}/src", filters={"config.lr": {"$lt": 0.01}}).move("small")
    assert [m["to"] for m in moved] == [f"{entity}/small/c"]
    deleted = api.run(f"{entity}/small/c").delete()
    assert deleted["path"] == f"{entity}/small/c" and deleted["purged"] > 0
    assert paths(api, f"{entity}/small") == []
    with pytest.raises(runstream.RunExistsError, match="deleted"):
        runstream.init(entity=entity, project="small", id="c")
    assert [d["path"] for d in api.runs(f"{entity}/dst").delete()] and paths(api, f"{entity}/dst") == []
    with pytest.raises(ValueError, match="run_ids"):
        api.delete_runs(f"{entity}/src")


# -- the CLI ----------------------------------------------------------------------------------------


def test_cli_delete_asks_and_no_changes_nothing(entity: str, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    a, b = log_run(entity, "p", id="a"), log_run(entity, "p", id="b")
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    assert cli_main(["delete", a, b]) == 1
    out, err = capsys.readouterr()
    assert "will delete 2 runs for good" in out and f"  {a}  (" in out and "Delete 2 runs?" in out
    assert "aborted: nothing deleted" in err
    api = Api()
    assert paths(api, f"{entity}/p") == [a, b]

    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # not a terminal: refuse without --yes
    assert cli_main(["delete", a]) == 1
    assert "no terminal to ask on; pass --yes" in capsys.readouterr().err
    assert cli_main(["delete", f"{entity}/p"]) == 1
    assert "--filter" in capsys.readouterr().err

    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    assert cli_main(["delete", a]) == 0
    assert "deleted 1 run (" in capsys.readouterr().out
    assert paths(api, f"{entity}/p") == [b]
    assert cli_main(["delete", a, "--yes"]) == 1
    assert f"no run {a}" in capsys.readouterr().err


def test_cli_move_by_filter_in_chunks_with_progress(entity: str, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import runstream.lifecycle_client as lc

    monkeypatch.setattr(lc, "CHUNK", 2)
    for i in range(5):
        log_run(entity, "p", steps=1, id=f"r{i}", tags=["old"] if i < 4 else [])
    code = cli_main(["move", f"{entity}/p", "--filter", '{"tags": {"$in": ["old"]}}', "--to", "archive", "--yes"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "will move 4 runs to project 'archive':" in out and f"moved 4 runs to {entity}/archive" in out
    assert "move" in err  # the progress bar
    api = Api()
    assert paths(api, f"{entity}/archive") == [f"{entity}/archive/r{i}" for i in range(4)]
    assert paths(api, f"{entity}/p") == [f"{entity}/p/r4"]
    assert cli_main(["move", f"{entity}/p/r4", "--to", "archive", "--filter", "[]"]) == 1
    assert "ENTITY/PROJECT" in capsys.readouterr().err
