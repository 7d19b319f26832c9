"""Fault battery: bad input — names that mean folders, forged file events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

import runstream
from runstream.broker import NatsServer
from runstream.broker.codec import envelope
from runstream.broker.events import EventError, parse_event
from runstream.broker.names import new_run_uid, validate_name, validate_run_id
from runstream.projector import catch_up
from tests.test_projector_nats import _event, _init, publish

pytestmark = pytest.mark.fault

SHA = "a" * 64


@pytest.mark.parametrize("bad", [".", ".."])
def test_dot_names_are_refused_by_init_and_the_projector(bad: str, rs_env: dict[str, str], fault_report: Any) -> None:
    with pytest.raises(ValueError, match=r"is not allowed \('\.' and '\.\.' name folders"):
        validate_name("project", bad)
    with pytest.raises(ValueError, match=r"is not allowed \('\.' and '\.\.' name folders"):
        validate_name("entity", bad)
    with pytest.raises(ValueError, match=r"run id .* is not allowed"):
        validate_run_id(bad)
    with pytest.raises(ValueError, match=r"project name '\.+' is not allowed"):
        runstream.init(entity="faults", project=bad, mode="offline")
    for field in ("entity", "project", "run_id"):
        body = {"entity": "e", "project": "p", "run_id": "r", "start_time": 1.0, field: bad}
        with pytest.raises(EventError, match="is not a legal entity, project or run id"):
            parse_event(envelope("init", new_run_uid(), "w1", 0, 1.0, body))
        move = {"entity": "e", "project": "p", "run_id": "r", "from_path": "e/p/x", field: bad}
        with pytest.raises(EventError, match="is not a legal entity, project or run id"):
            parse_event(envelope("move", new_run_uid(), "w1", 5, 1.0, move))
    fault_report(f"project/entity/run id {bad!r}", "refused by init(), move and the projector",
                 "ValueError at init(); init/move events dead-lettered")


def test_a_forged_file_event_goes_to_dead_letters_and_good_files_project(
        own_nats: NatsServer, tmp_path: Path, fault_report: Any) -> None:
    """On a NATS server of its own: the session's stream must stay free of dead letters (other
    tests count them)."""
    uid = new_run_uid()
    events = [_init(uid, "forged"),
              _event("file", uid, 1, 2.0, {"name": "../../x", "size": 1, "sha256": SHA}),
              _event("file", uid, 2, 3.0, {"name": "good/model.txt", "size": 1, "sha256": SHA})]
    publish(own_nats.url, events)
    db = tmp_path / "p.duckdb"
    catch_up(db, own_nats.url, timeout=60)
    con = duckdb.connect(str(db), read_only=True)
    try:
        files = con.execute("SELECT name FROM files WHERE run_uid = ?", [uid]).fetchall()
        dead = con.execute("SELECT reason FROM dead_letters WHERE subject LIKE ?", [f"%{uid}%"]).fetchall()
    finally:
        con.close()
    assert files == [("good/model.txt",)]
    assert len(dead) == 1 and "'../../x' has an empty, '.' or '..' component" in dead[0][0]
    fault_report("forged file event named ../../x", "dead-lettered; the run's good files unaffected",
                 f"{len(dead)} dead letter; files = {[f[0] for f in files]}")


def test_forged_artifact_names_and_entries_are_refused_by_the_projector(fault_report: Any) -> None:
    good = {"role": "output", "entity": "e", "project": "p", "name": "model", "version": 0, "digest": SHA,
            "entries": [["weights/a.bin", SHA, 3, None]]}
    assert parse_event(envelope("artifact", new_run_uid(), "w1", 1, 1.0, good)).type == "artifact"
    with pytest.raises(EventError, match="artifact name '../evil' must be 1-"):
        parse_event(envelope("artifact", new_run_uid(), "w1", 1, 1.0, {**good, "name": "../evil"}))
    with pytest.raises(EventError, match=r"'\.\./\.\./x' has an empty, '\.' or '\.\.' component"):
        parse_event(envelope("artifact", new_run_uid(), "w1", 1, 1.0,
                             {**good, "entries": [["ok.txt", SHA, 1, None], ["../../x", SHA, 1, None]]}))
    fault_report("forged artifact name / entry ../../x", "dead-lettered (refused at the projector's door)",
                 "EventError naming the rule for each")
