"""Many writers, one run: ``init(id=same, mode="shared", label=...)`` in several processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.sdk_helpers import env_with, one, project, python, run_uid, spawn

WRITER = """
    import sys
    import runstream
    rank = int(sys.argv[1]) if len(sys.argv) > 1 else {rank}
    run = runstream.init(entity={entity!r}, project="p", id="shared", mode="shared", label=f"rank{{rank}}",
                         config={{f"rank{{rank}}.seed": rank}})
    for step in range({steps}):
        run.log({{f"loss/rank{{rank}}": rank * 1e6 + step}})
    run.finish(exit_code={exit_code})
"""


@pytest.mark.slow
def test_eight_processes_one_run_every_row_once(rs_env: dict[str, str], tmp_path: Path,
                                                nats_server: object) -> None:
    import uuid

    entity = f"shared-{uuid.uuid4().hex[:8]}"
    env = env_with(rs_env)
    procs = [spawn(WRITER.format(rank=i, entity=entity, steps=1000, exit_code=0), env, tmp_path)
             for i in range(8)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    con = project(tmp_path, rs_env["RUNSTREAM_NATS_URL"])
    uid = run_uid(con, f"{entity}/p/shared")
    rows = con.execute("SELECT key, step, value FROM history WHERE run_uid = ? ORDER BY key, step", [uid]).fetchall()
    want = sorted((f"loss/rank{r}", s, r * 1e6 + s) for r in range(8) for s in range(1000))
    assert rows == want  # every row of every writer, exactly once
    assert one(con, "SELECT count(DISTINCT step) FROM history WHERE run_uid = ?", [uid]) == 1000
    writers = con.execute("SELECT label, \"primary\", state FROM run_writers WHERE run_uid = ? ORDER BY label",
                          [uid]).fetchall()
    assert [w[0] for w in writers] == [f"rank{r}" for r in range(8)]
    assert sum(1 for w in writers if w[1]) == 1 and {w[2] for w in writers} == {"finished"}
    assert one(con, "SELECT state FROM runs WHERE run_uid = ?", [uid]) == "finished"
    assert one(con, "SELECT last_step FROM runs WHERE run_uid = ?", [uid]) == 999
    cfg = dict(con.execute("SELECT key, value FROM config WHERE run_uid = ?", [uid]).fetchall())
    assert cfg == {f"rank{r}.seed": float(r) for r in range(8)}  # each writer's config merges in


def test_only_the_primary_writer_ends_the_run(rs_env: dict[str, str], tmp_path: Path) -> None:
    import uuid

    entity = f"shared-{uuid.uuid4().hex[:8]}"
    env = env_with(rs_env)
    # the primary starts, a secondary joins and fails, the primary finishes last
    primary = subprocess.Popen([sys.executable, "-u", "-c", textwrap.dedent(f"""
        import sys
        import runstream
        run = runstream.init(entity={entity!r}, project="q", id="s", mode="shared", label="primary")
        run.log({{"a": 1.0}})
        print("up", flush=True)
        sys.stdin.readline()
        run.log({{"a": 2.0}})
        run.finish()
    """)], env=env, cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert primary.stdout is not None
    assert primary.stdout.readline().strip() == "up"
    secondary = python(f"""
        import runstream
        run = runstream.init(entity={entity!r}, project="q", id="s", mode="shared", label="helper")
        run.log({{"b": 1.0}})
        run.finish(exit_code=3)
    """, env, tmp_path)
    assert secondary.returncode == 0, secondary.stderr
    con = project(tmp_path, rs_env["RUNSTREAM_NATS_URL"])
    uid = run_uid(con, f"{entity}/q/s")
    assert one(con, "SELECT state FROM runs WHERE run_uid = ?", [uid]) == "running"  # the helper's failure is its own
    con.close()
    out, err = primary.communicate("go\n", timeout=60)
    assert primary.returncode == 0, err
    con = project(tmp_path, rs_env["RUNSTREAM_NATS_URL"])
    assert one(con, "SELECT state FROM runs WHERE run_uid = ?", [uid]) == "finished"
    assert con.execute("SELECT label, \"primary\", state, exit_code FROM run_writers WHERE run_uid = ? ORDER BY label",
                       [uid]).fetchall() == [("helper", False, "failed", 3), ("primary", True, "finished", 0)]
