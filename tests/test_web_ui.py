"""The web app in a real headless Chromium (Debian's ``chromium`` driven by Playwright) against a real
``runstream server`` subprocess, NATS and DuckDB: home, workspace (search, filter, sort, group,
charts; moving and deleting selected runs, refusals shown), the run page (notes and tags persisted
through a replay; System, Logs, Files and Artifacts tabs; a fork's inherited segment and a rewound
run's branches), live updates of a run logging in another process (down to it turning crashed, or
killed from the Stop button), the SQL page, and an XSS battery.

Every page fails its test on a JavaScript dialog, an uncaught error or a console error (a CSP
violation is one). Screenshots go to build/screenshots/ (``make screenshots``: docs/screenshots/, the
README's). Without Chromium the module is skipped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runstream.broker import NatsServer
from runstream.query.server import read_http_url
from tests.query_helpers import start_server, unique

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(os.environ.get("RUNSTREAM_SCREENSHOTS")
             or Path(__file__).resolve().parent.parent / "build" / "screenshots")
"""Where the tests save their screenshots: ``build/screenshots`` (ignored by git); ``make
screenshots`` points it at ``docs/screenshots``, the ones the README shows."""
XSS_NAME = "<img src=x onerror=alert(1)>"
XSS_TAGS = ["<script>alert(2)</script>", "javascript:alert(3)"]
XSS_NOTES = '<a href="javascript:alert(4)">click</a><img src=x onerror=alert(5)>'
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("browser tests need Debian's chromium at /usr/bin/chromium: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need playwright (the dev extra: pip install -e '.[dev]')")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def site(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A server subprocess and two seeded projects: ``ws`` (four runs) and ``xss`` (hostile strings)."""
    import runstream

    base = tmp_path_factory.mktemp("webui")
    env = {"RUNSTREAM_NATS_URL": nats_server.url, "RUNSTREAM_DIR": str(base / "data"),
           "RUNSTREAM_RUN_DIR": str(base / "work"), "RUNSTREAM_QUIET": "1", "RUNSTREAM_HTTP_PORT": "0",
           "RUNSTREAM_HEARTBEAT_INTERVAL": "0.5", "RUNSTREAM_CRASH_TIMEOUT": "3",
           # seeded runs record exactly what the tests give them (the tele run turns the console on)
           "RUNSTREAM_CONSOLE": "off", "RUNSTREAM_DISABLE_STATS": "1", "RUNSTREAM_CODE_SNAPSHOT": "0"}
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)
    srv = start_server(nats_server, base, {**os.environ, **env})
    mp.setenv("RUNSTREAM_SERVER_NAME", srv.name)
    url = read_http_url(srv.dir, srv.proc.pid)
    assert url
    entity = unique("web")
    seeded = (("alpha-1", 0.1, "adam", ["baseline"], None, 0), ("alpha-2", 0.01, "sgd", [], None, 0),
              ("beta-1", 0.001, "adam", [], "g", 1), ("beta-2", 0.05, "sgd", ["sweep"], "g", 0))
    for name, lr, opt, tags, group, code in seeded:
        run = runstream.init(entity=entity, project="ws", id=name, name=name, config={"lr": lr, "opt": opt},
                             tags=tags, group=group, job_type="train")
        for i in range(30):
            run.log({"train/loss": lr * (30 - i), "val/acc": i / 30, "lr": lr})
        run.finish(exit_code=code)
    run = runstream.init(entity=entity, project="xss", id="evil", name=XSS_NAME, tags=XSS_TAGS, notes=XSS_NOTES,
                         config={"<b>key</b>": "<i>value</i>"})
    for i in range(3):
        run.log({"<svg onload=alert(6)>": float(i)})
    run.finish()
    _seed_lineage(entity)
    full_env = {**os.environ, **env, "RUNSTREAM_SERVER_NAME": srv.name}
    work = base / "tele"
    work.mkdir()
    subprocess.run([sys.executable, "-c", TELE_CHILD, entity], env={**full_env, "RUNSTREAM_CONSOLE": "auto"},
                   cwd=work, check=True, capture_output=True, timeout=120)
    yield {"url": url, "entity": entity, "srv": srv, "env": full_env, "base": base}
    mp.undo()
    assert srv.stop() == 0, srv.log.read_text()


def _seed_lineage(entity: str) -> None:
    """Project ``lineage``: ``base`` (steps 0-9), ``forked`` from it at step 4 (own steps 5-7), and
    ``rew`` (steps 0-9) rewound to step 5 (new steps 6-7), so its first branch is archived."""
    import runstream

    run = runstream.init(entity=entity, project="lineage", id="base", name="base")
    for i in range(10):
        run.log({"loss": float(10 - i)})
    run.finish()
    run = runstream.init(entity=entity, project="lineage", id="forked", name="forked", fork_from="base?_step=4")
    for v in (0.5, 0.4, 0.3):
        run.log({"loss": v})
    run.finish()
    run = runstream.init(entity=entity, project="lineage", id="rew", name="rew")
    for i in range(10):
        run.log({"loss": float(10 - i)})
    run.finish()
    run = runstream.init(entity=entity, project="lineage", resume_from="rew?_step=5")
    for v in (20.0, 21.0):
        run.log({"loss": v})
    run.finish()


TELE_NOTES = "<script>alert(7)</script>\nsecond line: <b>not bold</b>\n"
# a run with console output, system samples, files and artifacts (console on, in its own process);
# the system samples are spooled the way the sampler spools them, with known values
TELE_CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import runstream
    entity = sys.argv[1]
    Path("digits.csv").write_text("x,y\\n1,2\\n")
    maker = runstream.init(entity=entity, project="tele", id="maker", name="maker")
    art = runstream.Artifact("digits", type="dataset", description="two digits")
    art.add_file("digits.csv")
    maker.log_artifact(art, aliases=["best"])
    maker.finish()
    run = runstream.init(entity=entity, project="tele", id="tele", name="tele")
    run.use_artifact("digits:latest")
    print("epoch 0 loss 0.5")
    print("epoch 1 loss 0.25")
    print("<b>not bold</b> warning", file=sys.stderr)
    t0 = time.time()
    run._append_aside("system", {"samples": [
        {"ts": t0 + i, "values": {"system.cpu": 10.0 + i, "system.gpu.0.temp": 40.0 + i, "system.gpu.1.temp": 50.0 + i,
                                  "system.proc.memory.rssMB": 100.0 + i}} for i in range(5)]})
    Path("notes.txt").write_text(%r)
    Path("weights.bin").write_bytes(bytes(range(256)) * 4)
    run.save("notes.txt", policy="now")
    run.save("weights.bin", policy="now")
    model = runstream.Artifact("model", type="model")
    model.add_file("weights.bin")
    model.add_reference("s3://bucket/raw.tar")
    run.log_artifact(model, aliases=["best"])
    run.log({"loss": 0.25})
    run.finish()
""") % TELE_NOTES


@pytest.fixture
def allowed_console() -> list[str]:
    """Console errors a test expects (substrings), e.g. the browser's note on a refused request."""
    return []


