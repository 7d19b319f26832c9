"""``runstream admin users|teams|keys ...`` and ``runstream login``.

The admin commands talk to the identities bucket (:mod:`runstream.broker.identities`) directly over
NATS, so they need credentials the broker lets touch it: the server role's or an admin user's key.
``login`` stores a key in ``<RUNSTREAM_DIR>/login`` (0600), which the SDK and the CLI then present
to the broker (see :func:`runstream.settings.load_settings`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .settings import Settings

LOGIN_FILE = "login"


class AdminError(Exception):
    """An admin command that cannot be done; its message says why."""


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _url(settings: Settings) -> str:
    if settings.nats_url:
        return settings.nats_url
    from . import stack

    st = stack.status(settings)
    if not (st.nats_alive and st.nats_url):
        raise AdminError("NATS is not running: start the stack with `runstream up`, or set RUNSTREAM_NATS_URL")
    return str(st.nats_url)


async def _admin(args: argparse.Namespace, settings: Settings) -> list[str]:
    from .broker.identities import Identities
    from .broker.jetstream import connect

    nc = await connect(_url(settings), creds=settings.nats_creds, token=settings.nats_token,
                       user=settings.nats_user, password=settings.nats_password, name="runstream admin")
    try:
        ids = Identities(nc.jetstream())
        what, verb = args.what, args.verb
        if what == "users" and verb == "add":
            u = await ids.add_user(args.name, admin=args.admin)
            return [f"user {u.name} added" + (" (admin)" if u.admin else "")]
        if what == "teams" and verb == "add":
            t = await ids.add_team(args.name)
            return [f"team {t.name} added"]
        if what == "teams" and verb == "member":
            role = None if args.remove else args.role
            if role is None and not args.remove:
                raise AdminError("give a ROLE (admin, member, viewer) or --remove")
            await ids.set_member(args.team, args.user, role)
            return [f"{args.user} is {role} of {args.team}" if role else f"{args.user} removed from {args.team}"]
        if what == "keys" and verb == "create":
            rec, key = await ids.create_key(args.user)
            return [f"key {rec.prefix} for {rec.user} (shown once; store it, e.g. `runstream login`):", key]
        if what == "keys" and verb == "revoke":
            rec = await ids.revoke_key(args.prefix)
            return [f"key {rec.prefix} of {rec.user} revoked"]
        snap = await ids.snapshot()
        if what == "users":
            return [f"{u.name}\t{'admin' if u.admin else 'user'}\t{_when(u.created_at)}"
                    for u in sorted(snap.users.values(), key=lambda u: u.name)]
        if what == "teams":
            return [f"{t.name}\t" + ", ".join(f"{m}:{r}" for m, r in sorted(t.members.items()))
                    for t in sorted(snap.teams.values(), key=lambda t: t.name)]
        keys = [k for k in snap.keys.values() if getattr(args, "user", None) in (None, k.user)]
        return [f"{k.prefix}\t{k.user}\tcreated {_when(k.created_at)}\tlast used {_when(k.last_used_at)}\t"
                + ("revoked " + _when(k.revoked_at) if k.revoked_at else "active")
                for k in sorted(keys, key=lambda k: k.created_at)]
    finally:
        await nc.close()


def cmd_admin(args: argparse.Namespace, settings: Settings) -> int:
    import anyio

    from .broker.identities import IdentityError

    try:
        lines = anyio.run(_admin, args, settings)
    except (IdentityError, AdminError) as e:
        print(f"runstream: error: {e}", file=sys.stderr)
        return 1
    except TimeoutError as e:  # nats-py's timeouts subclass it: the broker refused (no reply) or is away
        print(f"runstream: error: the identities bucket did not answer ({type(e).__name__}): these "
              "commands need the server role's or an admin user's key", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


def cmd_login(args: argparse.Namespace, settings: Settings) -> int:
    """Store a key for the SDK and the CLI in ``<dir>/login`` (0600)."""
    from .broker.identities import IdentityError, key_id

    key = args.key or sys.stdin.readline().strip()
    try:
        key_id(key)
    except IdentityError as e:
        print(f"runstream: error: {e}", file=sys.stderr)
        return 1
    settings.dir.mkdir(parents=True, exist_ok=True)
    path = settings.dir / LOGIN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    os.chmod(path, 0o600)
    print(f"runstream: key rsk_{key_id(key)} stored in {path} (0600)")
    return 0


def add_admin_commands(add: Callable[[str, Any, str], argparse.ArgumentParser]) -> None:
    """Register ``admin`` and ``login`` with the CLI's ``add(name, func, help)``."""
    sp = add("login", cmd_login, "store an API key for the SDK and the CLI (<RUNSTREAM_DIR>/login, 0600)")
    sp.add_argument("key", nargs="?", default=None, help="the key (default: read one line from stdin)")
    sp = add("admin", cmd_admin, "users, teams and API keys (needs the server role's or an admin's key)")
    what = sp.add_subparsers(dest="what", metavar="users|teams|keys", required=True)
    users = what.add_parser("users", help="users").add_subparsers(dest="verb", required=True)
    p = users.add_parser("add", help="add a user (and its entity)")
    p.add_argument("name")
    p.add_argument("--admin", action="store_true", help="may do everything, on every entity")
    users.add_parser("list", help="list users")
    teams = what.add_parser("teams", help="teams").add_subparsers(dest="verb", required=True)
    p = teams.add_parser("add", help="add a team (an entity with members)")
    p.add_argument("name")
    p = teams.add_parser("member", help="give a user a role in a team, or --remove it")
    p.add_argument("team")
    p.add_argument("user")
    p.add_argument("role", nargs="?", choices=("admin", "member", "viewer"), default=None)
    p.add_argument("--remove", action="store_true")
    teams.add_parser("list", help="list teams and their members")
    keys = what.add_parser("keys", help="API keys").add_subparsers(dest="verb", required=True)
    p = keys.add_parser("create", help="create a key for a user (shown once)")
    p.add_argument("user")
    p = keys.add_parser("list", help="list keys: prefix, user, created, last used, state")
    p.add_argument("user", nargs="?", default=None)
    p = keys.add_parser("revoke", help="revoke a key (its rsk_<id> prefix)")
    p.add_argument("prefix")
