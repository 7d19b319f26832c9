"""Turning the outcomes of every task into figures (median, min–max, target, ratio) and a table.

Rendering is pure: it reads the report dict and returns text.
"""

from __future__ import annotations

import argparse
from typing import Any

from .figures import FIGURES, Figure
from .stats import summarize

LATER = {"9": "telemetry issue"}
STATUS_TEXT = {"not_built": "not built", "not_installed": "not installed", "n/a": "n/a", "error": "error"}


def _system_cell(fig: Figure, system: str, outcomes: list[dict[str, Any]]) -> dict[str, Any] | None:
    mine = [o for o in outcomes if o["system"] == system and fig.key in o.get("feeds", ())]
    if not mine:
        return None
    values = [o["figures"][fig.key] for o in mine if o["status"] == "ok" and fig.key in o.get("figures", {})]
    if values:
        return {"status": "ok", "values": values, **summarize(values)}
    bad = next((o for o in mine if o["status"] != "ok"), None)
    if bad is None:  # ran fine but had no such figure (e.g. no latency samples)
        return {"status": "error", "reason": "no value produced"}
    return {"status": bad["status"], "reason": bad.get("reason", "")}


def summarize_outcomes(outcomes: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    systems = list(dict.fromkeys(o["system"] for o in outcomes)) or list(args.systems)
    figures = []
    for fig in FIGURES:
        if fig.row not in args.rows:
            continue
        entry: dict[str, Any] = {
            "key": fig.key,
            "row": fig.row,
            "label": fig.label,
            "unit": fig.unit,
            "target": fig.target.text if fig.target else None,
            "systems": {},
        }
        if fig.later_issue:
            entry["systems"]["runstream"] = {"status": "not_built", "reason": LATER[fig.row]}
            figures.append(entry)
            continue
        for system in systems:
            cell = _system_cell(fig, system, outcomes)
            if cell is not None:
                entry["systems"][system] = cell
        rs = entry["systems"].get("runstream")
        peers_ok = {s: c["median"] for s, c in entry["systems"].items() if s != "runstream" and c["status"] == "ok"}
        if rs and rs["status"] == "ok":
            entry["ratio"] = {s: (rs["median"] / v if v else None) for s, v in peers_ok.items()}
            if fig.target is not None:
                entry["target_met"] = fig.target.met(rs["median"], peers_ok)
                entry["target_missed_by"] = fig.target.shortfalls(rs["median"], peers_ok)
        figures.append(entry)
    checks = []
    for o in outcomes:
        if o["status"] == "ok" and o.get("check") is not None:
            checks.append(
                {
                    "group": o["group"],
                    "system": o["system"],
                    "rep": o["rep"],
                    "ok": bool(o["check"]),
                    "detail": {
                        k: v
                        for k, v in o.get("metrics", {}).items()
                        if k
                        in (
                            "points",
                            "stored_points",
                            "distinct_points",
                            "lost",
                            "doubled",
                            "returned_steps",
                            "stored_steps",
                            "lost_steps",
                            "runs",
                            "runs_projected",
                            "stored_before",
                            "stored_after",
                            "shape",
                            "big_shape",
                            "peer_shape",
                            "matching",
                            "returned",
                            "big_matching",
                            "big_returned",
                            "big_good",
                            "peer_matching",
                            "peer_returned",
                            "peer_good",
                            "stream_replicas",
                            "victim",
                            "on_victim",
                            "server_exit",
                            "failures",
                            "unfinished",
                        )
                    },
                }
            )
    errors = [
        {"group": o["group"], "system": o["system"], "rep": o["rep"], "reason": o.get("reason")}
        for o in outcomes
        if o["status"] == "error"
    ]
    return {
        "figures": figures,
        "checks": checks,
        "checks_failed": sum(not c["ok"] for c in checks),
        "errors": errors,
    }


def fmt(v: float | None) -> str:
    if v is None:
        return "—"
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.2f}M"
    if a >= 1e4:
        return f"{v / 1e3:.1f}k"
    if a >= 100 or v == int(v):
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 0.1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def _cell_text(cell: dict[str, Any], unit: str) -> str:
    if cell["status"] != "ok":
        text = STATUS_TEXT.get(cell["status"], cell["status"])
        return f"{text} ({cell['reason']})" if cell.get("reason") else text
    if cell["n"] == 1:
        return f"{fmt(cell['median'])} {unit}"
    return f"{fmt(cell['median'])} ({fmt(cell['min'])}–{fmt(cell['max'])}) {unit}"


