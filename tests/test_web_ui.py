"""The web app in a real headless Chromium (Debian's ``chromium`` driven by Playwright) against a real
``runstream server`` subprocess, NATS and DuckDB: home, workspace (search, filter, sort, group,
charts), the run page (notes and tags persisted through a replay), live updates of a run logging
in another process (down to it turning crashed), the SQL page, and an XSS battery.

Every page fails its test on a JavaScript dialog, an uncaught error or a console error (a CSP
violation is one). Screenshots go to docs/screenshots/. Without Chromium the module is skipped.
"""

from __future__ import annotations

import os
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
SHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
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
           "RUNSTREAM_HEARTBEAT_INTERVAL": "0.5", "RUNSTREAM_CRASH_TIMEOUT": "3"}
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
    yield {"url": url, "entity": entity, "srv": srv, "env": {**os.environ, **env, "RUNSTREAM_SERVER_NAME": srv.name},
           "base": base}
    mp.undo()
    assert srv.stop() == 0, srv.log.read_text()


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
    # move and delete are not served yet: disabled, saying why
    expect(page.locator("#bulk-move")).to_be_disabled()
    expect(page.locator("#bulk-delete")).to_have_attribute("title", "This server has no delete endpoint "
                                                                    "(DELETE /api/runs/{entity}/{project}/{id}): not "
                                                                    "available yet")


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
    expect(page.locator("[data-placeholder=logs]")).to_contain_text("not recorded yet")
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
