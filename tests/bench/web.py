"""Row 11: the web app's page loads, in headless Debian chromium (Playwright), against the local stack.

* a project of ``runs`` small runs (published straight to the stream, like row 5): from
  navigation to the runs table listing all of them, and to its first chart drawn;
* a run of ``points`` logged points on one key: from navigation to the run page's chart drawn
  (the server's min/max envelope, not every point).

Each figure is the median of ``loads`` warm loads in a fresh browser context, after one warm-up
load (checked: the table counts every run, the chart holds the envelope of all points). Without
chromium or Playwright the row says "not installed".
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from .errors import NotInstalled

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
TIMEOUT_MS = 300_000


def _browser(pw: Any) -> Any:
    if not CHROMIUM.exists():
        raise NotInstalled("the web rows need Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    return pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)


def _timed_load(browser: Any, url: str, ready: list[tuple[str, str | None]]) -> list[float]:
    """Seconds from navigation until each ``(selector, js predicate of the element)`` holds."""
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        t0 = time.perf_counter()
        page.goto(url, wait_until="commit")
        out = []
        for selector, predicate in ready:
            handle = page.wait_for_selector(selector, state="attached")
            if predicate:
                page.wait_for_function(predicate, arg=handle, timeout=TIMEOUT_MS)
            out.append(time.perf_counter() - t0)
        return out
    finally:
        context.close()


def web_ui(params: dict[str, Any]) -> dict[str, Any]:
    from runstream.settings import load_settings
    from runstream.stack import status

    from .rs import _client, _import_runstream, publish_runs

    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        raise NotInstalled(f"the web rows need playwright (the dev extra): {e}") from e
    if not CHROMIUM.exists():
        raise NotInstalled("the web rows need Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    n_runs, n_points, loads = int(params["runs"]), int(params["points"]), int(params.get("loads", 3))
    rs = _import_runstream()
    st = status(load_settings())
    if not st.http_url:
        raise NotInstalled("the stack's server has no HTTP API")
    entity, project = "bench", f"web-{n_runs}"
    now = time.time()
    publish_runs(st.nats_url, entity, project,
                 ((f"r{i:05d}", {"lr": 10 ** -(1 + i % 4), "seed": i},
                   [(s, now + s, {"loss": 1.0 / (s + 1 + i % 13), "acc": s / 5}) for s in range(5)])
                  for i in range(n_runs)))
    run = rs.init(entity=entity, project="web-chart", id="big", name="big")
    for i in range(n_points):
        run.log({"loss": 1.0 / (i + 1) + (1.0 if i % 9973 == 0 else 0.0)})
    run.finish()
    client = _client()
    seq = client.stream_last_seq()
    res = client.sql(f"SELECT count(*) AS n FROM runs WHERE entity = '{entity}' AND project = '{project}'",
                     wait_seq=seq, timeout=600).to_pylist()[0]
    base = st.http_url.rstrip("/")
    workspace = [("#run-count", f"el => el.textContent === '{n_runs} runs'"),
                 ("#charts .chart .main-svg", None)]
    chart = [(".chart[data-key=loss]", "el => el.data && el.data.length > 0 && el.data[0].x.length > 0")]
    ws_times: list[list[float]] = []
    chart_times: list[float] = []
    with sync_playwright() as pw:
        browser = _browser(pw)
        try:
            for i in range(loads + 1):  # the first is the warm-up
                w = _timed_load(browser, f"{base}/{entity}/{project}", workspace)
                c = _timed_load(browser, f"{base}/{entity}/web-chart/runs/big#charts", chart)
                if i:
                    ws_times.append(w)
                    chart_times.append(c[0])
            drawn = _drawn_points(browser, f"{base}/{entity}/web-chart/runs/big#charts")
        finally:
            browser.close()
    return {
        "runs": n_runs,
        "points": n_points,
        "runs_projected": int(res["n"]),
        "workspace_table_s": statistics.median(t[0] for t in ws_times),
        "workspace_chart_s": statistics.median(t[1] for t in ws_times),
        "chart_s": statistics.median(chart_times),
        "workspace_all_s": ws_times,
        "chart_all_s": chart_times,
        "chart_points_drawn": drawn,
        "check_count": int(res["n"]) == n_runs and 0 < drawn <= min(n_points, 2000),
    }


def _drawn_points(browser: Any, url: str) -> int:
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        page.goto(url)
        handle = page.wait_for_selector(".chart[data-key=loss]", state="attached")
        page.wait_for_function("el => el.data && el.data.length > 0", arg=handle)
        return int(page.evaluate("el => el.data[0].x.length", handle))
    finally:
        context.close()
