"""What the SDK prints: the run's name and path at start; history sparklines, summary and where the
files are at finish.

Rendering is pure: ``render_*`` functions take plain values and return text, so tests compare
exact strings. :class:`Console` is the one object that writes, to an injected file (default
``sys.stderr``, like W&B), and honours quiet mode (warnings are printed even when quiet).

Example of a finished run::

    runstream:
    runstream: Run history:
    runstream: accuracy ▁▃▅▆█
    runstream:     loss █▅▃▂▁
    runstream:
    runstream: Run summary:
    runstream: accuracy 0.93
    runstream:     loss 0.10532
    runstream:
    runstream: 🚀 View run earnest-sunset-17 at: nico/awesome-project/1jx1ud12
    runstream: Find logs at: runstream-runs/run-20250120_101106-1jx1ud12
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TextIO

PREFIX = "runstream:"
BARS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 40
"""Widest sparkline: longer histories are downsampled to this many characters."""
KEY_WIDTH = 40
"""Longer metric names are shortened in the middle so the columns stay readable."""
DEFAULT_WIDTH = 80


class RunInfo(NamedTuple):
    """What the console needs to know about a run.

    Attributes:
        name: the display name, e.g. ``"earnest-sunset-17"``.
        entity, project, id: the run's path parts; the path is ``entity/project/id``.
        dir: the run's local folder (spool, logs); printed relative to ``cwd`` when inside it.
        mode: ``"online"``, ``"offline"`` or ``"disabled"`` (prints nothing).
        cwd: the working directory to print ``dir`` relative to; ``None`` prints ``dir`` as given.
        pending: at finish, events still in the spool (not acknowledged): a warning says how to
            send them.
    """

    name: str
    entity: str
    project: str
    id: str
    dir: str | os.PathLike[str]
    mode: str = "online"
    cwd: str | os.PathLike[str] | None = None
    pending: int = 0
    web_url: str | None = None
    """The web app's base URL (``http://127.0.0.1:14280``): the run and project lines become links."""
    synced: tuple[int, int, int] | None = None
    """At finish: (run files, media files, artifact files) sent, for the closing ``Synced`` line."""

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}/{self.id}"

    @property
    def project_path(self) -> str:
        return f"{self.entity}/{self.project}"

    @property
    def run_link(self) -> str:
        """The run's web page, or its path when there is no web app to link to."""
        return run_url(self.web_url, self.entity, self.project, self.id) if self.web_url else self.path

    @property
    def project_link(self) -> str:
        return project_url(self.web_url, self.entity, self.project) if self.web_url else self.project_path

    def display_dir(self) -> str:
        """``dir`` relative to ``cwd`` when it lies inside it, else as given."""
        d = os.fspath(self.dir)
        if self.cwd is None:
            return d
        cwd = os.fspath(self.cwd)
        try:
            if os.path.commonpath([os.path.abspath(d), os.path.abspath(cwd)]) == os.path.abspath(cwd):
                return os.path.relpath(d, cwd)
        except ValueError:  # different drives, or a mix of absolute and relative paths
            pass
        return d


def project_url(base: str, entity: str, project: str) -> str:
    """The web app's page of a project (the workspace)."""
    from urllib.parse import quote

    return f"{base.rstrip('/')}/{quote(entity, safe='')}/{quote(project, safe='')}"


def run_url(base: str, entity: str, project: str, run_id: str) -> str:
    """The web app's page of a run."""
    from urllib.parse import quote

    return f"{project_url(base, entity, project)}/runs/{quote(run_id, safe='')}"


def lines(*texts: str) -> str:
    """Prefix each line with ``runstream:`` (a blank line gets the bare prefix, no trailing space)."""
    out = []
    for text in texts:
        for line in text.split("\n") if text else [""]:
            out.append(f"{PREFIX} {line}" if line else PREFIX)
    return "\n".join(out) + "\n"


