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

import os
import re
import subprocess
import sys
import textwrap
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
    return pg.locator("#runs-table tbody tr.run:not([hidden]) td[data-col=name]").all_inner_texts()


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
    run = runstream.init(entity=sys.argv[1], project="stop", id="victim", name="victim")
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
        expect(page.locator("#log-lines .log-line", has_text=re.compile(r"^tick 3$"))).to_have_count(1)  # while it runs
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
