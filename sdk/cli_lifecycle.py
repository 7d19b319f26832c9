"""``runstream delete`` and ``runstream move``: choose runs, show the plan, confirm, then do it.

    runstream delete ENTITY/PROJECT/ID [...]              # these runs
    runstream delete ENTITY/PROJECT --filter '<json>'     # the runs matching a filter ('{}': all)
    runstream move ENTITY/PROJECT/ID [...] --to PROJECT
    runstream move ENTITY/PROJECT --filter '<json>' --to PROJECT

Both list what will happen and ask before doing it; ``--yes`` skips the question, and without a
terminal to ask on (and without ``--yes``) they refuse. Many runs go in chunks with a progress bar.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

from .settings import Settings

__all__ = ["add_lifecycle_commands", "cmd_delete", "cmd_move", "plan_lines"]

Command = Callable[[argparse.Namespace, Settings], int]
SHOWN = 20
"""Runs listed one per line in the plan; beyond that, a count."""


def _in() -> TextIO:
    return sys.stdin


def _out() -> TextIO:
    return sys.stdout


def _err() -> TextIO:
    return sys.stderr


def plan_lines(verb: str, rows: list[dict[str, Any]], to: str | None = None) -> list[str]:
    """What ``delete``/``move`` will do, one line per run (pure)."""
    head = (f"will move {len(rows)} run{'s' if len(rows) != 1 else ''} to project {to!r}:" if verb == "move"
            else f"will delete {len(rows)} run{'s' if len(rows) != 1 else ''} for good (events, history, "
                 "files; their ids can never be used again):")
    lines = [head]
    for r in rows[:SHOWN]:
        what = f"{r['path']} → {r['entity']}/{to}/{r['run_id']}" if verb == "move" else r["path"]
        lines.append(f"  {what}  ({r.get('name') or '-'}, {r.get('state') or '-'})")
    if len(rows) > SHOWN:
        lines.append(f"  ... and {len(rows) - SHOWN} more")
    return lines


def _select(api: Any, paths: list[str], filter_text: str | None) -> list[dict[str, Any]]:
    from .cli import CliError
    from .query.errors import NotFound

    if filter_text is not None:
        if len(paths) != 1 or len([p for p in paths[0].split("/") if p]) != 2:
            raise CliError("--filter selects runs of one project: give exactly one ENTITY/PROJECT")
        try:
            filters = json.loads(filter_text)
        except ValueError as e:
            raise CliError(f"--filter must be a JSON object: {e}") from None
        if not isinstance(filters, dict):
            raise CliError("--filter must be a JSON object of field → condition, e.g. '{\"state\": \"failed\"}'")
        return [dict(r._attrs) for r in api.runs(paths[0], filters=filters, order="+created_at", per_page=1000)]
    rows: dict[str, dict[str, Any]] = {}
    for p in paths:
        parts = [x for x in p.split("/") if x]
        if len(parts) == 2:
            raise CliError(f"{p} is a project: name runs as ENTITY/PROJECT/ID, or add --filter '{{}}' "
                           "to choose every run of it")
        if len(parts) != 3:
            raise CliError(f"expected ENTITY/PROJECT/ID, not {p!r}")
        try:
            run = api.run(p)
        except NotFound:
            raise CliError(f"no run {p}; list the project's runs with `runstream runs "
                           f"{parts[0]}/{parts[1]}`") from None
        rows[run.run_uid] = dict(run._attrs)
    return list(rows.values())


def _confirm(question: str, yes: bool, what: str) -> bool:
    from .cli import CliError

    if yes:
        return True
    stdin = _in()
    if not stdin.isatty():
        raise CliError(f"refusing to {what} without confirmation: there is no terminal to ask on; "
                       "pass --yes to go ahead")
    print(f"{question} [y/N] ", end="", file=_out(), flush=True)
    answer = stdin.readline().strip().lower()
    return answer in ("y", "yes")


def _run(verb: str, args: argparse.Namespace, settings: Settings) -> int:
    from .api import Api
    from .cli import EXIT_ERROR, EXIT_OK, _bar
    from .lifecycle_client import in_chunks

    api = Api(settings=settings)
    rows = _select(api, args.paths, args.filter)
    to = getattr(args, "to", None)
    if verb == "move":
        rows = [r for r in rows if r["project"] != to]
    if not rows:
        print(f"no runs to {verb}", file=_out())
        return EXIT_OK
    for line in plan_lines(verb, rows, to):
        print(line, file=_out())
    n = f"{len(rows)} run{'s' if len(rows) != 1 else ''}"
    question = f"Move {n} to {to!r}?" if verb == "move" else f"Delete {n}? This cannot be undone."
    if not _confirm(question, args.yes, f"{verb} {n}"):
        print(f"aborted: nothing {'moved' if verb == 'move' else 'deleted'}", file=_err())
        return EXIT_ERROR
    extra = {"project": to} if verb == "move" else {}
    with _bar(len(rows), verb) as bar:
        done = in_chunks(api, verb, rows, extra, bar.update)
    if verb == "move":
        print(f"moved {len(done)} run{'s' if len(done) != 1 else ''} to {rows[0]['entity']}/{to}", file=_out())
    else:
        purged = sum(int(d.get("purged") or 0) for d in done)
        print(f"deleted {len(done)} run{'s' if len(done) != 1 else ''} ({purged} events purged from the log)",
              file=_out())
    return EXIT_OK


def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    return _run("delete", args, settings)


def cmd_move(args: argparse.Namespace, settings: Settings) -> int:
    return _run("move", args, settings)


def add_lifecycle_commands(add: Callable[[str, Command, str], argparse.ArgumentParser]) -> None:
    """Register ``delete`` and ``move`` with the CLI's ``add(name, func, help)``."""
    for name, func, help in (("delete", cmd_delete, "delete runs for good (asks first; --yes skips)"),
                             ("move", cmd_move, "move runs to another project of the entity (asks first)")):
        sp = add(name, func, help)
        sp.add_argument("paths", nargs="+", metavar="PATH",
                        help="ENTITY/PROJECT/ID of each run, or one ENTITY/PROJECT with --filter")
        sp.add_argument("--filter", default=None, metavar="JSON",
                        help="the runs of ENTITY/PROJECT matching this MongoDB-style filter ('{}': all)")
        if name == "move":
            sp.add_argument("--to", required=True, metavar="PROJECT", help="the project to move them to")
        sp.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