def render_start(info: RunInfo) -> str:
    """The lines printed by ``init()``: run name and path, or where an offline run is saved."""
    if info.mode == "disabled":
        return ""
    if info.mode == "offline":
        d = info.display_dir()
        return lines(
            f"Offline run {info.name} ({info.path})",
            f"Run data is saved locally in {d}",
            f"Run `runstream sync {d}` to send it to the log",
        )
    if info.web_url:
        return lines(
            f"Syncing run {info.name}",
            f"⭐️ View project at {info.project_link}",
            f"🚀 View run at {info.run_link}",
        )
    return lines(
        f"Syncing run {info.name}",
        f"⭐️ View project at {info.project_path}",
        f"🚀 View run {info.name} ({info.path})",
    )


def render_finish(info: RunInfo, history: Mapping[str, Sequence[Any]], summary: Mapping[str, Any],
                  width: int = DEFAULT_WIDTH) -> str:
    """The lines printed by ``finish()``.

    Args:
        info: the run.
        history: metric name → logged values in step order. Keys starting with ``_`` and keys with
            no numeric value are left out; non-numeric values and NaN are drawn as spaces.
        summary: metric name → final value. Keys starting with ``_`` and values that are not
            scalars (dicts, lists, None) are left out.
        width: the terminal width; long string values are cut to fit.

    Returns:
        The text, ending with a newline; ``""`` for a disabled run.
    """
    if info.mode == "disabled":
        return ""
    parts: list[str] = []
    hist = render_history(history, width)
    summ = render_summary(summary, width)
    if hist:
        parts += ["", "Run history:", hist]
    if summ:
        parts += ["", "Run summary:", summ]
    parts.append("")
    d = info.display_dir()
    if info.mode == "offline":
        parts += ["You can sync this run by running:", f"runstream sync {d}"]
    else:
        parts.append(f"🚀 View run {info.name} at: {info.run_link}")
        if info.web_url:
            parts.append(f"⭐️ View project at: {info.project_link}")
    if info.synced is not None:
        files, media, artifacts = info.synced
        parts.append(f"Synced {files} file(s), {media} media file(s), {artifacts} artifact file(s)")
    parts.append(f"Find logs at: {d}")
    if info.pending > 0 and info.mode != "offline":
        parts.append(render_pending(info.pending, d))
    return lines(*parts)


def render_pending(pending: int, display_dir: str) -> str:
    """The warning for events still in the spool when ``finish()`` gave up waiting."""
    noun = "event is" if pending == 1 else "events are"
    return (f"WARNING {pending} {noun} still in the spool, not yet acknowledged by the log; "
            f"send them with `runstream sync {display_dir}`")


def render_warning(message: str) -> str:
    """``runstream: WARNING <message>``."""
    return lines(f"WARNING {message}")


def render_history(history: Mapping[str, Sequence[Any]], width: int = DEFAULT_WIDTH) -> str:
    """One sparkline per numeric key, keys sorted and right-aligned; ``""`` when there are none."""
    rows = [(k, v) for k, v in sorted(history.items()) if not k.startswith("_") and _any_number(v)]
    if not rows:
        return ""
    keys = [_short_key(k) for k, _ in rows]
    kw = max(map(len, keys))
    spark_w = max(8, min(SPARK_WIDTH, width - len(PREFIX) - 2 - kw))
    return "\n".join(f"{k:>{kw}} {sparkline(v, spark_w)}" for k, (_, v) in zip(keys, rows, strict=True))


def render_summary(summary: Mapping[str, Any], width: int = DEFAULT_WIDTH) -> str:
    """``key value`` per scalar summary entry, keys sorted and right-aligned; ``""`` when none."""
    rows = [(_short_key(k), v) for k, v in sorted(summary.items())
            if not k.startswith("_") and _is_scalar(v)]
    if not rows:
        return ""
    kw = max(len(k) for k, _ in rows)
    room = max(10, width - len(PREFIX) - 2 - kw)
    return "\n".join(f"{k:>{kw}} {format_value(v, room)}" for k, v in rows)