@pytest.fixture
def page(browser: Any, allowed_console: list[str]) -> Iterator[Any]:
    """A fresh browser context; any dialog, uncaught error or unexpected console error fails the test."""
    context = browser.new_context(viewport={"width": 1500, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    problems: list[str] = []
    pg.on("dialog", lambda d: (problems.append(f"dialog {d.type}: {d.message}"), d.dismiss()))
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    yield pg
    context.close()
    problems = [p for p in problems if not any(a in p for a in allowed_console)]
    assert not problems, problems


def _shot(pg: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / name), full_page=False)


def _rows(pg: Any) -> list[str]:
    return pg.locator("#runs-table tbody tr.run:not([hidden]) td[data-col=name] a.run-link").all_inner_texts()


def test_home_lists_projects(site: dict[str, Any], page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(site["url"] + "/")
    section = page.locator(f"section.entity[data-entity='{site['entity']}']")
    expect(section.locator("h2")).to_have_text(site["entity"])
    ws = section.locator("tr[data-project=ws]")
    expect(ws.locator("td").nth(1)).to_have_text("4")
    ws.locator("a").click()
    expect(page.locator("#run-count")).to_have_text("4 runs")


def test_workspace_search_filter_sort_group_and_charts(site: dict[str, Any], page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(f"{site['url']}/{site['entity']}/ws")
    expect(page.locator("#run-count")).to_have_text("4 runs")
    assert sorted(_rows(page)) == ["alpha-1", "alpha-2", "beta-1", "beta-2"]
    expect(page.locator("tr[data-run=beta-1] .badge")).to_have_text("failed")
    expect(page.locator("tr[data-run=alpha-1] td[data-col=tags]")).to_have_text("baseline")
    expect(page.locator("#charts-title")).to_have_text("Charts (4 visualized)")
    expect(page.locator("details[data-section=train] .chart[data-key='train/loss'] .main-svg").first).to_be_visible()
    expect(page.locator("details[data-section=val]")).to_be_visible()
    _shot(page, "workspace.png")

    page.fill("#search", "^alpha")
    expect(page.locator("#run-count")).to_have_text("2 runs")
    assert sorted(_rows(page)) == ["alpha-1", "alpha-2"]
    page.fill("#search", "")
    expect(page.locator("#run-count")).to_have_text("4 runs")

    page.fill("#filter-field", "config.lr")
    page.select_option("#filter-op", "<")
    page.fill("#filter-value", "0.05")
    page.click("#filter-add")
    expect(page.locator("#run-count")).to_have_text("2 runs")
    expect(page.locator("#filter-chips .chip")).to_have_text("config.lr < 0.05×")
    page.click("#filter-chips .chip button")
    expect(page.locator("#run-count")).to_have_text("4 runs")

    page.click("th[data-col=name]")  # descending first
    expect(page.locator("th[data-col=name]")).to_have_attribute("aria-sort", "descending")
    expect(page.locator("#runs-table tbody tr.run").first).to_have_attribute("data-run", "beta-2")
    assert _rows(page) == ["beta-2", "beta-1", "alpha-2", "alpha-1"]
    page.click("th[data-col=name]")
    expect(page.locator("#runs-table tbody tr.run").first).to_have_attribute("data-run", "alpha-1")

    page.select_option("#add-column", "config.lr")
    expect(page.locator("tr[data-run=beta-1] td[data-col='config.lr']")).to_have_text("0.001")
    page.select_option("#group-by", "config.opt")
    expect(page.locator("tr.group-row")).to_have_count(2)
    expect(page.locator("tr.group-row[data-group=adam]")).to_contain_text("config.opt: adam 2 runs")
    assert _rows(page) == []  # groups start collapsed
    page.click("tr.group-row[data-group=sgd] button.toggle")
    assert sorted(_rows(page)) == ["alpha-2", "beta-2"]
    # grouped charts: per group a min-max band (two fill traces) and a mean line
    chart = page.locator(".chart[data-key='train/loss']")
    page.wait_for_function("el => el.data && el.data.length === 6", arg=chart.element_handle())
    names = chart.evaluate("el => el.data.filter(t => t.showlegend !== false).map(t => t.name)")
    assert sorted(names) == ["adam (2)", "sgd (2)"]

    page.select_option("#group-by", "")
    page.locator("tr[data-run=alpha-1] input.visible").uncheck()
    expect(page.locator("#charts-title")).to_have_text("Charts (3 visualized)")
    page.locator("tr[data-run=alpha-2] input.select").check()
    page.locator("tr[data-run=beta-2] input.select").check()
    expect(page.locator("#selected-count")).to_have_text("2 selected")
    page.fill("#bulk-tag", "picked")
    page.click("#bulk-add-tag")
    expect(page.locator("tr[data-run=alpha-2] td[data-col=tags]")).to_have_text("picked")
    expect(page.locator("tr[data-run=beta-2] td[data-col=tags]")).to_have_text("sweeppicked")


def _seed(entity: str, project: str, *ids: str, fork_of: str | None = None) -> None:
    """Short finished runs ``ids`` in ``entity/project`` (three steps each; with ``fork_of``, forked
    from that run of the project at step 1)."""
    import runstream

    for run_id in ids:
        fork = f"{fork_of}?_step=1" if fork_of else None
        run = runstream.init(entity=entity, project=project, id=run_id, name=run_id, fork_from=fork)
        for i in range(3):
            run.log({"loss": 1.0 / (i + 1)})
        run.finish()


def _select(pg: Any, *run_ids: str) -> None:
    for run_id in run_ids:
        pg.locator(f"tr[data-run='{run_id}'] input.select").check()


def test_move_selected_runs_to_another_project(site: dict[str, Any], page: Any, allowed_console: list[str]) -> None:
    from playwright.sync_api import expect

    allowed_console.append("status of 400 (Bad Request)")  # the illegal project name below, on purpose
    # a chart or live-update fetch of a moved run's old path that was already on its way when the
    # move landed answers 404 (the path is gone); the page then redraws from the new list
    allowed_console.append("status of 404 (Not Found)")
    e = site["entity"]
    _seed(e, "mv", "m-1", "m-2", "m-3")
    page.goto(f"{site['url']}/{e}/mv")
    expect(page.locator("#run-count")).to_have_text("3 runs")
    _select(page, "m-1", "m-2")
    page.click("#bulk-move")
    expect(page.locator("#confirm-runs li")).to_have_text([f"m-2 {e}/mv/m-2", f"m-1 {e}/mv/m-1"])  # table order
    page.fill("#move-project", "bad/name")
    page.click("#confirm-move")
    expect(page.locator("#action-msg.error")).to_contain_text("Could not move: cannot move to project 'bad/name'")
    expect(page.locator("#run-count")).to_have_text("3 runs")  # nothing moved

    page.fill("#move-project", "mv-archive")
    page.press("#move-project", "Enter")
    expect(page.locator("#action-msg")).to_have_text("Moved 2 runs to mv-archive.")
    expect(page.locator("#run-count")).to_have_text("1 run")
    assert _rows(page) == ["m-3"]
    expect(page.locator("#bulk")).to_be_hidden()  # the moved runs left the selection
    page.click("#moved-to")
    expect(page.locator("#run-count")).to_have_text("2 runs")
    assert sorted(_rows(page)) == ["m-1", "m-2"]
    assert page.request.get(f"{site['url']}/api/runs/{e}/mv/m-1").status == 404


def test_delete_asks_first_and_cancelling_deletes_nothing(site: dict[str, Any], page: Any) -> None:
    from playwright.sync_api import expect

    e = site["entity"]
    _seed(e, "del", "d-1", "d-2")
    page.goto(f"{site['url']}/{e}/del")
    expect(page.locator("#run-count")).to_have_text("2 runs")
    _select(page, "d-1")
    page.click("#bulk-delete")
    confirm = page.locator("#bulk-confirm")
    expect(confirm).to_contain_text("Delete 1 run? This cannot be undone.")
    expect(confirm).to_contain_text("can only be deleted together with its forks")
    expect(page.locator("#confirm-runs li")).to_have_text([f"d-1 {e}/del/d-1"])
    _shot(page, "workspace-delete.png")
    page.click("#confirm-cancel")
    expect(confirm).to_be_hidden()
    page.reload()
    expect(page.locator("#run-count")).to_have_text("2 runs")  # cancelled: nothing deleted

    _select(page, "d-1")
    page.click("#bulk-delete")
    page.click("#confirm-delete")
    expect(page.locator("#action-msg")).to_have_text("Deleted 1 run.")
    expect(page.locator("#run-count")).to_have_text("1 run")
    assert _rows(page) == ["d-2"]
    assert page.request.get(f"{site['url']}/api/runs/{e}/del/d-1").status == 404


def test_deleting_a_parent_without_its_fork_is_refused(site: dict[str, Any], page: Any,
                                                       allowed_console: list[str]) -> None:
    from playwright.sync_api import expect

    allowed_console.append("status of 409 (Conflict)")  # the refusal, on purpose
    e = site["entity"]
    _seed(e, "fam", "parent")
    _seed(e, "fam", "child", fork_of="parent")
    page.goto(f"{site['url']}/{e}/fam")
    expect(page.locator("#run-count")).to_have_text("2 runs")
    _select(page, "parent")
    page.click("#bulk-delete")
    page.click("#confirm-delete")
    expect(page.locator("#action-msg.error")).to_contain_text(
        f"Could not delete: refusing to delete runs whose forks read their history: {e}/fam/parent has fork "
        f"{e}/fam/child")
    expect(page.locator("#confirm-delete")).to_be_enabled()  # still asking: select the fork too, or cancel
    assert sorted(_rows(page)) == ["child", "parent"]

    _select(page, "child")  # a different selection: the confirmation closes, ask again
    expect(page.locator("#bulk-confirm")).to_be_hidden()
    page.click("#bulk-delete")
    expect(page.locator("#confirm-runs li")).to_have_count(2)
    page.click("#confirm-delete")
    expect(page.locator("#action-msg")).to_have_text("Deleted 2 runs.")
    expect(page.locator("#run-count")).to_have_text("0 runs")


def test_run_page_edits_persist_through_replay(site: dict[str, Any], page: Any) -> None:
    from playwright.sync_api import expect

    from runstream.cli import main as cli_main

    url = f"{site['url']}/{site['entity']}/ws/runs/alpha-1"
    page.goto(url)
    expect(page.locator("#run-name")).to_have_text("alpha-1")
    expect(page.locator("#run-state .badge")).to_have_text("finished")
    expect(page.locator("[data-field=path] td")).to_have_text(f"{site['entity']}/ws/alpha-1")
    expect(page.locator("[data-field=python] td")).to_have_text(".".join(map(str, sys.version_info[:3])))
    expect(page.locator("[data-field=host] td")).not_to_be_empty()
    expect(page.locator("#config-table tr[data-key=opt] td")).to_have_text("adam")
    expect(page.locator("#summary-table tr[data-key='train/loss'] td")).to_have_text("0.1")
    expect(page.locator("#lineage")).to_have_text("not forked or rewound")
    expect(page.locator("#stop-run")).to_be_hidden()  # finished runs cannot be stopped

    page.fill("#notes", "the reference run")
    page.click("#notes-save")
    expect(page.locator("#notes-msg")).to_have_text("Saved.")
    page.fill("#tag-input", "keeper")
    page.press("#tag-input", "Enter")
    expect(page.locator("#tags [data-tag=keeper]")).to_be_visible()
    page.click("#tags [data-tag=baseline] button")
    expect(page.locator("#tags .tag")).to_have_count(1)
    _shot(page, "run-overview.png")

    env = site["env"]
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert cli_main(["replay"]) == 0
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    page.reload()
    expect(page.locator("#notes")).to_have_value("the reference run")
    expect(page.locator("#tags .tag")).to_have_text(["keeper×"])

    page.click("[data-tab=charts]")
    chart = page.locator(".chart[data-key='train/loss']")
    page.wait_for_function("el => el.data && el.data[0].x.length === 30", arg=chart.element_handle())
    page.click("#log-scale")
    page.wait_for_function("el => el.layout.yaxis.type === 'log'", arg=chart.element_handle())
    _shot(page, "run-charts.png")


LIVE_CHILD = textwrap.dedent("""
    import os, sys
    import runstream
    run = runstream.init(entity=sys.argv[1], project="live", id="runner", name="runner")
    for i in range(5):
        run.log({"loss": 1.0 / (i + 1)})
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(5, 10):
        run.log({"loss": 1.0 / (i + 1)})
    print("logged", flush=True)
    sys.stdin.readline()
    os._exit(1)  # no finish: the heartbeats stop and the server marks the run crashed
""")


def test_live_run_charts_state_and_crash(site: dict[str, Any], page: Any) -> None:
    from playwright.sync_api import expect

    child = subprocess.Popen([sys.executable, "-c", LIVE_CHILD, site["entity"]], env=site["env"], text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=site["base"])
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "ready"
        page.goto(f"{site['url']}/{site['entity']}/live/runs/runner#charts")
        expect(page.locator("#run-state .badge")).to_have_text("running")
        expect(page.locator("#stop-run")).to_be_enabled()  # the stop endpoint exists
        chart = page.locator(".chart[data-key=loss]")
        page.wait_for_function("el => el.data && el.data[0].x.length === 5", arg=chart.element_handle())
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "logged"
        page.wait_for_function("el => el.data && el.data[0].x.length === 10 && el.data[0].x[9] === 9",
                               arg=chart.element_handle())
        child.stdin.write("crash\n")
        child.stdin.flush()
        assert child.wait(30) == 1
        expect(page.locator("#run-state .badge")).to_have_text("crashed", timeout=60_000)
        # a crashed run has both a Duration (time running) and a Runtime (wall clock), as the API says
        run = _get(site, f"/api/runs/{site['entity']}/live/runner?fresh=true")
        page.goto(f"{site['url']}/{site['entity']}/live/runs/runner")
        expect(page.locator("#duration")).to_have_text(_fmt_duration(run["runtime"]))
        expect(page.locator("#runtime")).to_have_text(_fmt_duration(_wall_clock(run)))
        assert page.locator("#duration").inner_text() != ""
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=30)  # closes the pipes


def test_sql_page_query_error_and_download(site: dict[str, Any], page: Any, allowed_console: list[str]) -> None:
    from playwright.sync_api import expect

    allowed_console.append("status of 403 (Forbidden)")  # the sandbox refuses COPY, on purpose
    page.goto(site["url"] + "/sql")
    page.fill("#sql", f"SELECT run_id, state FROM runs WHERE entity = '{site['entity']}' AND project = 'ws' "
                      "ORDER BY run_id")
    page.click("#run-sql")
    expect(page.locator("#result-table tbody tr")).to_have_count(4)
    expect(page.locator("#result-table thead th")).to_have_text(["run_id", "state"])
    expect(page.locator("#result-table tbody tr").nth(2).locator("td")).to_have_text(["beta-1", "failed"])
    expect(page.locator("#sql-status")).to_contain_text("4 rows")
    with page.expect_download() as info:
        page.click("#download-csv")
    text = Path(info.value.path()).read_text()
    assert text.splitlines()[0] == '"run_id","state"' and '"beta-1","failed"' in text
    page.fill("#sql", "COPY runs TO '/tmp/x.csv'")
    page.press("#sql", "Control+Enter")
    expect(page.locator("#sql-error")).to_contain_text("no files, network, extensions or settings")


def test_xss_battery_renders_text_and_runs_no_script(site: dict[str, Any], page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(f"{site['url']}/{site['entity']}/xss")
    name = page.locator("tr[data-run=evil] td[data-col=name] a")
    expect(name).to_have_text(XSS_NAME)
    expect(page.locator("tr[data-run=evil] td[data-col=tags] .tag")).to_have_text(XSS_TAGS)
    chart = page.locator(".chart").first
    page.wait_for_function("el => el.data && el.data.length === 1", arg=chart.element_handle())
    expect(chart.locator(".gtitle")).to_have_text("<svg onload=alert(6)>")

    page.goto(f"{site['url']}/{site['entity']}/xss/runs/evil")
    expect(page.locator("#run-name")).to_have_text(XSS_NAME)
    expect(page.locator("#notes")).to_have_value(XSS_NOTES)
    expect(page.locator("#tags .tag")).to_have_text([t + "×" for t in XSS_TAGS])
    expect(page.locator("#config-table tr th")).to_have_text("<b>key</b>")
    expect(page.locator("#config-table tr td")).to_have_text("<i>value</i>")
    page.click("[data-tab=charts]")
    page.wait_for_function("() => document.querySelectorAll('.chart .main-svg').length > 0")
    injected = page.evaluate("""() => ({
        imgs: document.querySelectorAll('img').length,
        scripts: [...document.scripts].filter(s => !s.src).length,
        handlers: [...document.querySelectorAll('*')]
            .filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
        jsLinks: [...document.querySelectorAll('a')]
            .filter(a => /^\\s*javascript:/i.test(a.getAttribute('href') || '')).length,
        bold: document.querySelectorAll('#main b, #main i, #main svg[onload]').length,
    })""")
    assert injected == {"imgs": 0, "scripts": 0, "handlers": 0, "jsLinks": 0, "bold": 0}


def test_run_tabs_empty_states_say_what_to_do(site: dict[str, Any], page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(f"{site['url']}/{site['entity']}/ws/runs/alpha-2#files")
    expect(page.locator("#files-empty")).to_contain_text('Save some with run.save("model.pt")')
    page.click("[data-tab=artifacts]")
    expect(page.locator("#artifacts-output-empty")).to_contain_text("run.log_artifact(")
    expect(page.locator("#artifacts-input-empty")).to_contain_text('run.use_artifact("mnist:latest")')
    page.click("[data-tab=logs]")
    expect(page.locator("#logs-empty")).to_contain_text("RUNSTREAM_CONSOLE=off")
    page.click("[data-tab=system]")
    expect(page.locator("#system-empty")).to_contain_text("RUNSTREAM_STATS_INTERVAL")


def test_system_logs_files_and_artifacts_tabs(site: dict[str, Any], page: Any) -> None:
    from playwright.sync_api import expect

    base = f"{site['url']}/{site['entity']}/tele/runs/tele"
    page.goto(base + "#system")
    expect(page.locator("#system-status")).to_have_text("5 samples")
    gpu = page.locator(".chart[data-key='gpu/system.gpu.*.temp']")
    page.wait_for_function("el => el.data && el.data.length === 2", arg=gpu.element_handle())
    traces = gpu.evaluate("el => el.data.map(t => [t.name, t.y])")
    assert traces == [["#0", [40, 41, 42, 43, 44]], ["#1", [50, 51, 52, 53, 54]]]
    expect(page.locator(".chart[data-key='cpu/system.cpu']")).to_be_visible()
    expect(page.locator(".chart[data-key='proc/system.proc.memory.rssMB']")).to_be_visible()
    expect(page.locator("details[data-section=gpu]")).to_be_visible()
    _shot(page, "run-system.png")

    page.click("[data-tab=logs]")
    lines = page.locator("#log-lines .log-line")
    expect(lines).to_have_text(["epoch 0 loss 0.5", "epoch 1 loss 0.25", "<b>not bold</b> warning"])
    expect(page.locator("#log-lines .log-line.stderr")).to_have_text("<b>not bold</b> warning")
    page.fill("#log-search", "EPOCH")
    expect(page.locator("#log-count")).to_have_text("2 of 3 lines match")
    expect(lines).to_have_count(2)
    page.fill("#log-search", "")
    expect(lines).to_have_count(3)
    _shot(page, "run-logs.png")
    with page.expect_download() as info:
        page.click("#log-download")
    assert info.value.suggested_filename == "tele-output.log"
    assert Path(info.value.path()).read_text() == "epoch 0 loss 0.5\nepoch 1 loss 0.25\n<b>not bold</b> warning\n"

    page.click("[data-tab=files]")
    expect(page.locator("#files-table tbody tr")).to_have_count(2)
    expect(page.locator("tr[data-file='weights.bin'] td").nth(1)).to_have_text("1.0 KB")
    page.click("tr[data-file='notes.txt'] a.preview")
    expect(page.locator("#preview-text")).to_have_text(TELE_NOTES)  # the markup stays text
    _shot(page, "run-files.png")
    page.click("tr[data-file='weights.bin'] a.preview")
    expect(page.locator("#preview-note")).to_contain_text("Not a text file")
    with page.expect_download() as info:
        page.click("tr[data-file='notes.txt'] button.download")
    assert info.value.suggested_filename == "notes.txt"
    assert Path(info.value.path()).read_text() == TELE_NOTES

    page.click("[data-tab=artifacts]")
    model = page.locator("#artifacts-output-table tr[data-artifact='model:v0']")
    expect(model.locator("td").nth(1)).to_have_text("model")
    expect(model.locator(".aliases .tag")).to_have_text(["best", "latest"])
    digits = page.locator("#artifacts-input-table tr[data-artifact='digits:v0']")
    expect(digits.locator(".aliases .tag")).to_have_text(["best", "latest"])
    model.locator("button.toggle").click()
    manifest = page.locator("#artifacts-output-table tr.manifest-row").first
    expect(manifest.locator("tr[data-path='weights.bin'] button.download")).to_be_visible()
    expect(manifest.locator("tr[data-path='raw.tar']")).to_contain_text("s3://bucket/raw.tar")
    _shot(page, "run-artifacts.png")
    with page.expect_download() as info:
        manifest.locator("tr[data-path='weights.bin'] button.download").click()
    assert Path(info.value.path()).read_bytes() == bytes(range(256)) * 4
    digits.locator("button.toggle").click()
    producer = page.locator("#artifacts-input-table tr.manifest-row a", has_text="/tele/maker")
    expect(producer).to_have_text(f"{site['entity']}/tele/maker")
    producer.click()
    expect(page.locator("#run-name")).to_have_text("maker")


def test_forked_run_draws_its_inherited_segment_and_links_the_parent(site: dict[str, Any], page: Any) -> None:
    from playwright.sync_api import expect

    e = site["entity"]
    page.goto(f"{site['url']}/{e}/lineage/runs/forked#charts")
    chart = page.locator(".chart[data-key=loss]")
    page.wait_for_function("el => el.data && el.data.length === 2", arg=chart.element_handle())
    drawn = chart.evaluate("el => el.data.map(t => [t.meta, t.line.dash || 'solid', t.x, t.y])")
    assert drawn == [["inherited", "dot", [0, 1, 2, 3, 4], [10, 9, 8, 7, 6]],
                     ["own", "solid", [4, 5, 6, 7], [6, 0.5, 0.4, 0.3]]]
    assert chart.evaluate("el => el.layout.shapes.map(s => s.x0)") == [4]
    expect(chart.locator(".annotation-text")).to_have_text("fork of base")
    _shot(page, "run-fork.png")
    page.click("[data-tab=overview]")
    expect(page.locator("#origin")).to_contain_text("forked from base")
    expect(page.locator("#origin")).to_contain_text("at step 4")
    page.click("#origin-link")
    expect(page.locator("#run-name")).to_have_text("base")
    expect(page.locator("#lineage .child")).to_have_text("fork: forked from step 4")


def test_rewound_run_offers_its_archived_branch(site: dict[str, Any], page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(f"{site['url']}/{site['entity']}/lineage/runs/rew#charts")
    expect(page.locator("#branch option")).to_have_text(["current (steps 0–7)", "archived 0 (steps 0–9)"])
    chart = page.locator(".chart[data-key=loss]")
    page.wait_for_function("el => el.data && el.data.length === 1 && el.data[0].x.length === 8",
                           arg=chart.element_handle())
    assert chart.evaluate("el => el.data[0].y") == [10, 9, 8, 7, 6, 5, 20, 21]
    assert chart.evaluate("el => el.layout.shapes.map(s => s.x0)") == [5]
    page.select_option("#branch", "0")
    page.wait_for_function("el => el.data[0].x.length === 10", arg=chart.element_handle())
    assert chart.evaluate("el => el.data[0].y") == [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]
    page.click("[data-tab=overview]")
    expect(page.locator("#origin")).to_contain_text("rewound at step 5")


STOP_CHILD = textwrap.dedent("""
    import sys, time
    import runstream
    project, rid = (sys.argv[2], sys.argv[3]) if len(sys.argv) > 3 else ("stop", "victim")
    run = runstream.init(entity=sys.argv[1], project=project, id=rid, name=rid)
    print("ready", flush=True)
    i = 0
    try:
        while True:  # a trainer: logs until someone stops it
            print(f"tick {i}", flush=True)
            run.log({"loss": 1.0 / (i + 1)})
            i += 1
            time.sleep(0.05)
    except KeyboardInterrupt:
        print("interrupted: cleaning up", flush=True)
        raise
""")


def test_stop_button_kills_a_live_run_and_its_logs_follow(site: dict[str, Any], page: Any) -> None:
    from playwright.sync_api import expect

    child = subprocess.Popen([sys.executable, "-c", STOP_CHILD, site["entity"]],
                             env={**site["env"], "RUNSTREAM_CONSOLE": "auto"}, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=site["base"])
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        page.goto(f"{site['url']}/{site['entity']}/stop/runs/victim#logs")
        expect(page.locator("#run-state .badge")).to_have_text("running")
        # arrives while it runs (anchored: on a loaded machine "tick 30".."tick 39" may be there too)
        expect(page.locator("#log-lines .log-line", has_text=re.compile(r"^tick 3$"))).to_have_count(1)
        expect(page.locator("#stop-run")).to_be_visible()
        page.click("#stop-run")
        expect(page.locator("#stop-msg")).to_contain_text("Stop requested")
        expect(page.locator("#run-state .badge")).to_have_text("killed", timeout=60_000)
        expect(page.locator("#stop-run")).to_be_hidden()
        # the lines the trainer printed while it stopped arrive too (then Python's traceback)
        expect(page.locator("#log-lines .log-line", has_text="interrupted: cleaning up")).to_have_count(1)
        expect(page.locator("#log-lines .log-line").last).to_have_text("KeyboardInterrupt")
        assert child.wait(60) != 0
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=30)


def test_media_tab_images_table_and_histograms(site: dict[str, Any], page: Any) -> None:
    import numpy as np
    from playwright.sync_api import expect

    import runstream

    entity = site["entity"]
    with runstream.init(entity=entity, project="media", id="m") as run:
        for step in range(3):
            run.log({"img": runstream.Image(np.full((4, 6, 3), step * 100, np.uint8), caption=f"step {step}"),
                     "w": runstream.Histogram(np_histogram=([1, step + 1], [0.0, 0.5, 1.0]))})
        run.log({"preds": runstream.Table(columns=["id", "label"],
                                          data=[[i, "cat" if i % 2 else "dog"] for i in range(25)])})
    assert runstream.Api(base_url=site["url"]).sql(f"SELECT count(*) AS n FROM media m JOIN runs r USING (run_uid) "
                               f"WHERE r.path = '{entity}/media/m'")["n"][0] == 7  # the projection holds them
    page.goto(f"{site['url']}/{entity}/media/runs/m#media")
    img = page.locator("[data-key=img]")
    expect(img.locator(".step-label")).to_have_text("step 2 (3 of 3)")
    expect(img.locator(".caption")).to_have_text("step 2")
    page.wait_for_function("() => { const i = document.querySelector('[data-key=img] img');"
                           " return i && i.complete && i.naturalWidth === 6 && i.naturalHeight === 4; }")
    img.locator(".step-slider").fill("0")
    expect(img.locator(".step-label")).to_have_text("step 0 (1 of 3)")
    expect(img.locator(".caption")).to_have_text("step 0")

    table = page.locator("[data-key=preds]")
    expect(table.locator(".table-info")).to_have_text("rows 1–20 of 25")
    table.locator("button.next").click()
    expect(table.locator(".table-info")).to_have_text("rows 21–25 of 25")
    table.locator(".table-filter").fill("cat")
    expect(table.locator(".table-info")).to_have_text("rows 1–12 of 12")
    table.locator("th[data-col=id]").click()
    table.locator("th[data-col=id]").click()  # again: descending
    expect(table.locator("tbody tr").first.locator("td").first).to_have_text("23")

    hist = page.locator("[data-key=w] .media-hist")
    page.wait_for_function("el => el.data && el.data[0].x.length === 6", arg=hist.element_handle())
    assert hist.evaluate("el => [el.data[0].x, el.data[0].y, el.data[0].marker.color]") == [
        [0, 0, 1, 1, 2, 2], [0.25, 0.75, 0.25, 0.75, 0.25, 0.75], [1, 1, 1, 2, 1, 3]]
    _shot(page, "run-media.png")


def test_workspace_media_shows_each_runs_image_at_a_step(site: dict[str, Any], page: Any) -> None:
    import numpy as np
    from playwright.sync_api import expect

    import runstream

    entity = site["entity"]
    for rid, shade in (("m1", 0), ("m2", 200)):
        with runstream.init(entity=entity, project="wsmedia", id=rid, name=rid) as run:
            for step in range(2 if rid == "m1" else 3):
                run.log({"sample": runstream.Image(np.full((3, 5), shade + step, np.uint8), caption=f"{rid}@{step}"),
                         "w": runstream.Histogram([1.0, 2.0, float(step)], num_bins=2)})
    assert runstream.Api(base_url=site["url"]).sql(
        f"SELECT count(*) AS n FROM media m JOIN runs r USING (run_uid) WHERE r.entity = '{entity}' "
        "AND r.project = 'wsmedia'")["n"][0] == 10
    page.goto(f"{site['url']}/{entity}/wsmedia")
    grid = page.locator("#media-grid")
    expect(page.locator("#media-step-label")).to_have_text("step 2")
    # in the runs table's order (newest first); m1's latest image at or before step 2 is its step 1
    expect(grid.locator(".caption")).to_have_text(["m2@2", "m1@1"])
    page.wait_for_function("() => [...document.querySelectorAll('#media-grid img')]"
                           ".every((i) => i.complete && i.naturalWidth === 5)")
    page.locator("#media-step").fill("0")
    expect(page.locator("#media-step-label")).to_have_text("step 0")
    expect(grid.locator(".caption")).to_have_text(["m2@0", "m1@0"])
    page.select_option("#media-key", "w")
    expect(grid.locator(".media-hist")).to_have_count(2)
    _shot(page, "workspace-media.png")


def _eyes(pg: Any, want: dict[str, bool] | None = None) -> dict[str, bool]:
    """run id → whether its eye (shown in charts) is ticked, in table order (once it is ``want``)."""
    if want is not None:
        try:
            pg.wait_for_function("want => JSON.stringify(Object.fromEntries([...document.querySelectorAll("
                                 "'#runs-table tbody tr.run')].map(r => [r.dataset.run, r.querySelector("
                                 "'input.visible').checked]))) === JSON.stringify(want)", arg=want, timeout=15_000)
        except Exception:
            pass  # the assertion shows what it has
    rows = pg.locator("#runs-table tbody tr.run")
    ids = rows.evaluate_all("rs => rs.map(r => r.dataset.run)")
    ticks = pg.locator("#runs-table tbody tr.run input.visible").evaluate_all("es => es.map(e => e.checked)")
    return dict(zip(ids, ticks, strict=True))


def _chart_names(pg: Any, key: str, expected: list[str]) -> list[str]:
    """The trace names of a chart, sorted, once they are ``expected`` (sorted); a timeout shows them."""
    chart = pg.locator(f".chart[data-key='{key}']")
    want = sorted(expected)
    try:
        pg.wait_for_function("([el, want]) => el.data && JSON.stringify(el.data.map(t => t.name).sort()) === "
                             "JSON.stringify(want)", arg=[chart.element_handle(), want], timeout=15_000)
    except Exception:
        pass  # the assertion below shows what it has
    return sorted(chart.evaluate("el => el.data.map(t => t.name)"))


def test_visualized_set_follows_sort_max_runs_and_new_runs(site: dict[str, Any], page: Any) -> None:
    from playwright.sync_api import expect

    e = site["entity"]
    ids = [f"r-{i:02d}" for i in range(12)]
    _seed(e, "vis", *ids)
    page.goto(f"{site['url']}/{e}/vis")
    expect(page.locator("#run-count")).to_have_text("12 runs")
    expect(page.locator("#charts-title")).to_have_text("Charts (10 visualized)")
    newest_first = list(reversed(ids))
    want = {r: i < 10 for i, r in enumerate(newest_first)}
    assert _eyes(page, want) == want
    page.click("th[data-col=name]")  # descending
    expect(page.locator("th[data-col=name]")).to_have_attribute("aria-sort", "descending")
    page.click("th[data-col=name]")  # ascending: the charts follow the sort
    expect(page.locator("th[data-col=name]")).to_have_attribute("aria-sort", "ascending")
    expect(page.locator("#runs-table tbody tr.run").first).to_have_attribute("data-run", "r-00")
    want = {r: i < 10 for i, r in enumerate(ids)}
    assert _eyes(page, want) == want
    assert _chart_names(page, "loss", ids[:10]) == ids[:10]
    colours = page.locator("#runs-table tbody tr.run input.colour").evaluate_all("es => es.map(e => e.value)")
    assert len(set(colours[:10])) == 10  # no colour repeats among the charted runs

    page.fill("#max-runs", "3")
    page.press("#max-runs", "Enter")
    expect(page.locator("#charts-title")).to_have_text("Charts (3 visualized)")
    assert _chart_names(page, "loss", ["r-00", "r-01", "r-02"]) == ["r-00", "r-01", "r-02"]
    page.locator("tr[data-run=r-05] input.visible").check()  # the eye still overrides by hand
    expect(page.locator("#charts-title")).to_have_text("Charts (4 visualized)")
    assert _chart_names(page, "loss", ["r-00", "r-01", "r-02", "r-05"]) == ["r-00", "r-01", "r-02", "r-05"]

    _seed(e, "vis", "a-new")  # created later, sorts first: it enters the charted set live, r-02 leaves
    expect(page.locator("#run-count")).to_have_text("13 runs")
    expect(page.locator("#runs-table tbody tr.run").first).to_have_attribute("data-run", "a-new")
    expect(page.locator("#charts-title")).to_have_text("Charts (4 visualized)")
    assert _chart_names(page, "loss", ["a-new", "r-00", "r-01", "r-05"]) == ["a-new", "r-00", "r-01", "r-05"]
    expect(page.locator("tr[data-run=r-02] input.visible")).not_to_be_checked()
    page.reload()  # max runs and the eye's choice persist per project
    expect(page.locator("#charts-title")).to_have_text("Charts (4 visualized)")
    expect(page.locator("#max-runs")).to_have_value("3")


LONG = "experiment-" + "x" * 70 + "-seed-0042"


def test_kebab_rename_delete_crop_notes_and_expand(site: dict[str, Any], page: Any) -> None:
    from playwright.sync_api import expect

    import runstream

    e = site["entity"]
    run = runstream.init(entity=e, project="kb", id="long", name=LONG, notes="first line of notes\nsecond line")
    run.log({"loss": 1.0})
    run.finish()
    _seed(e, "kb", "short")
    page.goto(f"{site['url']}/{e}/kb")
    expect(page.locator("#run-count")).to_have_text("2 runs")
    link = page.locator("tr[data-run=long] a.run-link")
    assert len(LONG) == 91
    expect(link).to_have_text("experiment-xxx…xxx-seed-0042")  # middle, the default: 28 characters
    expect(link).to_have_attribute("title", LONG)
    page.select_option("#name-crop", "end")
    expect(link).to_have_text(LONG[:27] + "…")
    page.select_option("#name-crop", "beginning")
    expect(link).to_have_text("…" + LONG[-27:])
    page.reload()  # the crop mode persists per project
    expect(link).to_have_text("…" + LONG[-27:])
    expect(page.locator("tr[data-run=long] td[data-col=notes]")).to_have_text("first line of notes")
    expect(page.locator("tr[data-run=short] td[data-col=notes]")).to_have_text("")

    # a single point is drawn as a marker
    chart = page.locator(".chart[data-key=loss]")
    page.wait_for_function("el => el.data && el.data.length === 2", arg=chart.element_handle())
    modes = chart.evaluate("el => Object.fromEntries(el.data.map(t => [t.name, t.mode]))")
    assert modes == {LONG: "markers", "short": "lines"}
    expect(chart.locator("g.points path.point")).to_have_count(1)

    page.locator("tr[data-run=long] button.kebab").click()
    expect(page.locator(".menu .menu-item")).to_have_text(["Rename", "Delete…"])  # finished: no Stop
    page.click(".menu [data-action=rename]")
    page.fill("#rename-input", "renamed")
    page.press("#rename-input", "Enter")
    expect(page.locator("#action-msg")).to_have_text("Renamed long to renamed.")
    expect(page.locator("tr[data-run=long] a.run-link")).to_have_text("renamed")
    with urllib.request.urlopen(f"{site['url']}/api/runs/{e}/kb/long?fresh=true") as resp:
        assert json.load(resp)["name"] == "renamed"  # through PATCH: a meta event

    page.click("#expand-table")
    expect(page.locator(".charts-pane")).to_be_hidden()
    expect(page.locator("#expand-table")).to_have_attribute("aria-pressed", "true")
    header = page.locator("th[data-col=name] .resizable")  # column widths: drag the header's corner
    assert header.evaluate("el => getComputedStyle(el).resize") == "horizontal"
    header.evaluate("el => { el.style.width = '300px'; }")
    assert page.locator("th[data-col=name]").evaluate("el => el.getBoundingClientRect().width") >= 300
    page.select_option("#add-column", "summary.loss")
    expect(page.locator("tr[data-run=long] td[data-col='summary.loss']")).to_have_text("1")
    page.click("#expand-table")
    expect(page.locator(".charts-pane")).to_be_visible()

    page.locator("tr[data-run=short] button.kebab").click()
    page.click(".menu [data-action=delete]")
    expect(page.locator("#confirm-runs li")).to_have_text([f"short {e}/kb/short"])
    page.click("#confirm-delete")
    expect(page.locator("#action-msg")).to_have_text("Deleted 1 run.")
    expect(page.locator("#run-count")).to_have_text("1 run")


def test_kebab_stop_stops_a_running_run(site: dict[str, Any], page: Any) -> None:
    from playwright.sync_api import expect

    child = subprocess.Popen([sys.executable, "-c", STOP_CHILD, site["entity"], "kstop", "busy"],
                             env=site["env"], text=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             cwd=site["base"])
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        page.goto(f"{site['url']}/{site['entity']}/kstop")
        expect(page.locator("tr[data-run=busy] .badge")).to_have_text("running")
        page.locator("tr[data-run=busy] button.kebab").click()
        expect(page.locator(".menu .menu-item")).to_have_text(["Rename", "Stop run", "Delete…"])
        page.click(".menu [data-action=stop]")
        expect(page.locator("#action-msg")).to_contain_text("Stop requested for busy")
        expect(page.locator("tr[data-run=busy] .badge")).to_have_text("killed", timeout=60_000)
        assert child.wait(60) != 0
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=30)


def _sql(site: dict[str, Any], sql: str) -> list[dict[str, Any]]:
    req = urllib.request.Request(f"{site['url']}/api/sql", data=json.dumps({"sql": sql, "fresh": True}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req) as resp:
        return json.load(resp)["rows"]


def test_group_mean_and_std_band_match_sql_and_outliers(site: dict[str, Any], page: Any) -> None:
    from playwright.sync_api import expect

    e = site["entity"]
    page.goto(f"{site['url']}/{e}/ws")
    expect(page.locator("#run-count")).to_have_text("4 runs")
    page.select_option("#group-by", "config.opt")
    chart = page.locator(".chart[data-key='train/loss']")
    page.wait_for_function("el => el.data && el.data.length === 6", arg=chart.element_handle())
    expect(chart.locator(".legend .traces")).to_have_count(2)  # a legend naming each group
    expect(chart.locator(".legend .traces text.legendtext")).to_have_text(["sgd (2)", "adam (2)"])  # newest first
    traces = chart.evaluate("el => el.data.map(t => ({name: t.name, meta: t.meta, x: t.x, y: t.y}))")
    rows = _sql(site, f"""SELECT h.step, avg(h.value) AS mean, stddev_pop(h.value) AS std FROM history h
        JOIN runs r USING (run_uid) WHERE r.entity = '{e}' AND r.project = 'ws' AND r.run_id IN ('alpha-1', 'beta-1')
        AND h.key = 'train/loss' GROUP BY h.step ORDER BY h.step""")
    assert len(rows) == 30
    adam = [t for t in traces if t["name"] == "adam (2)"][0]
    lo, hi = traces[traces.index(adam) - 2], traces[traces.index(adam) - 1]
    assert (lo["meta"], hi["meta"]) == ("band-lo", "band-hi")
    assert adam["x"] == [r["step"] for r in rows]
    assert adam["y"] == pytest.approx([r["mean"] for r in rows], rel=1e-9)
    assert hi["y"] == pytest.approx([r["mean"] + r["std"] for r in rows], rel=1e-9)
    assert lo["y"] == pytest.approx([r["mean"] - r["std"] for r in rows], rel=1e-9, abs=1e-12)
    page.select_option("#group-band", "minmax")
    band = traces.index(adam) - 2
    page.wait_for_function(f"el => el.data[{band}].y[0] !== " + json.dumps(lo["y"][0]), arg=chart.element_handle())
    mins = _sql(site, f"""SELECT h.step, min(h.value) AS lo FROM history h JOIN runs r USING (run_uid)
        WHERE r.entity = '{e}' AND r.project = 'ws' AND r.run_id IN ('alpha-1', 'beta-1') AND h.key = 'train/loss'
        GROUP BY h.step ORDER BY h.step""")
    assert chart.evaluate(f"el => el.data[{band}].y") == pytest.approx([r["lo"] for r in mins], rel=1e-9)
    page.select_option("#group-band", "std")
    page.select_option("#group-by", "")

    # one diverged run dwarfs the rest: the y range ignores outliers by default, and can show them
    import runstream

    for i, peak in enumerate((1.0, 1.2, 0.9, 210.0)):
        run = runstream.init(entity=e, project="spike", id=f"s-{i}", name=f"s-{i}")
        for step in range(20):
            run.log({"loss": peak if step == 10 else 1.0 - step / 40})
        run.finish()
    page.goto(f"{site['url']}/{e}/spike")
    spike = page.locator(".chart[data-key=loss]")
    expect(spike).to_have_attribute("data-outliers", "ignored")
    top = spike.evaluate("el => el.layout.yaxis.range[1]")
    assert top < 5
    page.select_option("#outliers", "off")
    expect(spike).to_have_attribute("data-outliers", "shown")
    page.wait_for_function("el => el._fullLayout.yaxis.range[1] > 200", arg=spike.element_handle())


def test_url_reproduces_the_view_and_the_guide_run_url(site: dict[str, Any], page: Any, browser: Any) -> None:
    from playwright.sync_api import expect

    e = site["entity"]
    page.goto(f"{site['url']}/{e}/ws")
    expect(page.locator("#run-count")).to_have_text("4 runs")
    page.click("th[data-col=name]")  # descending
    page.fill("#filter-field", "config.lr")
    page.select_option("#filter-op", "<")
    page.fill("#filter-value", "0.05")
    page.click("#filter-add")
    expect(page.locator("#run-count")).to_have_text("2 runs")
    page.select_option("#group-by", "config.opt")
    chart = page.locator(".chart[data-key='train/loss']")
    page.wait_for_function("el => el.data && el.data.length === 6", arg=chart.element_handle())
    chart.evaluate("el => Plotly.relayout(el, {'xaxis.range[0]': 5, 'xaxis.range[1]': 12})")
    page.wait_for_function("() => location.search.includes('zoom')")
    link = page.url
    other = browser.new_context(viewport={"width": 1280, "height": 800})  # nothing saved there
    try:
        fresh = other.new_page()
        fresh.goto(link)
        expect(fresh.locator("#run-count")).to_have_text("2 runs")
        expect(fresh.locator("th[data-col=name]")).to_have_attribute("aria-sort", "descending")
        expect(fresh.locator("#filter-chips .chip")).to_have_text("config.lr < 0.05×")
        expect(fresh.locator("#group-by")).to_have_value("config.opt")
        expect(fresh.locator("tr.group-row")).to_have_count(2)
        zoomed = fresh.locator(".chart[data-key='train/loss']")
        fresh.wait_for_function("el => el.layout && el.layout.xaxis.range && el.layout.xaxis.range[0] === 5 && "
                                "el.layout.xaxis.range[1] === 12", arg=zoomed.element_handle())
        fresh.goto(f"{site['url']}/{e}/ws/alpha-1")  # the guide's run URL
        expect(fresh).to_have_url(f"{site['url']}/{e}/ws/runs/alpha-1")
        fresh.goto(f"{site['url']}/{e}/ws/runs/alpha-1#logs")  # the tab is in the URL too
        expect(fresh.locator(".tabs a.active")).to_have_text("Logs")
    finally:
        other.close()


def _page_scrolls_sideways(pg: Any) -> int:
    """How far the page itself scrolls sideways (0: it fits its viewport)."""
    return pg.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")


def test_dark_theme_toggle_focus_and_layouts_at_1280_and_390(site: dict[str, Any], browser: Any) -> None:
    from playwright.sync_api import expect

    e = site["entity"]
    context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme="dark")
    context.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    try:
        pg = context.new_page()
        pg.on("pageerror", lambda err: problems.append(str(err)))
        pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        pg.goto(f"{site['url']}/{e}/ws")
        expect(pg.locator("#run-count")).to_have_text("4 runs")
        bg = "() => getComputedStyle(document.body).backgroundColor"
        assert pg.evaluate(bg) == "rgb(18, 21, 28)"  # the system's dark scheme
        expect(pg.locator("#theme-toggle")).to_have_text("☀ Light")
        chart = pg.locator(".chart[data-key='train/loss']")
        pg.wait_for_function("el => el._fullLayout && el._fullLayout.font.color === '#e4e7ee'",
                             arg=chart.element_handle())
        assert _page_scrolls_sideways(pg) == 0
        _shot(pg, "workspace-dark.png")
        pg.click("#theme-toggle")
        assert pg.evaluate(bg) == "rgb(255, 255, 255)"
        pg.wait_for_function("el => el._fullLayout.font.color === '#1b2030'", arg=chart.element_handle())
        pg.reload()  # the choice is kept over the system's
        expect(pg.locator("#theme-toggle")).to_have_text("☾ Dark")
        assert pg.evaluate(bg) == "rgb(255, 255, 255)"
        pg.keyboard.press("Tab")  # keyboard focus is visible
        assert pg.evaluate("() => document.activeElement.matches('a.brand')")
        assert pg.evaluate("() => getComputedStyle(document.activeElement).outlineStyle") == "solid"
        assert pg.evaluate("() => getComputedStyle(document.activeElement).outlineWidth") == "2px"
        pg.click("#theme-toggle")
        pg.goto(f"{site['url']}/{e}/ws/runs/alpha-1")
        expect(pg.locator("#run-state .badge")).to_have_text("finished")
        assert _page_scrolls_sideways(pg) == 0
        _shot(pg, "run-dark.png")

        pg.set_viewport_size({"width": 390, "height": 844})
        for path in (f"/{e}/ws", f"/{e}/ws/runs/alpha-1", f"/{e}/tele/runs/tele#files", "/", "/sql"):
            pg.goto(site["url"] + path)
            pg.wait_for_selector("main#main > *")
            assert _page_scrolls_sideways(pg) == 0, path
        pg.goto(f"{site['url']}/{e}/ws")
        expect(pg.locator("#run-count")).to_have_text("4 runs")
        assert _page_scrolls_sideways(pg) == 0
        wrap = pg.locator(".runs-pane .table-wrap")
        assert wrap.evaluate("el => el.scrollWidth > el.clientWidth")  # the table scrolls inside its frame
        _shot(pg, "workspace-phone.png")
    finally:
        context.close()
    assert not problems, problems


def _get(site: dict[str, Any], path: str) -> Any:
    with urllib.request.urlopen(site["url"] + path) as resp:
        return json.load(resp)


def _epoch(t: Any) -> float:
    from datetime import datetime

    return float(t) if isinstance(t, (int, float)) else datetime.fromisoformat(str(t)).timestamp()


def _wall_clock(run: dict[str, Any]) -> float:
    end = run["finished_at"] if run["finished_at"] is not None else run["heartbeat_at"]
    return _epoch(end) - _epoch(run["created_at"])


def _fmt_duration(s: float) -> str:
    """The web app's rs.fmtDuration for under an hour."""
    s = max(0, round(s))
    return f"{s // 60}m {s % 60}s" if s >= 60 else f"{s}s"


def test_overview_duration_runtime_artifacts_and_name_in_place(site: dict[str, Any], page: Any) -> None:
    import time

    from playwright.sync_api import expect

    import runstream

    e = site["entity"]
    run = runstream.init(entity=e, project="ov", id="gap", name="gap")
    run.log({"loss": 1.0})
    run.finish()
    time.sleep(3)  # setup, not a wait: the run is away for 3 s before it resumes
    run = runstream.init(entity=e, project="ov", id="gap", resume="must")
    run.log({"loss": 0.5})
    run.finish()
    got = _get(site, f"/api/runs/{e}/ov/gap?fresh=true")
    assert _wall_clock(got) - got["runtime"] >= 3  # the resume gap is in Runtime, not in Duration
    page.goto(f"{site['url']}/{e}/ov/runs/gap")
    expect(page.locator("#duration")).to_have_text(_fmt_duration(got["runtime"]))
    expect(page.locator("#runtime")).to_have_text(_fmt_duration(_wall_clock(got)))

    page.goto(f"{site['url']}/{e}/tele/runs/tele")
    expect(page.locator("#artifact-outputs .artifact-output")).to_have_text(["model:v0 model"])
    page.goto(f"{site['url']}/{e}/tele/runs/maker")
    expect(page.locator("#artifact-outputs .artifact-output")).to_have_text(["digits:v0 dataset"])
    page.goto(f"{site['url']}/{e}/ov/runs/gap")
    page.fill("#name-edit", "gap renamed")
    page.press("#name-edit", "Enter")
    expect(page.locator("#name-msg")).to_have_text("Saved.")
    expect(page.locator("#run-name")).to_have_text("gap renamed")
    assert _get(site, f"/api/runs/{e}/ov/gap?fresh=true")["name"] == "gap renamed"


def test_a_large_project_pages_its_table(site: dict[str, Any], page: Any) -> None:
    import time
    from concurrent.futures import ThreadPoolExecutor

    from playwright.sync_api import expect

    from tests.bench.rs import publish_runs

    e, now = site["entity"], time.time()
    specs = [(f"b{i:04d}", {"i": i}, [(0, now, {"loss": float(i)})]) for i in range(450)]
    with ThreadPoolExecutor(1) as pool:  # its own event loop: Playwright's sync API holds this thread's
        pool.submit(publish_runs, site["env"]["RUNSTREAM_NATS_URL"], e, "big", specs).result()
    page.goto(f"{site['url']}/{e}/big")
    expect(page.locator("#run-count")).to_have_text("450 runs")
    rows = page.locator("#runs-table tbody tr.run")
    expect(rows).to_have_count(200)  # drawn 200 at a time
    expect(page.locator("#charts-title")).to_have_text("Charts (10 visualized)")
    expect(page.locator("#more-runs")).to_have_text("Show 200 more")
    page.click("#more-runs")
    expect(rows).to_have_count(400)
    expect(page.locator("#more-runs")).to_have_text("Show 50 more")
    page.click("#more-runs")
    expect(rows).to_have_count(450)
    expect(page.locator("#more-runs")).to_have_count(0)
    expect(rows.last).to_have_attribute("data-run", "b0000")  # newest first: the first published is last


def _panels(pg: Any, want: list[str]) -> list[str]:
    """The workspace's chart panels in page order, once they are ``want``."""
    try:
        pg.wait_for_function("want => JSON.stringify([...document.querySelectorAll('#charts .chart-frame')]"
                             ".map(f => f.dataset.panel)) === JSON.stringify(want)", arg=want, timeout=15_000)
    except Exception:
        pass  # the assertion shows what there is
    return pg.locator("#charts .chart-frame").evaluate_all("fs => fs.map(f => f.dataset.panel)")


def test_panels_reorder_hide_resize_max_runs_saved_and_reset_and_system_section(site: dict[str, Any],
                                                                                page: Any) -> None:
    from playwright.sync_api import expect

    e = site["entity"]
    page.goto(f"{site['url']}/{e}/ws")
    expect(page.locator("#charts-title")).to_have_text("Charts (4 visualized)")
    assert _panels(page, ["train/loss", "val/acc", "lr"]) == ["train/loss", "val/acc", "lr"]  # train, val, Charts
    charts_section = page.locator("details[data-section=Charts]")
    expect(charts_section.locator(".chart-frame")).to_have_count(1)
    page.locator(".chart-frame[data-panel='val/acc'] .hide").click()
    expect(page.locator(".chart-frame[data-panel='val/acc']")).to_have_count(0)
    expect(page.locator("details[data-section=val]")).to_have_count(0)
    page.locator(".chart-frame[data-panel='train/loss'] .resize").click()
    expect(page.locator(".chart-frame[data-panel='train/loss']")).to_have_class("chart-frame wide")
    page.fill(".chart-frame[data-panel='train/loss'] input.chart-max", "2")
    page.press(".chart-frame[data-panel='train/loss'] input.chart-max", "Enter")
    loss = page.locator(".chart[data-key='train/loss']")
    page.wait_for_function("el => el.data && el.data.length === 2", arg=loss.element_handle())
    assert sorted(loss.evaluate("el => el.data.map(t => t.name)")) == ["beta-1", "beta-2"]  # the first two charted
    page.reload()  # saved per project
    assert _panels(page, ["train/loss", "lr"]) == ["train/loss", "lr"]
    expect(page.locator(".chart-frame[data-panel='train/loss']")).to_have_class("chart-frame wide")
    page.wait_for_function("el => el.data && el.data.length === 2", arg=loss.element_handle())
    expect(page.locator("#charts select.add-panel option")).to_have_text(["Add panel (1 hidden)", "val/acc"])
    page.select_option("#charts select.add-panel", "val/acc")
    assert _panels(page, ["train/loss", "val/acc", "lr"]) == ["train/loss", "val/acc", "lr"]
    page.click("#charts .reset-layout")
    expect(page.locator(".chart-frame[data-panel='train/loss']")).to_have_class("chart-frame")
    page.wait_for_function("el => el.data && el.data.length === 4", arg=loss.element_handle())

    # the System section: the charted runs' system metrics
    page.goto(f"{site['url']}/{e}/tele")
    expect(page.locator("#run-count")).to_have_text("2 runs")
    page.click("#workspace-system > summary")
    cpu = page.locator("#workspace-system-charts .chart[data-key='system/cpu']")
    page.wait_for_function("el => el.data && el.data.length === 1", arg=cpu.element_handle())
    assert cpu.evaluate("el => [el.data[0].name, Array.from(el.data[0].y)]") == ["tele", [10, 11, 12, 13, 14]]


def test_panels_reorder_within_a_section(site: dict[str, Any], page: Any) -> None:
    import runstream

    e = site["entity"]
    run = runstream.init(entity=e, project="lay", id="one", name="one")
    for i in range(3):
        run.log({"a/x": float(i), "a/y": float(-i)})
    run.finish()
    page.goto(f"{site['url']}/{e}/lay")
    assert _panels(page, ["a/x", "a/y"]) == ["a/x", "a/y"]
    page.locator(".chart-frame[data-panel='a/x'] .move-right").click()
    assert _panels(page, ["a/y", "a/x"]) == ["a/y", "a/x"]
    page.reload()
    assert _panels(page, ["a/y", "a/x"]) == ["a/y", "a/x"]
    page.locator(".chart-frame[data-panel='a/x'] .move-left").click()
    assert _panels(page, ["a/x", "a/y"]) == ["a/x", "a/y"]


@pytest.mark.fault
def test_a_paused_projection_shows_a_banner_with_the_way_out(
        own_nats: NatsServer, tmp_path: Path, page: Any, fault_report: Any) -> None:
    """The event stream recreated under a server (on a NATS server of this test): every page says
    projecting is paused and why (`runstream replay`)."""
    import json
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    import anyio
    from playwright.sync_api import expect

    from runstream.broker.names import new_run_uid
    from tests.conftest import wait_for
    from tests.test_faults_stream import _init, _publish, _recreate_stream

    def run_async(fn: Any, *args: Any) -> Any:  # playwright's sync API holds this thread's event loop
        with ThreadPoolExecutor(1) as ex:
            return ex.submit(anyio.run, fn, *args).result()

    env = {"RUNSTREAM_NATS_URL": own_nats.url, "RUNSTREAM_DIR": str(tmp_path / "data"),
           "RUNSTREAM_RUN_DIR": str(tmp_path / "work"), "RUNSTREAM_QUIET": "1", "RUNSTREAM_HTTP_PORT": "0"}
    run_async(_publish, own_nats.url, [_init(new_run_uid(), "before")])
    srv = start_server(own_nats, tmp_path, {**os.environ, **env})
    try:
        url = read_http_url(srv.dir, srv.proc.pid)
        assert url
        page.goto(url + "/")
        expect(page.locator("#stalled")).to_be_hidden()
        run_async(_recreate_stream, own_nats.url)
        run_async(_publish, own_nats.url, [_init(new_run_uid(), "after")])

        def stalled() -> Any:
            with urllib.request.urlopen(url + "/api/health", timeout=10) as resp:
                return json.loads(resp.read()).get("stalled")
        reason = wait_for(stalled, timeout=30, what="health reports the paused projection")["reason"]
        page.goto(url + "/")
        expect(page.locator("#stalled")).to_be_visible()
        expect(page.locator("#stalled")).to_contain_text("Projection paused")
        expect(page.locator("#stalled")).to_contain_text("runstream replay")
    finally:
        srv.stop()
    fault_report("event stream recreated under a server (web app)", "a banner with the way out",
                 f"health stalled: {reason}; banner shown on the page")
