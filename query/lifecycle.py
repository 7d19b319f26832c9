"""Moving and deleting runs, on the server: path claims in the KV bucket, events, stream purges.

**Move** (same entity, another project): for each run, claim ``entity/<project>/run_id`` in the
path bucket (create-if-absent; a path the same run left earlier may be taken back), publish a
``move`` event on the run's own subject (the events keep their subjects: they carry the uid), then
mark the old key ``moved`` (it stops resolving; the id stays reserved for this run, see
:mod:`runstream.broker.paths`). Every target is checked before anything changes, so a taken path
refuses the whole call with :class:`~.errors.Conflict`; each run's move is atomic on its own (the
claim is the commit point), so a race lost half-way leaves the runs before it moved and says so.

**Delete**: refuse (:class:`~.errors.Conflict`) when a run has forks that are not deleted in the
same call (forks read their parent's history by reference). Then, per run: mark its key
``deleted`` (the id is never reused), publish the ``delete`` tombstone, purge the objects only the
deleted runs need (through an :class:`ObjectPurger`), and purge the run's subjects from the stream below the tombstone
(``filter rs.*.run.<uid>.*``, ``seq`` = the tombstone's), so the tombstone stays and a replay knows
the run is gone. The projector purges the tables when it folds the tombstone; events of the run
that arrive later are dropped by the fold and deleted from the stream by :func:`purge_late`.

Events are published by the server as their own writer (``api:<random>``, seq 0), like ``meta``.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import duckdb

from ..broker.codec import encode_event, envelope
from ..broker.names import PATHS_BUCKET, STREAM, msg_id, path_key, run_subject, run_subjects, validate_name
from ..broker.paths import PathEntry, deleted_value, moved_value, parse_path_value
from .errors import Conflict, QueryError

__all__ = ["ObjectPurger", "delete_runs", "fork_children", "move_runs", "purge_late"]

log = logging.getLogger("runstream.query.lifecycle")

ERR_WRONG_LAST_SEQUENCE = 10071
REQUEST_TIMEOUT_S = 10.0


# -- the JetStream API, raw: one request, one JSON reply -----------------------------------------


async def _request(nc: Any, subject: str, payload: bytes, headers: dict[str, str] | None = None) -> dict[str, Any]:
    msg = await nc.request(subject, payload, timeout=REQUEST_TIMEOUT_S, headers=headers)
    reply = json.loads(msg.data or b"{}")
    return reply if isinstance(reply, dict) else {}


class _ApiError(QueryError):
    def __init__(self, what: str, err: Mapping[str, Any]) -> None:
        super().__init__(f"{what}: JetStream error {err.get('err_code')} ({err.get('code')}): "
                         f"{err.get('description')}")
        self.err_code = int(err.get("err_code") or 0)
        self.code = int(err.get("code") or 0)


def _key_subject(entity: str, project: str, run_id: str) -> str:
    return f"$KV.{PATHS_BUCKET}.{path_key(entity, project, run_id)}"


async def _entry(nc: Any, entity: str, project: str, run_id: str) -> PathEntry | None:
    subject = _key_subject(entity, project, run_id)
    reply = await _request(nc, f"$JS.API.STREAM.MSG.GET.KV_{PATHS_BUCKET}",
                           json.dumps({"last_by_subj": subject}).encode())
    err = reply.get("error")
    if err:
        if int(err.get("code") or 0) == 404:
            return None
        raise _ApiError(f"reading the path {entity}/{project}/{run_id}", err)
    msg = reply.get("message") or {}
    if not msg.get("data"):
        return None
    import base64

    return parse_path_value(base64.b64decode(msg["data"]), int(msg.get("seq") or 0))


async def _put(nc: Any, entity: str, project: str, run_id: str, value: bytes, expected_seq: int) -> bool:
    """Write a path key if its last bucket sequence is still ``expected_seq`` (0: absent); False if
    someone wrote it meanwhile."""
    reply = await _request(nc, _key_subject(entity, project, run_id), value,
                           headers={"Nats-Expected-Last-Subject-Sequence": str(expected_seq)})
    err = reply.get("error")
    if not err:
        return True
    if int(err.get("err_code") or 0) == ERR_WRONG_LAST_SEQUENCE:
        return False
    raise _ApiError(f"writing the path {entity}/{project}/{run_id}", err)


async def _publish(nc: Any, entity: str, uid: str, kind: str, body: dict[str, Any]) -> int:
    writer = f"api:{secrets.token_hex(6)}"
    env = envelope(kind, uid, writer, 0, time.time(), body)
    ack = await nc.jetstream().publish(run_subject(entity, uid, kind), encode_event(env),
                                       headers={"Nats-Msg-Id": msg_id(uid, writer, 0)})
    return int(ack.seq)


# -- move ----------------------------------------------------------------------------------------


def _taken(entry: PathEntry | None, uid: str, path: str) -> str | None:
    """Why ``path`` cannot become run ``uid``'s, or None when it can."""
    if entry is None or entry.uid == uid and entry.status != "deleted":
        return None
    if entry.status == "deleted":
        return f"{path} belonged to a deleted run (deleted ids are never reused)"
    if entry.status == "moved":
        return f"{path} is reserved for the run that moved from it to {entry.to}"
    return f"{path} is another run's"


