"""Who is who: users, teams and API keys, kept in the KV bucket :data:`BUCKET` on NATS.

The store is the log's world (replicated with the cluster), not a file on one server. Keys of the
bucket (name tokens encoded as in :mod:`.names`):

* ``user.<name>`` — ``{"name", "admin", "created_at"}``; a user owns the entity of its name
  (role ``admin`` there);
* ``team.<name>`` — ``{"name", "members": {user: role}, "created_at"}``; roles are
  :data:`ROLES`;
* ``key.<key id>`` — ``{"id", "user", "prefix", "sha256", "bcrypt", "created_at", "revoked_at"}``:
  only hashes, never the key. ``sha256`` is what the HTTP server looks a presented key up by (keys
  are 256 random bits, so a fast hash is enough there); ``bcrypt`` is what ``nats-server`` checks
  the key against (its own password hash format, see :mod:`.nats_auth`);
* ``used.<key id>`` — the last time the key was seen (a separate entry, so recording a use never
  races a revocation).

An API key reads ``rsk_<id>_<secret>``: ``rsk_<id>`` is its NATS user name and its public prefix,
the whole key is the password. It is shown once, by :meth:`Identities.create_key`.

Pure parts (records, roles, key parsing) are plain functions; :class:`Identities` is the one IO
seam, over a nats-py KeyValue.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from .names import decode_token, encode_token

BUCKET = "rs_identities"
ROLES = ("admin", "member", "viewer")
"""Team roles: ``admin`` manages the team and writes; ``member`` writes; ``viewer`` only reads."""
WRITE_ROLES = frozenset({"admin", "member"})

_KEY_RE = re.compile(r"^rsk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
BCRYPT_ROUNDS = 6
"""Keys carry 256 random bits: bcrypt's cost adds nothing against guessing, and nats-server runs it
on every connect and, for each connected client, on every reload."""


class IdentityError(ValueError):
    """A user, team or key operation that cannot be done (unknown name, bad role, ...)."""


def bucket_config(replicas: int = 1) -> dict[str, Any]:
    """The identities KV bucket's stream, laid out as JetStream KV clients expect."""
    return {"name": f"KV_{BUCKET}", "subjects": [f"$KV.{BUCKET}.>"], "retention": "limits", "storage": "file",
            "discard": "new", "num_replicas": replicas, "max_msgs_per_subject": 5, "allow_rollup_hdrs": True,
            "deny_delete": False, "allow_direct": True, "max_msgs": -1, "max_bytes": -1, "max_age": 0,
            "max_msg_size": -1, "duplicate_window": 120 * 1_000_000_000}


def check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise IdentityError(f"{what} name {name!r}: use 1-64 of A-Z a-z 0-9 _ . - (starting with a letter or digit)")
    return name


@dataclass(frozen=True)
class User:
    name: str
    admin: bool = False
    created_at: float = 0.0


@dataclass(frozen=True)
class Team:
    name: str
    members: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0


@dataclass(frozen=True)
class ApiKey:
    """A key's stored record: hashes only."""

    id: str
    user: str
    sha256: str
    bcrypt: str
    created_at: float
    revoked_at: float | None = None
    last_used_at: float | None = None

    @property
    def prefix(self) -> str:
        """The key's public part (its NATS user name), safe to show and log."""
        return f"rsk_{self.id}"

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class Snapshot:
    """Every user, team and key at one moment: what permissions are computed from (pure)."""

    users: dict[str, User] = field(default_factory=dict)
    teams: dict[str, Team] = field(default_factory=dict)
    keys: dict[str, ApiKey] = field(default_factory=dict)

    def role(self, user: str, entity: str) -> str | None:
        """The role of ``user`` in ``entity``: ``admin`` of its own entity, its team role, else None."""
        if user == entity and user in self.users:
            return "admin"
        team = self.teams.get(entity)
        return team.members.get(user) if team else None

    def entities(self, user: str, roles: frozenset[str] | set[str] = frozenset(ROLES)) -> list[str]:
        """The entities where ``user`` has one of ``roles``, sorted."""
        out = {user} if user in self.users and "admin" in roles else set()
        out.update(t.name for t in self.teams.values() if t.members.get(user) in roles)
        return sorted(out)

    def key_for(self, presented: str) -> ApiKey | None:
        """The active key record matching a presented key, else None (constant-time compare)."""
        m = _KEY_RE.match(presented or "")
        if m is None:
            return None
        rec = self.keys.get(m.group(1))
        if rec is None or not rec.active or rec.user not in self.users:
            return None
        return rec if hmac.compare_digest(rec.sha256, sha256_hex(presented)) else None


