"""``runstream logs``: print a run's console lines; ``--follow`` prints new ones until the run ends.

Following polls the server's ``…/logs`` route with a cursor per writer. A writer's newest line may
still change (a progress bar, a line not finished yet), so it is printed once a later line of
that writer exists, or when the run has ended.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TextIO

POLL = 0.5
"""Seconds between polls while following."""


def print_logs(client: Any, url: str, out: TextIO, *, stream: str | None = None, follow: bool = False,
               poll: float = POLL, sleep: Callable[[float], None] = time.sleep) -> str:
    """Write the run's lines to ``out`` (following: until the run ends); return its last state."""
    cursors: dict[str, int] = {}
    first = True
    while True:
        params: dict[str, Any] = {"stream": stream, "fresh": first}
        if cursors:
            params["after"] = json.dumps(cursors)
        reply = client.json("GET", url, params)
        first = False
        state = str(reply.get("state"))
        lines = reply["lines"]
        done = not follow or state != "running"
        if not done:
            newest: dict[str, int] = {}
            for ln in lines:
                newest[ln["writer"]] = max(newest.get(ln["writer"], -1), ln["line"])
            lines = [ln for ln in lines if ln["line"] < newest[ln["writer"]]]
        for ln in lines:
            out.write(f"{ln['text']}\n")
            cursors[ln["writer"]] = max(cursors.get(ln["writer"], -1), ln["line"])
        out.flush()
        if done:
            return state
        sleep(poll)