def format_value(value: Any, max_len: int = 40) -> str:
    """A summary value for the terminal: floats to 5 significant digits, strings on one line and cut."""
    if not isinstance(value, str) and hasattr(value, "item"):
        value = value.item()  # numpy scalar or 0-d array
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = f"{value:.5g}"
    else:
        text = " ".join(str(value).split())  # newlines, tabs → one space
    if len(text) > max_len:
        text = text[: max(1, max_len - 1)] + "…"
    return text


def sparkline(values: Sequence[Any], width: int = SPARK_WIDTH) -> str:
    """Draw ``values`` with ``▁▂▃▄▅▆▇█``, scaled from their minimum to their maximum.

    Histories longer than ``width`` are downsampled: each character is the mean of the finite
    values of its slice of the history. NaN and non-numeric values draw as a space, ``+inf`` as
    ``█`` and ``-inf`` as ``▁`` (infinities do not stretch the scale of the finite values). A
    constant series draws as ``▁``.
    """
    nums = [_as_float(v) for v in values]
    if width < 1 or not nums:
        return ""
    if len(nums) > width:
        nums = [_bucket(nums[len(nums) * i // width: len(nums) * (i + 1) // width]) for i in range(width)]
    finite = [v for v in nums if math.isfinite(v)]
    lo = min(finite, default=0.0)
    hi = max(finite, default=0.0)
    out = []
    for v in nums:
        if math.isnan(v):
            out.append(" ")
        elif v == math.inf:
            out.append(BARS[-1])
        elif v == -math.inf or hi == lo:
            out.append(BARS[0])
        else:
            out.append(BARS[min(len(BARS) - 1, int((v - lo) / (hi - lo) * (len(BARS) - 1) + 0.5))])
    return "".join(out)


class Console:
    """Writes the run's terminal output: the only object in the SDK that prints.

    Args:
        file: where to write (default: ``sys.stderr`` at the time of each write).
        width: terminal width (default: from the environment, 80 if unknown).
        quiet: print warnings only.
    """

    def __init__(self, file: TextIO | None = None, width: int | None = None, quiet: bool = False) -> None:
        self._file = file
        self.width = width
        self.quiet = quiet

    def _width(self) -> int:
        if self.width:
            return self.width
        try:
            import shutil

            return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns or DEFAULT_WIDTH
        except (OSError, ValueError):
            return DEFAULT_WIDTH

    def write(self, text: str) -> None:
        """Write ``text`` as is and flush; errors of a closed stream are ignored."""
        if not text:
            return
        f = self._file if self._file is not None else sys.stderr
        try:
            f.write(text)
            f.flush()
        except (OSError, ValueError):  # closed or broken stream at interpreter exit: nothing to tell
            pass

    def start(self, info: RunInfo) -> None:
        if not self.quiet:
            self.write(render_start(info))

    def finish(self, info: RunInfo, history: Mapping[str, Sequence[Any]], summary: Mapping[str, Any]) -> None:
        if not self.quiet:
            self.write(render_finish(info, history, summary, self._width()))
        elif info.pending > 0 and info.mode == "online":
            self.write(lines(render_pending(info.pending, info.display_dir())))

    def info(self, message: str) -> None:
        if not self.quiet:
            self.write(lines(message))

    def warn(self, message: str) -> None:
        self.write(render_warning(message))


def _as_float(v: Any) -> float:
    if isinstance(v, (str, bytes)):
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def _bucket(chunk: Iterable[float]) -> float:
    chunk = list(chunk)
    finite = [v for v in chunk if math.isfinite(v)]
    if finite:
        return math.fsum(finite) / len(finite)
    return next((v for v in chunk if not math.isnan(v)), math.nan)


def _any_number(values: Sequence[Any]) -> bool:
    return any(not math.isnan(_as_float(v)) for v in values)


def _is_scalar(v: Any) -> bool:
    return isinstance(v, (bool, int, float, str)) or (hasattr(v, "item") and getattr(v, "ndim", 0) == 0)


def _short_key(key: str) -> str:
    if len(key) <= KEY_WIDTH:
        return key
    head = (KEY_WIDTH - 1) // 2
    return key[:head] + "…" + key[-(KEY_WIDTH - 1 - head):]
