"""``runstream files ENTITY/PROJECT/ID [--download DIR]``: a run's Files list, or all of them
downloaded (through the server's HTTP API, like :class:`runstream.Api`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from .settings import Settings


def files_table(files: list[Any]) -> str:
    """The Files list as text: name, size, sha256 (first 12), policy (pure)."""
    if not files:
        return "no files\n"
    width = max(len("name"), *(len(f.name) for f in files))
    lines = [f"{'name':<{width}}  {'size':>12}  {'sha256':<12}  policy"]
    lines += [f"{f.name:<{width}}  {f.size:>12}  {f.sha256[:12]:<12}  {f.policy or ''}" for f in files]
    return "\n".join(lines) + "\n"


def cmd_files(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from .api import Api

    run = Api(settings=settings).run(args.path)
    files = run.files()
    if args.download is None:
        print(files_table(files), end="", file=out)
        return 0
    from .errors import UsageError

    skipped = 0
    for f in files:
        try:
            dest = f.download(args.download)
        except UsageError as e:  # a name no download may write (a forged event); the rest still come
            skipped += 1
            print(f"runstream: skipped {f.name!r}: {e}", file=sys.stderr)
            continue
        print(f"{f.name} → {dest}", file=out)
    print(f"{len(files) - skipped} file(s) downloaded to {args.download}"
          + (f"; {skipped} skipped (unsafe names, see above)" if skipped else ""), file=out)
    return 0
