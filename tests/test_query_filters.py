"""The filter language: every operator against a populated project, compared with the same question in SQL."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from runstream.broker import NatsServer
from runstream.query.filters import FilterError, compile_filters, compile_order
from runstream.query.http import create_app
from runstream.query.reads import list_runs
from runstream.query.server import ServerConfig
from runstream.settings import load_settings
from tests.query_helpers import unique

RUNS: list[dict[str, Any]] = [
    dict(id="a", lr=0.1, opt="adam", tags=["base", "x"], group="g1", job="train", loss=0.5, code=0),
    dict(id="b", lr=0.01, opt="sgd", tags=["x"], group="g1", job="eval", loss=0.2, code=1),
    dict(id="c", lr=0.001, opt="adam", tags=[], group=None, job="train", loss=0.9, code=0),
    dict(id="d", lr=0.01, opt="Adam-W", tags=["sweep"], group="g2", job=None, loss=math.nan, code=0),
    dict(id="e", lr=None, opt=None, tags=["base"], group="g2", job="train", loss=None, code=0),
]


@pytest.fixture(scope="module")
def con(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    import runstream

    base: Path = tmp_path_factory.mktemp("filters")
    mp = pytest.MonkeyPatch()
    for k, v in {"RUNSTREAM_NATS_URL": nats_server.url, "RUNSTREAM_DIR": str(base / "data"),
                 "RUNSTREAM_RUN_DIR": str(base / "work"), "RUNSTREAM_QUIET": "1"}.items():
        mp.setenv(k, v)
    entity = unique("flt")
    for r in RUNS:
        config = {k: v for k, v in (("lr", r["lr"]), ("opt", r["opt"])) if v is not None}
        run = runstream.init(entity=entity, project="p", id=r["id"], name=f"run-{r['id']}", config=config,
                             tags=r["tags"], group=r["group"], job_type=r["job"])
        if r["loss"] is not None:
            run.log({"loss": r["loss"]})
        run.finish(exit_code=r["code"])
    mp.undo()
    # the projection of a real server core (in-process, through its ASGI lifespan)
    config = ServerConfig(dir=base / "srv", nats_url=nats_server.url, name=unique("f"),
                          settings=load_settings(env={"RUNSTREAM_DIR": str(base / "srv")}))
    with TestClient(create_app(config=config)) as client:
        assert client.get("/api/projects", params={"fresh": "true", "entity": entity}).json()["projects"]
        c = client.app.state.core.projector.cursor()  # type: ignore[attr-defined]
        yield c, entity
        c.close()


def ids_by_filter(con: Any, entity: str, filters: dict[str, Any], order: str = "+run_id") -> list[str]:
    table, total = list_runs(con, entity, "p", filters=filters, order=order, limit=100)
    assert total == table.num_rows
    return [str(x) for x in table.column("run_id").to_pylist()]


def ids_by_sql(con: Any, entity: str, where: str) -> list[str]:
    cfg = "(SELECT {col} FROM config x WHERE x.run_uid = r.run_uid AND x.key = '{key}')"
    smy = "(SELECT {col} FROM summary x WHERE x.run_uid = r.run_uid AND x.key = '{key}')"
    where = where.format(lr=cfg.format(col="value", key="lr"), opt=cfg.format(col="value_json->>'$'", key="opt"),
                         loss=smy.format(col="value", key="loss"))
    rows = con.execute(f"SELECT run_id FROM runs r WHERE entity = ? AND project = 'p' AND ({where}) "
                       "ORDER BY run_id", [entity]).fetchall()
    return [r[0] for r in rows]


CASES: list[tuple[str, dict[str, Any], str]] = [
    ("$eq implicit", {"state": "failed"}, "state = 'failed'"),
    ("$eq", {"name": {"$eq": "run-c"}}, "name = 'run-c'"),
    ("display_name", {"display_name": "run-a"}, "name = 'run-a'"),
    ("$ne (matches missing)", {"group": {"$ne": "g1"}}, "\"group\" IS DISTINCT FROM 'g1'"),
    ("$gt", {"config.lr": {"$gt": 0.01}}, "{lr} > 0.01"),
    ("$gte", {"config.lr": {"$gte": 0.01}}, "{lr} >= 0.01"),
    ("$lt", {"summary_metrics.loss": {"$lt": 0.6}}, "{loss} < 0.6"),
    ("$lte", {"summary_metrics.loss": {"$lte": 0.5}}, "{loss} <= 0.5"),
    ("$in", {"job_type": {"$in": ["eval", "nope"]}}, "job_type IN ('eval', 'nope')"),
    ("$nin (matches missing)", {"job_type": {"$nin": ["train"]}}, "job_type IS NULL OR job_type <> 'train'"),
    ("$exists config", {"config.opt": {"$exists": True}}, "{opt} IS NOT NULL"),
    ("$exists false", {"summary_metrics.loss": {"$exists": False}}, "{loss} IS NULL"),
    ("$regex", {"config.opt": {"$regex": "^adam"}}, "regexp_matches({opt}, '^adam')"),
    ("$regex i", {"config.opt": {"$regex": "^adam", "$options": "i"}}, "regexp_matches({opt}, '^adam', 'i')"),
    ("text config $eq", {"config.opt": "adam"}, "{opt} = 'adam'"),
    ("tags contains", {"tags": "x"}, "list_contains(tags, 'x')"),
    ("tags $in", {"tags": {"$in": ["sweep", "base"]}}, "list_has_any(tags, ['sweep', 'base'])"),
    ("tags $nin", {"tags": {"$nin": ["x"]}}, "NOT list_contains(tags, 'x')"),
    ("tags $exists", {"tags": {"$exists": False}}, "len(tags) = 0"),
    ("tags $regex", {"tags": {"$regex": "^sw"}}, "list_contains(tags, 'sweep')"),
    ("$and", {"$and": [{"group": "g1"}, {"job_type": "train"}]}, "\"group\" = 'g1' AND job_type = 'train'"),
    ("$or", {"$or": [{"group": "g2"}, {"state": "failed"}]}, "\"group\" = 'g2' OR state = 'failed'"),
    ("$nor", {"$nor": [{"group": "g2"}, {"state": "failed"}]},
     "NOT coalesce(\"group\" = 'g2' OR state = 'failed', false)"),
    ("range on one field", {"config.lr": {"$gt": 0.001, "$lt": 0.1}}, "{lr} > 0.001 AND {lr} < 0.1"),
    ("created_at", {"created_at": {"$gt": "2000-01-01T00:00:00Z"}}, "created_at > TIMESTAMPTZ '2000-01-01'"),
    ("$eq None", {"group": None}, "\"group\" IS NULL"),
    ("user (metadata)", {"user": {"$regex": "."}}, "json_extract_string(metadata, '$.username') IS NOT NULL"),
]


@pytest.mark.parametrize(("label", "filters", "where"), CASES, ids=[c[0] for c in CASES])
def test_filter_matches_sql(con: tuple[Any, str], label: str, filters: dict[str, Any], where: str) -> None:
    c, entity = con
    expected = ids_by_sql(c, entity, where)
    assert ids_by_filter(c, entity, filters) == expected


def test_every_operator_is_covered() -> None:
    text = repr([c[1] for c in CASES])
    for op in ("$and", "$or", "$nor", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists",
               "$regex"):
        assert op in text


def test_order_by_summary_and_config_matches_sql(con: tuple[Any, str]) -> None:
    c, entity = con

    def by_sql(order: str) -> list[str]:
        return [r[0] for r in c.execute(
            "SELECT run_id FROM runs r LEFT JOIN summary s ON s.run_uid = r.run_uid AND s.key = 'loss' "
            "LEFT JOIN config k ON k.run_uid = r.run_uid AND k.key = 'lr' "
            f"WHERE entity = ? ORDER BY {order}, r.path", [entity]).fetchall()]

    assert ids_by_filter(c, entity, {}, order="-summary_metrics.loss") == by_sql("s.value DESC NULLS LAST")
    assert ids_by_filter(c, entity, {}, order="+config.lr,-created_at") == \
        by_sql("k.value ASC NULLS LAST, r.created_at DESC NULLS LAST")
    assert ids_by_filter(c, entity, {}, order="created_at") == by_sql("r.created_at")


def test_values_are_parameters_never_sql() -> None:
    evil = "x'; DROP TABLE runs; --"
    compiled = compile_filters({"name": evil, "config.k'ey": {"$regex": evil}})
    assert evil not in compiled.sql and "k'ey" not in compiled.sql
    assert evil in compiled.params and "k'ey" in compiled.params


@pytest.mark.parametrize(("filters", "message"), [
    ({"nope": 1}, "unknown filter field 'nope'"),
    ({"state": {"$near": 1}}, "unknown operator '$near'"),
    ({"$xor": []}, "unknown logical operator"),
    ({"$or": []}, "non-empty list"),
    ({"tags": {"$gt": "a"}}, "does not apply to a list"),
    ({"state": {"$in": "x"}}, "takes a list"),
    ({"created_at": {"$gt": "yesterday"}}, "not an ISO time"),
    ({"name": {"$regex": "a", "$options": "x"}}, "$options"),
])
def test_bad_filters_say_what_is_wrong(filters: dict[str, Any], message: str) -> None:
    with pytest.raises(FilterError, match=message.replace("$", r"\$")):
        compile_filters(filters)


def test_bad_order_names_the_field() -> None:
    with pytest.raises(FilterError, match="unknown filter field 'bogus'"):
        compile_order("-bogus")
