"""Pure text rendering of query results for the terminal: aligned tables, CSV, JSON, a run overview.

Nothing here prints; time zones are injected, so tests compare exact strings.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

__all__ = [
    "format_duration",
    "format_summary",
    "format_time",
    "format_value",
    "render_run",
    "render_table",
    "table_rows",
    "to_csv",
    "to_json",
]

ELLIPSIS = "…"


def format_time(value: dt.datetime | None, tz: dt.tzinfo | None = None) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in ``tz`` (default: the local zone); empty for None."""
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(tz)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def format_duration(seconds: float | None) -> str:
    """``0.25s``, ``42s``, ``3m 05s``, ``2h 03m 04s``, ``1d 02h 03m``; empty for None/NaN."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return ""
    if seconds < 10:
        return f"{seconds:.2g}s" if seconds < 1 else f"{seconds:.1f}s".replace(".0s", "s")
    total = int(round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def format_value(value: Any, tz: dt.tzinfo | None = None) -> str:
    """One cell: floats with 6 significant digits, times, lists and maps compactly; None empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.6g}"
    if isinstance(value, dt.datetime):
        return format_time(value, tz)
    if isinstance(value, dt.timedelta):
        return format_duration(value.total_seconds())
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {format_value(v, tz)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        # DuckDB MAPs arrive as lists of (key, value) pairs
        if value and all(isinstance(x, tuple) and len(x) == 2 for x in value):
            return "{" + ", ".join(f"{k}: {format_value(v, tz)}" for k, v in value) + "}"
        return "[" + ", ".join(format_value(v, tz) for v in value) + "]"
    return str(value)


def _clip(text: str, width: int) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: max(width - 1, 0)] + ELLIPSIS


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def render_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, max_col_width: int = 40,
                 tz: dt.tzinfo | None = None) -> str:
    """An aligned text table: a header, a rule of dashes, one line per row.

    Numbers are right-aligned, everything else left-aligned; cells longer than ``max_col_width``
    end in ``…``; trailing spaces are stripped. Cells that are already strings are used as is.
    """
    cells = [[_clip(v if isinstance(v, str) else format_value(v, tz), max_col_width) for v in row]
             for row in rows]
    header = [_clip(c, max_col_width) for c in columns]
    widths = [len(h) for h in header]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    right = [bool(rows) and all(_numeric(r[i]) or r[i] is None for r in rows) and
             any(_numeric(r[i]) for r in rows) for i in range(len(columns))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)]
        return "  ".join(parts).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out.extend(line(row) for row in cells)
    return "\n".join(out) + "\n"


def table_rows(table: pa.Table) -> tuple[list[str], list[tuple[Any, ...]]]:
    """An Arrow table as column names and Python row tuples."""
    columns = list(table.column_names)
    data = [col.to_pylist() for col in table.columns]
    return columns, list(zip(*data, strict=True)) if data else []


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def to_json(table: pa.Table) -> str:
    """A JSON array of row objects (times ISO 8601, NaN/inf as strings)."""
    columns, rows = table_rows(table)
    records = [{c: _jsonable(v) for c, v in zip(columns, row, strict=True)} for row in rows]
    return json.dumps(records, ensure_ascii=False, indent=2) + "\n"


def to_csv(table: pa.Table) -> str:
    """CSV with a header row (times ISO 8601, lists and maps as JSON)."""
    columns, rows = table_rows(table)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else json.dumps(_jsonable(v), ensure_ascii=False)
                         if isinstance(v, list | tuple | Mapping) else _jsonable(v) for v in row])
    return buf.getvalue()


def format_summary(items: Sequence[tuple[str, Any]] | None, *, max_items: int = 4) -> str:
    """``acc=0.9 loss=0.1 +2`` from (key, value) pairs; keys starting with ``_`` left out."""
    shown = [(k, v) for k, v in (items or []) if not k.startswith("_")]
    text = " ".join(f"{k}={format_value(v)}" for k, v in shown[:max_items])
    if len(shown) > max_items:
        text += f" +{len(shown) - max_items}"
    return text


def _block(title: str, items: Sequence[tuple[str, Any]], tz: dt.tzinfo | None) -> list[str]:
    if not items:
        return [title, "  (none)"]
    width = max(len(k) for k, _ in items)
    return [title, *(f"  {k.ljust(width)}  {_clip(format_value(v, tz), 100)}".rstrip() for k, v in items)]


def render_run(run: Mapping[str, Any], config: Sequence[tuple[str, Any]],
               summary: Sequence[tuple[str, Any]], tz: dt.tzinfo | None = None) -> str:
    """The ``runstream show`` overview of one ``runs`` row with its config and summary pairs."""
    state = str(run.get("state") or "")
    if run.get("exit_code") is not None:
        state += f" (exit code {run['exit_code']})"
    head: list[tuple[str, Any]] = [
        ("path", run.get("path")), ("name", run.get("name")), ("state", state),
        ("created", format_time(run.get("created_at"), tz)),
        ("heartbeat", format_time(run.get("heartbeat_at"), tz)),
        ("finished", format_time(run.get("finished_at"), tz)),
        ("runtime", format_duration(run.get("runtime"))),
        ("last step", run.get("last_step")),
    ]
    for key, label in (("tags", "tags"), ("notes", "notes"), ("group", "group"), ("job_type", "job type"),
                       ("mode", "mode")):
        if run.get(key):
            value = run[key]
            head.append((label, ", ".join(value) if isinstance(value, list) else value))
    if run.get("origin_kind"):
        step = run.get("origin_step")
        at = f" at step {format_value(step)}" if step is not None else ""
        kind = run["origin_kind"]
        if kind == "fork":
            parent = run.get("origin_path") or run.get("origin_run_uid")
            head.append(("origin", f"fork of {parent}{at} (depth {run.get('origin_depth') or 1})"))
        else:  # resume, rewind: of the run itself
            head.append(("origin", {"rewind": f"rewound{at}", "resume": "resumed"}.get(kind, kind)))
    head.append(("uid", run.get("run_uid")))
    width = max(len(k) for k, _ in head)
    lines = [f"{k.ljust(width)}  {format_value(v, tz)}".rstrip() for k, v in head if v not in (None, "")]
    lines.append("")
    lines += _block("config", config, tz)
    lines.append("")
    lines += _block("summary", summary, tz)
    metadata = run.get("metadata")
    if isinstance(metadata, str) and metadata:
        try:
            metadata = json.loads(metadata)
        except ValueError:
            metadata = {"metadata": metadata}
    if isinstance(metadata, Mapping) and metadata:
        lines.append("")
        lines += _block("metadata", sorted(metadata.items()), tz)
    return "\n".join(lines) + "\n"