def sha256_hex(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh key: ``(key id, the whole key)``."""
    kid = secrets.token_hex(6)
    return kid, f"rsk_{kid}_{secrets.token_urlsafe(32)}"


def key_id(key: str) -> str:
    """The id part of a presented key; IdentityError if it is not one."""
    m = _KEY_RE.match(key or "")
    if m is None:
        raise IdentityError("not a runstream API key (they read rsk_<12 hex>_<43 characters>)")
    return m.group(1)


def nats_user(key: str) -> str:
    """The NATS user name of a key, ``rsk_<id>`` (its public prefix)."""
    return f"rsk_{key_id(key)}"


def bcrypt_hash(key: str) -> str:
    import bcrypt

    return bcrypt.hashpw(key.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()


def _record(kind: str, value: dict[str, Any]) -> Any:
    if kind == "user":
        return User(value["name"], bool(value.get("admin")), float(value.get("created_at", 0)))
    if kind == "team":
        return Team(value["name"], dict(value.get("members", {})), float(value.get("created_at", 0)))
    return ApiKey(value["id"], value["user"], value["sha256"], value["bcrypt"], float(value["created_at"]),
                  value.get("revoked_at"))


def snapshot_from_entries(entries: dict[str, bytes]) -> Snapshot:
    """Build a :class:`Snapshot` from the bucket's ``key → value`` entries (pure)."""
    users: dict[str, User] = {}
    teams: dict[str, Team] = {}
    keys: dict[str, ApiKey] = {}
    used: dict[str, float] = {}
    for k, raw in entries.items():
        kind, _, rest = k.partition(".")
        if not raw:
            continue
        value = json.loads(raw)
        if kind == "user":
            users[decode_token(rest)] = _record(kind, value)
        elif kind == "team":
            teams[decode_token(rest)] = _record(kind, value)
        elif kind == "key":
            keys[rest] = _record(kind, value)
        elif kind == "used":
            used[rest] = float(value)
    for kid, at in used.items():
        if kid in keys:
            rec = keys[kid]
            keys[kid] = ApiKey(rec.id, rec.user, rec.sha256, rec.bcrypt, rec.created_at, rec.revoked_at, at)
    return Snapshot(users, teams, keys)


class Identities:
    """The identities bucket through a nats-py JetStream context (server role and admins only).

    Args:
        js: nats-py JetStream context.
        clock: seconds since the epoch (injected in tests).
    """

    def __init__(self, js: Any, clock: Any = time.time) -> None:
        self.js = js
        self.clock = clock
        self._kv: Any = None

    async def kv(self) -> Any:
        if self._kv is None:
            from nats.js.errors import BucketNotFoundError

            try:
                self._kv = await self.js.key_value(BUCKET)
            except BucketNotFoundError:
                from nats.js.api import StreamConfig

                cfg = bucket_config()
                try:
                    await self.js.add_stream(StreamConfig.from_response(dict(cfg)))
                except Exception:  # created concurrently: the lookup below tells
                    pass
                self._kv = await self.js.key_value(BUCKET)
        return self._kv

    async def snapshot(self) -> Snapshot:
        """Every entry, read now (the subjects from the stream's info, then each entry's last value:
        no watcher left behind)."""
        kv = await self.kv()
        info = await self.js.stream_info(f"KV_{BUCKET}", subjects_filter=f"$KV.{BUCKET}.>")
        prefix = len(f"$KV.{BUCKET}.")
        names = sorted(s[prefix:] for s in (info.state.subjects or {}))
        entries: dict[str, bytes] = {}
        for name in names:
            try:
                entry = await kv.get(name)
            except Exception:  # deleted between keys() and get()
                continue
            entries[name] = entry.value or b""
        return snapshot_from_entries(entries)

    async def _put_new(self, key: str, value: dict[str, Any], what: str) -> None:
        from nats.js.errors import KeyWrongLastSequenceError

        kv = await self.kv()
        try:
            await kv.create(key, json.dumps(value).encode())
        except KeyWrongLastSequenceError as e:
            raise IdentityError(f"{what} already exists") from e

    async def add_user(self, name: str, *, admin: bool = False) -> User:
        """Create user ``name`` (its entity of the same name); IdentityError if the name is taken."""
        check_name(name, "user")
        if (await self.snapshot()).teams.get(name):
            raise IdentityError(f"user {name!r}: a team of that name exists")
        await self._put_new(f"user.{encode_token(name)}",
                            {"name": name, "admin": admin, "created_at": self.clock()}, f"user {name!r}")
        return User(name, admin, self.clock())

    async def add_team(self, name: str) -> Team:
        check_name(name, "team")
        if (await self.snapshot()).users.get(name):
            raise IdentityError(f"team {name!r}: a user of that name exists")
        await self._put_new(f"team.{encode_token(name)}",
                            {"name": name, "members": {}, "created_at": self.clock()}, f"team {name!r}")
        return Team(name, {}, self.clock())

    async def set_member(self, team: str, user: str, role: str | None) -> Team:
        """Give ``user`` ``role`` in ``team`` (None removes it); compare-and-set on the team entry."""
        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

        if role is not None and role not in ROLES:
            raise IdentityError(f"role {role!r}: one of {', '.join(ROLES)}")
        kv = await self.kv()
        for _ in range(20):
            snap = await self.snapshot()
            if user not in snap.users:
                raise IdentityError(f"no user {user!r}")
            try:
                entry = await kv.get(f"team.{encode_token(team)}")
            except KeyNotFoundError as e:
                raise IdentityError(f"no team {team!r}") from e
            value = json.loads(entry.value)
            members = dict(value.get("members", {}))
            if role is None:
                members.pop(user, None)
            else:
                members[user] = role
            value["members"] = members
            try:
                await kv.update(entry.key, json.dumps(value).encode(), last=entry.revision)
                return Team(team, members, float(value.get("created_at", 0)))
            except KeyWrongLastSequenceError:
                continue
        raise IdentityError(f"team {team!r}: changed concurrently too often; try again")

    async def create_key(self, user: str) -> tuple[ApiKey, str]:
        """A new key for ``user``: ``(its record, the key)``; the key is not stored and not shown again."""
        snap = await self.snapshot()
        if user not in snap.users:
            raise IdentityError(f"no user {user!r}")
        kid, key = new_key()
        rec = ApiKey(kid, user, sha256_hex(key), bcrypt_hash(key), self.clock())
        await self._put_new(f"key.{kid}", {"id": kid, "user": user, "sha256": rec.sha256, "bcrypt": rec.bcrypt,
                                            "created_at": rec.created_at, "revoked_at": None}, f"key {kid}")
        return rec, key

    async def revoke_key(self, kid: str) -> ApiKey:
        """Revoke key ``kid`` (its id or its ``rsk_<id>`` prefix); IdentityError if there is none."""
        from nats.js.errors import KeyNotFoundError

        kid = kid.removeprefix("rsk_").split("_")[0]
        kv = await self.kv()
        try:
            entry = await kv.get(f"key.{kid}")
        except KeyNotFoundError as e:
            raise IdentityError(f"no key rsk_{kid}") from e
        value = json.loads(entry.value)
        if value.get("revoked_at") is None:
            value["revoked_at"] = self.clock()
            await kv.put(entry.key, json.dumps(value).encode())
        rec = _record("key", value)
        assert isinstance(rec, ApiKey)
        return rec

    async def mark_used(self, kid: str) -> None:
        kv = await self.kv()
        await kv.put(f"used.{kid}", json.dumps(self.clock()).encode())