def render(report: dict[str, Any]) -> str:
    meta = report.get("meta", {})
    lines = [
        f"runstream benchmark — {meta.get('reps')} rep(s), {'quick' if meta.get('quick') else 'full'} sizes, "
        f"{meta.get('cpus')} CPUs, Python {meta.get('python')}; median (min–max) over repetitions",
        f"sizes: {meta.get('sizes')}",
        "",
        f"{'#':>3}  {'figure':<52} {'system':<14} {'median (min–max)':<34} {'target':<30} rs/peer",
        "-" * 150,
    ]
    missed = []
    for f in report["figures"]:
        first = True
        for system, cell in f["systems"].items():
            row = f["row"] if first else ""
            label = f["label"] if first else ""
            text = _cell_text(cell, f["unit"])
            target = ""
            ratio = ""
            if system == "runstream" and f.get("target"):
                target = f["target"]
                if "target_met" in f:
                    target += "  ✓" if f["target_met"] else "  ✗ missed"
                    if not f["target_met"]:
                        missed.append(
                            f"row {f['row']}: {f['label']} = {fmt(cell['median'])} {f['unit']} "
                            f"(target {f['target']}: {'; '.join(f.get('target_missed_by') or [])})"
                        )
            if system != "runstream" and f.get("ratio", {}).get(system) is not None:
                ratio = f"{f['ratio'][system]:.3g}"
            if len(text) > 34 and cell["status"] != "ok":
                text = text[:33] + "…"
            lines.append(f"{row:>3}  {label:<52} {system:<14} {text:<34} {target:<30} {ratio}")
            first = False
    lines.append("-" * 150)
    lines.append(
        "Peers: W&B offline (its .wandb file), MLflow with a local SQLite store and with the file store, "
        "Aim (local repo). Peer sizes are smaller where they are slow; per-step and per-point figures "
        "compare."
    )
    lines.append(
        "Row 2 stops the clock only when a SQL count over the run returns every logged row (peers: when "
        "their finish returned); latency is an upper bound by one poll interval."
    )
    lines.append(
        "Row 12: a 3-node NATS cluster on loopback (deploy/nats/, streams R3) and one server, vs the embedded "
        "stack, same writers; then one paced trainer per node and the event stream's leader SIGKILLed a third "
        "of the way in: the longest log() afterwards of the trainer connected to it (per its /connz), and how "
        "long until the server has every row logged before the kill, and every row (polled every 50 ms)."
    )
    if missed:
        lines.append("")
        lines.append(f"TARGETS MISSED ({len(missed)}):")
        lines.extend(f"  - {m}" for m in missed)
    checks = report.get("checks", [])
    failed = [c for c in checks if not c["ok"]]
    lines.append("")
    lines.append(
        f"self-checks (rows stored == rows logged, counted only once queryable; reads: shape and the "
        f"filtered set, in order): "
        f"{len(checks) - len(failed)}/{len(checks)} passed"
    )
    for c in failed:
        lines.append(f"  FAILED: {c['group']} / {c['system']} rep {c['rep'] + 1}: {c['detail']}")
    for e in report.get("errors", []):
        lines.append(f"  error: {e['group']} / {e['system']} rep {e['rep'] + 1}: {str(e['reason'])[:300]}")
    return "\n".join(lines)