async def move_runs(nc: Any, runs: Sequence[Mapping[str, Any]], project: str) -> list[dict[str, Any]]:
    """Move ``runs`` (``runs`` rows of one entity) to ``project``; return ``{from, to, stream_seq}``
    per run moved (a run already in ``project`` is left out).

    Raises:
        Conflict: a target path is taken (nothing changed), or was taken in a race half-way (the
            message lists the runs already moved).
        QueryError: ``project`` is not a legal name, or JetStream failed.
    """
    try:
        validate_name("project", project)
    except ValueError as e:
        raise QueryError(f"cannot move to project {project!r}: {e}") from None
    todo = [r for r in runs if r["project"] != project]
    problems = []
    for r in todo:
        target = f"{r['entity']}/{project}/{r['run_id']}"
        why = _taken(await _entry(nc, r["entity"], project, r["run_id"]), r["run_uid"], target)
        if why:
            problems.append(f"{r['path']} → {why}")
    if problems:
        raise Conflict(f"cannot move {len(problems)} of {len(todo)} run(s), so none was moved: "
                       + "; ".join(problems) + ". Give the run(s) other ids, or move them elsewhere.")
    done: list[dict[str, Any]] = []
    for r in todo:
        try:
            done.append(await _move_one(nc, r, project))
        except Conflict as e:
            moved = ", ".join(f"{d['from']} → {d['to']}" for d in done) or "none"
            raise Conflict(f"{e} (moved before this: {moved})") from None
    return done


async def _move_one(nc: Any, r: Mapping[str, Any], project: str) -> dict[str, Any]:
    entity, run_id, uid = str(r["entity"]), str(r["run_id"]), str(r["run_uid"])
    target = f"{entity}/{project}/{run_id}"
    entry = await _entry(nc, entity, project, run_id)
    why = _taken(entry, uid, target)
    if why is None and not (entry is not None and entry.live):
        # the claim is the commit point: absent → ours, or our own old path → ours again
        if not await _put(nc, entity, project, run_id, uid.encode(), entry.seq if entry else 0):
            why = _taken(await _entry(nc, entity, project, run_id), uid, target) or f"{target} changed meanwhile"
    if why is not None:
        raise Conflict(f"cannot move {r['path']}: {why}")
    seq = await _publish(nc, entity, uid, "move", {"entity": entity, "project": project, "run_id": run_id,
                                                    "from_path": str(r["path"])})
    old = await _entry(nc, entity, str(r["project"]), run_id)
    if old is not None and old.uid == uid and old.live:
        if not await _put(nc, entity, str(r["project"]), run_id, moved_value(uid, target), old.seq):
            log.warning("the old path %s of moved run %s changed meanwhile; left as is", r["path"], uid)
    return {"from": str(r["path"]), "to": target, "run_uid": uid, "stream_seq": seq}


# -- delete --------------------------------------------------------------------------------------


def fork_children(cur: duckdb.DuckDBPyConnection, run_uids: Sequence[str]) -> list[tuple[str, str, str]]:
    """``(fork path, fork uid, parent uid)`` of every run forked from one of ``run_uids``."""
    rows = cur.execute("SELECT path, run_uid, origin_run_uid FROM runs WHERE origin_kind = 'fork' AND "
                       "origin_run_uid IN (SELECT unnest(?::VARCHAR[])) ORDER BY path",
                       [list(run_uids)]).fetchall()
    return [(str(p), str(u), str(o)) for p, u, o in rows]


