"""Artifact version numbers and aliases, assigned race-free in a JetStream KV bucket.

Why the KV and not the fold: a version number is a fact the logging run learns (and prints) and
that must stay put when another run is deleted and the log replayed; numbering in the fold would
renumber ``v1`` to ``v0`` once ``v0``'s run is purged. So the number is decided here, once, and
recorded in the ``artifact`` event; the fold only copies it.

Keys of bucket :data:`ARTIFACTS_BUCKET` (each name token encoded as in :mod:`.names`), for the
sequence ``<entity>.<project>.<name>``:

* ``…head`` — the next free version number; moved only by compare-and-set (expected revision), so
  two writers never take the same number;
* ``…v.<N>`` — created once by the writer holding slot N: the manifest digest of version N;
* ``…d.<digest>`` — created once (create-if-absent): ``{"version", "run_uid", "created_at"}``;
  the authority for "this content already is version N", so identical content never makes a
  second version;
* ``…a.<alias>`` — the version an alias points at; ``latest`` only ever moves forward (CAS).

:func:`claim_version`: a known digest reuses its version. Otherwise take slot N from ``head``
(CAS), write ``v.N``, then create ``d.<digest>``. If another writer registered the same digest in
between (identical new content logged at the same moment), its version wins and slot N stays
unused: numbers are unique and increasing, and in that one race a number is skipped.
"""

from __future__ import annotations

import json
import time
from typing import Any, NamedTuple

from .errors import BrokerError
from .names import encode_token

ARTIFACTS_BUCKET = "rs_artifacts"
ERR_WRONG_LAST_SEQUENCE = 10071
_STREAM = f"KV_{ARTIFACTS_BUCKET}"


class Claim(NamedTuple):
    version: int
    created: bool
    """True when this call made the version (its content was new)."""
    created_by: str
    created_at: float


def bucket_config(replicas: int = 1) -> dict[str, Any]:
    return {"name": _STREAM, "subjects": [f"$KV.{ARTIFACTS_BUCKET}.>"], "retention": "limits",
            "storage": "file", "discard": "new", "num_replicas": replicas, "max_msgs_per_subject": 1,
            "allow_rollup_hdrs": True, "deny_delete": False, "allow_direct": True, "max_msgs": -1,
            "max_bytes": -1, "max_age": 0, "max_msg_size": -1, "duplicate_window": 120 * 1_000_000_000}


def sequence_key(entity: str, project: str, name: str) -> str:
    return ".".join(encode_token(p) for p in (entity, project, name))


def _subject(seq_key: str, *rest: str) -> str:
    return ".".join((f"$KV.{ARTIFACTS_BUCKET}", seq_key, *rest))


class ArtifactKV:
    """Version claims and alias moves over a :class:`~.miniclient.MiniNats` (blocking)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._ensured = False

    def ensure(self) -> None:
        if self._ensured:
            return
        from .miniclient import ERR_STREAM_NOT_FOUND, JetStreamError

        try:
            self.client.js_api(f"STREAM.INFO.{_STREAM}")
        except JetStreamError as e:
            if e.err_code != ERR_STREAM_NOT_FOUND and e.code != 404:
                raise
            try:
                self.client.js_api(f"STREAM.CREATE.{_STREAM}", bucket_config(getattr(self.client, "replicas", 1)))
            except JetStreamError:
                self.client.js_api(f"STREAM.INFO.{_STREAM}")
        self._ensured = True

    # -- primitives --------------------------------------------------------------------------------

    def get(self, subject: str) -> tuple[Any, int] | None:
        """``(JSON value, revision)`` of a key, or None."""
        msg = self.client.request(f"$JS.API.DIRECT.GET.{_STREAM}",
                                  json.dumps({"last_by_subj": subject}).encode(), timeout=10.0)
        if msg.status == 404 or not msg.payload:
            return None
        if msg.status is not None and msg.status >= 400:
            raise BrokerError(f"artifact registry: reading {subject} failed with status {msg.status}")
        return json.loads(msg.payload), int(msg.headers.get("Nats-Sequence", "0"))

    def put(self, subject: str, value: Any, expect: int | None = None) -> int | None:
        """Write a key; with ``expect`` only if its revision is that (0: only if absent). Returns
        the new revision, or None when the expectation failed."""
        from .miniclient import JetStreamError

        headers = None if expect is None else {"Nats-Expected-Last-Subject-Sequence": str(expect)}
        try:
            ack = self.client.js_publish(subject, json.dumps(value).encode(), headers=headers, timeout=10.0)
        except JetStreamError as e:
            if e.err_code == ERR_WRONG_LAST_SEQUENCE:
                return None
            raise
        return int(ack.get("seq", 0))

    # -- versions ------------------------------------------------------------------------------------

    def claim_version(self, entity: str, project: str, name: str, digest: str, run_uid: str) -> Claim:
        """The version of ``digest`` in the sequence, made now if the content is new (see module)."""
        self.ensure()
        key = sequence_key(entity, project, name)
        d_subject = _subject(key, "d", digest)
        while True:
            have = self.get(d_subject)
            if have is not None:
                v = have[0]
                return Claim(int(v["version"]), False, str(v["run_uid"]), float(v["created_at"]))
            head = self.get(_subject(key, "head"))
            n, rev = (int(head[0]), head[1]) if head is not None else (0, 0)
            if self.put(_subject(key, "head"), n + 1, expect=rev) is None:
                continue  # another writer took slot n: look again
            self.put(_subject(key, "v", str(n)), {"digest": digest}, expect=0)
            now = time.time()
            if self.put(d_subject, {"version": n, "run_uid": run_uid, "created_at": now}, expect=0) is not None:
                return Claim(n, True, run_uid, now)
            self.put(_subject(key, "v", str(n)), {"digest": None, "skipped": True})  # lost the race

    def move_aliases(self, entity: str, project: str, name: str, version: int,
                     aliases: list[str]) -> dict[str, int]:
        """Point ``aliases`` at ``version``; ``latest`` moves only forward. Returns
        ``{alias: revision}`` of the moves made (the fold keeps, per alias, the highest revision)."""
        self.ensure()
        key = sequence_key(entity, project, name)
        moved: dict[str, int] = {}
        for alias in aliases:
            subject = _subject(key, "a", encode_token(alias))
            if alias != "latest":
                rev = self.put(subject, version)
                if rev is not None:
                    moved[alias] = rev
                continue
            while True:
                have = self.get(subject)
                if have is not None and int(have[0]) >= version:
                    break
                rev = self.put(subject, version, expect=0 if have is None else have[1])
                if rev is not None:
                    moved[alias] = rev
                    break
        return moved

    def resolve(self, entity: str, project: str, name: str, ref: str) -> tuple[int, str] | None:
        """``ref`` (``v3`` or an alias) → ``(version, manifest digest)``, or None if unknown."""
        self.ensure()
        key = sequence_key(entity, project, name)
        if len(ref) > 1 and ref[0] == "v" and ref[1:].isdigit():
            version = int(ref[1:])
        else:
            got = self.get(_subject(key, "a", encode_token(ref)))
            if got is None:
                return None
            version = int(got[0])
        have = self.get(_subject(key, "v", str(version)))
        if have is None or not have[0].get("digest"):
            return None
        return version, str(have[0]["digest"])

