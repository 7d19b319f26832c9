"""The SQL behind the Files and Artifacts endpoints, and what a run's objects are (for purges).

Each function takes a DuckDB cursor (run through :class:`~.reads.Reader`) and returns plain rows.

For the engineer deleting runs: before the run's rows leave the tables, call
:func:`run_object_digests` for the run, then :func:`unreferenced_digests` to keep only the objects
no other run needs, and purge those with :func:`runstream.broker.objects.ObjectStore.purge`
(:func:`purge_run_objects` does the three steps).
"""

from __future__ import annotations

from typing import Any

import duckdb

_FILE_COLS = "name, size, sha256, mtime, policy, updated_at"
_ART_COLS = ("a.entity, a.project, a.name, a.version, a.type, a.digest, a.description, a.metadata, a.size, "
             "a.file_count, a.created_by, a.created_at")


def _dicts(cur: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    res = cur.execute(sql, params)
    cols = [d[0] for d in res.description]
    return [dict(zip(cols, row, strict=True)) for row in res.fetchall()]


def run_files(cur: duckdb.DuckDBPyConnection, run_uid: str) -> list[dict[str, Any]]:
    """The run's Files list, by name."""
    return _dicts(cur, f"SELECT {_FILE_COLS} FROM files WHERE run_uid = ? ORDER BY name", [run_uid])


def run_file(cur: duckdb.DuckDBPyConnection, run_uid: str, name: str) -> dict[str, Any] | None:
    rows = _dicts(cur, f"SELECT {_FILE_COLS} FROM files WHERE run_uid = ? AND name = ?", [run_uid, name])
    return rows[0] if rows else None


def _artifact(row: dict[str, Any]) -> dict[str, Any]:
    from .reads import with_metadata

    return with_metadata(row)


def artifact_version(cur: duckdb.DuckDBPyConnection, entity: str, project: str, name: str,
                     ref: str) -> dict[str, Any] | None:
    """A version by ``vN`` or alias, with its ``aliases``, ``files`` (manifest) and lineage
    (``produced_by``, ``used_by``: run paths), or None."""
    if len(ref) > 1 and ref[0] == "v" and ref[1:].isdigit():
        version: int | None = int(ref[1:])
    else:
        got = cur.execute("SELECT version FROM artifact_aliases WHERE entity = ? AND project = ? AND name = ? "
                          "AND alias = ?", [entity, project, name, ref]).fetchall()
        version = int(got[0][0]) if got else None
    if version is None:
        return None
    key = [entity, project, name, version]
    rows = _dicts(cur, f"SELECT {_ART_COLS} FROM artifacts a WHERE a.entity = ? AND a.project = ? AND a.name = ? "
                  "AND a.version = ?", key)
    if not rows:
        return None
    out = _artifact(rows[0])
    out["aliases"] = [r[0] for r in cur.execute(
        "SELECT alias FROM artifact_aliases WHERE entity = ? AND project = ? AND name = ? AND version = ? "
        "ORDER BY alias", key).fetchall()]
    out["files"] = _dicts(cur, "SELECT path, sha256, size, ref FROM artifact_files WHERE entity = ? AND "
                          "project = ? AND name = ? AND version = ? ORDER BY path", key)
    for role, field in (("output", "produced_by"), ("input", "used_by")):
        out[field] = [r[0] for r in cur.execute(
            "SELECT r.path FROM artifact_usage u JOIN runs r USING (run_uid) WHERE u.entity = ? AND "
            "u.project = ? AND u.name = ? AND u.version = ? AND u.role = ? ORDER BY r.path",
            [*key, role]).fetchall()]
    return out


def run_artifacts(cur: duckdb.DuckDBPyConnection, run_uid: str, role: str) -> list[dict[str, Any]]:
    """Versions the run logged (``output``) or used (``input``)."""
    rows = _dicts(cur, f"SELECT {_ART_COLS} FROM artifact_usage u JOIN artifacts a USING "
                  "(entity, project, name, version) WHERE u.run_uid = ? AND u.role = ? "
                  "ORDER BY a.name, a.version", [run_uid, role])
    return [_artifact(r) for r in rows]


def project_artifacts(cur: duckdb.DuckDBPyConnection, entity: str, project: str) -> list[dict[str, Any]]:
    """Every version of every artifact of a project, with its aliases."""
    rows = _dicts(cur, f"SELECT {_ART_COLS}, coalesce((SELECT list(alias ORDER BY alias) FROM artifact_aliases "
                  "l WHERE l.entity = a.entity AND l.project = a.project AND l.name = a.name AND l.version = "
                  "a.version), []) AS aliases FROM artifacts a WHERE a.entity = ? AND a.project = ? "
                  "ORDER BY a.name, a.version", [entity, project])
    return [_artifact(r) for r in rows]


# -- objects of a run (deleting runs) ------------------------------------------------------------------


def run_object_digests(cur: duckdb.DuckDBPyConnection, run_uid: str) -> set[str]:
    """Every object the run's tables point at: its files, and for each artifact version it
    logged, the manifest and the stored entries."""
    rows = cur.execute("""
        SELECT sha256 FROM files WHERE run_uid = $1
        UNION SELECT u.digest FROM artifact_usage u WHERE u.run_uid = $1 AND u.role = 'output'
        UNION SELECT f.sha256 FROM artifact_usage u JOIN artifact_files f USING (entity, project, name, version)
              WHERE u.run_uid = $1 AND u.role = 'output' AND f.sha256 IS NOT NULL
    """, [run_uid]).fetchall()
    return {r[0] for r in rows if r[0]}


def unreferenced_digests(cur: duckdb.DuckDBPyConnection, digests: set[str], run_uid: str) -> set[str]:
    """Those of ``digests`` that no other run needs: not another run's file, nor part of an
    artifact version another run logged or used."""
    if not digests:
        return set()
    rows = cur.execute("""
        SELECT sha256 FROM files WHERE run_uid <> $1
        UNION SELECT u.digest FROM artifact_usage u WHERE u.run_uid <> $1
        UNION SELECT f.sha256 FROM artifact_usage u JOIN artifact_files f USING (entity, project, name, version)
              WHERE u.run_uid <> $1 AND f.sha256 IS NOT NULL
    """, [run_uid]).fetchall()
    return set(digests) - {r[0] for r in rows}


def only_needed_by(cur: duckdb.DuckDBPyConnection, run_uids: list[str]) -> set[str]:
    """The objects that only the runs ``run_uids`` need (what deleting all of them frees): their
    files and logged artifact versions' objects that no other run's file, artifact output or input
    points at."""
    if not run_uids:
        return set()
    mine = cur.execute("""
        SELECT sha256 FROM files WHERE list_contains($1, run_uid)
        UNION SELECT u.digest FROM artifact_usage u WHERE list_contains($1, u.run_uid) AND u.role = 'output'
        UNION SELECT f.sha256 FROM artifact_usage u JOIN artifact_files f USING (entity, project, name, version)
              WHERE list_contains($1, u.run_uid) AND u.role = 'output' AND f.sha256 IS NOT NULL
    """, [list(run_uids)]).fetchall()
    others = cur.execute("""
        SELECT sha256 FROM files WHERE NOT list_contains($1, run_uid)
        UNION SELECT u.digest FROM artifact_usage u WHERE NOT list_contains($1, u.run_uid)
        UNION SELECT f.sha256 FROM artifact_usage u JOIN artifact_files f USING (entity, project, name, version)
              WHERE NOT list_contains($1, u.run_uid) AND f.sha256 IS NOT NULL
    """, [list(run_uids)]).fetchall()
    return {r[0] for r in mine if r[0]} - {r[0] for r in others}


def purge_run_objects(cur: duckdb.DuckDBPyConnection, client: Any, run_uid: str) -> set[str]:
    """Remove from the object store the objects only ``run_uid`` needs; return their digests.

    ``client``: a connected :class:`~runstream.broker.miniclient.MiniNats` (blocking; call it from
    a worker thread in async code). Call it while the run's rows are still in the tables."""
    from ..broker.objects import ObjectStore

    gone = unreferenced_digests(cur, run_object_digests(cur, run_uid), run_uid)
    store = ObjectStore(client)
    for digest in sorted(gone):
        store.purge(digest)
    return gone