def check_forks(runs: Sequence[Mapping[str, Any]], forks: Sequence[tuple[str, str, str]]) -> None:
    """Raise :class:`Conflict` when a fork of a run to delete is not deleted with it."""
    chosen = {str(r["run_uid"]) for r in runs}
    paths = {str(r["run_uid"]): str(r["path"]) for r in runs}
    left = [(p, parent) for p, uid, parent in forks if uid not in chosen]
    if left:
        listing = "; ".join(f"{paths.get(parent, parent)} has fork {p}" for p, parent in left)
        raise Conflict(f"refusing to delete runs whose forks read their history: {listing}. Delete the "
                       "forks in the same call (list their paths too), or keep the parent.")


class ObjectPurger(Protocol):
    """The object store side of a delete (see :func:`delete_runs`)."""

    async def plan(self, run_uids: list[str]) -> set[str]:
        """The digests only these runs need (read before their tombstones purge their rows)."""
        ...

    async def purge(self, digests: set[str]) -> int:
        """Remove those objects; return how many were there."""
        ...


async def delete_runs(nc: Any, runs: Sequence[Mapping[str, Any]],
                      forks: Sequence[tuple[str, str, str]] = (),
                      objects: ObjectPurger | None = None) -> list[dict[str, Any]]:
    """Delete ``runs`` (``runs`` rows); return ``{path, run_uid, stream_seq, purged}`` per run
    (``stream_seq``: the tombstone's; ``purged``: stream messages removed). With ``objects``, the
    files and artifact objects that only these runs need are removed from the object store too
    (content-addressed: an object another run still needs stays).

    Raises:
        Conflict: a run has a fork (of ``forks``, see :func:`fork_children`) not in ``runs``.
    """
    check_forks(runs, forks)
    doomed = await objects.plan([str(r["run_uid"]) for r in runs]) if objects is not None else set()
    out = []
    for r in runs:
        entity, project, run_id, uid = str(r["entity"]), str(r["project"]), str(r["run_id"]), str(r["run_uid"])
        entry = await _entry(nc, entity, project, run_id)
        if entry is not None and entry.uid == uid and entry.status != "deleted":
            if not await _put(nc, entity, project, run_id, deleted_value(uid), entry.seq):
                raise Conflict(f"the path of {r['path']} changed while deleting it; nothing deleted, try again")
        seq = await _publish(nc, entity, uid, "delete", {})
        purged = await purge_stream(nc, uid, below=seq)
        out.append({"path": str(r["path"]), "run_uid": uid, "stream_seq": seq, "purged": purged})
    if objects is not None and doomed:
        removed = await objects.purge(doomed)
        for item in out:
            item["objects_purged"] = removed
    return out


async def purge_stream(nc: Any, run_uid: str, *, below: int) -> int:
    """Remove the run's messages with stream sequence below ``below`` (its tombstone); return how many."""
    reply = await _request(nc, f"$JS.API.STREAM.PURGE.{STREAM}",
                           json.dumps({"filter": run_subjects(run_uid), "seq": below}).encode())
    if reply.get("error"):
        raise _ApiError(f"purging run {run_uid} from the stream", reply["error"])
    return int(reply.get("purged") or 0)


async def purge_late(nc: Any, late: Sequence[tuple[str, int]]) -> None:
    """Purge events of deleted runs that arrived after their tombstone (the fold dropped them):
    publish a fresh tombstone per run and purge the run's subjects below it, as on the first
    delete. (Deleting the messages one by one could remove the stream's last message, which a
    consumer waiting for the stream's last sequence would never see.)"""
    for uid in dict.fromkeys(u for u, _ in late):
        entity = await _entity_of(nc, uid, [s for u, s in late if u == uid])
        if entity is None:
            continue  # gone already (an earlier purge)
        seq = await _publish(nc, entity, uid, "delete", {})
        await purge_stream(nc, uid, below=seq)


async def _entity_of(nc: Any, uid: str, seqs: Sequence[int]) -> str | None:
    """The (encoded) entity of a run, from the subject of one of its messages still in the stream."""
    from ..broker.names import decode_token

    for seq in seqs:
        reply = await _request(nc, f"$JS.API.STREAM.MSG.GET.{STREAM}", json.dumps({"seq": seq}).encode())
        subject = (reply.get("message") or {}).get("subject")
        if isinstance(subject, str) and subject.count(".") == 4:
            return decode_token(subject.split(".")[1])
    return None
