"""The store's side tables: rows handlers append or upsert land by column name, in one transaction
with the checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from runstream.projector.fold import Changes
from runstream.projector.store import Store


def _store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "p.duckdb")
    store.con.execute("CREATE TABLE side (run_uid VARCHAR, k VARCHAR, n BIGINT, v DOUBLE, note VARCHAR)")
    return store


def test_appends_by_name_and_upserts_last_write_wins(tmp_path: Path) -> None:
    store = _store(tmp_path)
    ch = Changes(checkpoint=3)
    ch.append("side", {"run_uid": "r", "k": "a", "n": 1}, {"v": 2.5, "run_uid": "r", "k": "b"})
    store.apply(ch)
    assert store.rows("side") == [("r", "a", 1, None, None), ("r", "b", None, 2.5, None)]
    ch = Changes(checkpoint=4)
    ch.upsert("side", ("run_uid", "k"), {"run_uid": "r", "k": "a", "n": 10}, {"run_uid": "r", "k": "a", "n": 11},
              {"run_uid": "r", "k": "c", "n": 3, "note": None})
    store.apply(ch)
    assert store.rows("side") == [("r", "a", 11, None, None), ("r", "b", None, 2.5, None), ("r", "c", 3, None, None)]
    assert store.checkpoint() == 4


def test_a_failing_side_write_rolls_back_the_whole_batch(tmp_path: Path) -> None:
    from runstream.projector.errors import StoreError

    store = _store(tmp_path)
    ch = Changes(checkpoint=7)
    ch.append("side", {"run_uid": "r", "k": "a"})
    ch.append("no_such_table", {"x": 1})
    with pytest.raises(StoreError):
        store.apply(ch)
    assert store.rows("side") == [] and store.checkpoint() == 0


def test_upsert_keys_must_agree_within_a_batch() -> None:
    ch = Changes(checkpoint=1)
    ch.upsert("side", ("run_uid",), {"run_uid": "r"})
    with pytest.raises(ValueError, match="keys"):
        ch.upsert("side", ("run_uid", "k"), {"run_uid": "r", "k": "a"})
