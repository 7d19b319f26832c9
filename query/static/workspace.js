// runstream web app: a project's workspace — the runs table (search, filter, sort, group, columns,
// visibility, colours, multi-select actions) and the charts panel of the visible runs, kept live.
"use strict";

(async () => {
  const { h } = rs;
  const [entity, project] = rs.pathParts();
  const base = `/api/projects/${rs.enc(entity, project)}`;
  const store = `runstream.ws.${entity}/${project}.`;
  const load = (k, d) => { try { const v = localStorage.getItem(store + k); return v === null ? d : JSON.parse(v); } catch { return d; } };
  const save = (k, v) => localStorage.setItem(store + k, JSON.stringify(v));
  const DEFAULT_MAX_RUNS = 10;  // the guide: the charts show the first 10 runs of the table (its sort, filters, search)
  const PAGE = 1000;

  // a link reproduces the view: sort, filters, search, grouping, x axis, max runs and zoom live in the URL
  // (they win over this browser's saved settings of the project)
  const url = new URLSearchParams(location.search);
  const fromUrl = (k, d, parse) => { if (!url.has(k)) return d; try { return parse ? JSON.parse(url.get(k)) : url.get(k); } catch { return d; } };
  const st = {
    runs: [], total: 0, search: "", filters: load("filters", []), order: load("order", "-created_at"),
    groupBy: load("groupBy", ""), columns: load("columns", []),
    overrides: load("overrides", {}),  // run_id → true/false: the eye icon's choice, over the first-N rule
    maxRuns: load("maxRuns", DEFAULT_MAX_RUNS), crop: load("crop", "middle"), expanded_view: false,
    colours: load("colours", {}), selected: new Set(), expanded: new Set(), x: load("x", "_step"),
    smoothing: load("smoothing", 0), log: load("log", false), band: load("band", "std"), outliers: load("outliers", "auto"),
    pending: null,  // the move or delete being confirmed: {kind, runs} (the runs it acts on, fixed when asked)
    zoom: {},  // metric key → [x0, x1] of a zoomed chart
  };
  st.order = fromUrl("sort", st.order);
  st.filters = fromUrl("filters", st.filters, true);
  st.search = fromUrl("q", st.search);
  st.groupBy = fromUrl("group", st.groupBy);
  st.x = fromUrl("x", st.x);
  st.maxRuns = Number(fromUrl("max", st.maxRuns)) || DEFAULT_MAX_RUNS;
  st.zoom = fromUrl("zoom", st.zoom, true) || {};

  /** The view into the address bar (replaceState: no history entry per click). */
  function syncUrl() {
    const q = new URLSearchParams();
    q.set("sort", st.order);
    if (st.filters.length) q.set("filters", JSON.stringify(st.filters));
    if (st.search) q.set("q", st.search);
    if (st.groupBy) q.set("group", st.groupBy);
    if (st.x !== "_step") q.set("x", st.x);
    if (st.maxRuns !== DEFAULT_MAX_RUNS) q.set("max", String(st.maxRuns));
    if (Object.keys(st.zoom).length) q.set("zoom", JSON.stringify(st.zoom));
    const next = `${location.pathname}?${q}`;
    if (next !== location.pathname + location.search) history.replaceState(null, "", next);
  }

  document.title = `${project} · runstream`;
  const main = rs.frame([[entity, null], [project, rs.projectHref(entity, project)]]);
  main.classList.add("workspace");

  // -- controls ---------------------------------------------------------------------------------

  const searchBox = h("input", { type: "search", id: "search", placeholder: "Search names (regex)", size: 28 });
  const fieldBox = h("input", { id: "filter-field", list: "filter-fields", placeholder: "field, e.g. config.lr", size: 18 });
  const opBox = h("select", { id: "filter-op" }, ["=", "!=", ">", ">=", "<", "<=", "in", "not in", "regex", "exists"]
    .map((o) => h("option", { value: o }, o)));
  const valueBox = h("input", { id: "filter-value", placeholder: "value", size: 12 });
  const fieldList = h("datalist", { id: "filter-fields" });
  const chips = h("span", { id: "filter-chips", class: "chips" });
  const groupBox = h("select", { id: "group-by", title: "Group runs" });
  const columnBox = h("select", { id: "add-column" });
  const countLabel = h("span", { id: "run-count", class: "muted" });
  const maxRunsBox = h("input", { id: "max-runs", type: "number", min: 1, max: 1000, step: 1, value: st.maxRuns,
                                  "aria-label": "Runs shown in the charts", title: "The first N runs of the table are charted" });
  const cropBox = h("select", { id: "name-crop", title: "Crop long run names", "aria-label": "Crop run names" },
    [["end", "crop end"], ["middle", "crop middle"], ["beginning", "crop beginning"]].map(([v, l]) => h("option", { value: v }, l)));
  cropBox.value = st.crop;
  const expandBtn = h("button", { id: "expand-table", "aria-pressed": "false", title: "Show the full runs table",
                                  onclick: () => toggleExpanded() }, "⤢ Expand");

  const tagBox = h("input", { id: "bulk-tag", placeholder: "tag", size: 10 });
  const bulkMsg = h("span", { id: "bulk-msg", class: "muted" });
  const addTagBtn = h("button", { id: "bulk-add-tag", onclick: () => retag(true) }, "Add tag");
  const rmTagBtn = h("button", { id: "bulk-remove-tag", onclick: () => retag(false) }, "Remove tag");
  const moveBtn = h("button", { id: "bulk-move", onclick: () => ask("move") }, "Move…");
  const deleteBtn = h("button", { id: "bulk-delete", class: "danger", onclick: () => ask("delete") }, "Delete…");
  const bulk = h("div", { id: "bulk", class: "bulk", hidden: true },
    h("span", { id: "selected-count" }), tagBox, addTagBtn, rmTagBtn, h("span", { class: "sep" }, "|"), moveBtn,
    deleteBtn, bulkMsg);
  // outside the bulk bar, which hides once the moved or deleted runs leave the selection
  const confirmPanel = h("div", { id: "bulk-confirm", class: "confirm", role: "dialog", hidden: true });
  const actionMsg = h("div", { id: "action-msg", role: "status", hidden: true });

  const table = h("table", { id: "runs-table", class: "grid runs" });
  const chartsTitle = h("h2", { id: "charts-title" }, "Charts");
  const xBox = h("select", { id: "x-axis" }, ["_step", "_runtime", "_timestamp"].map((x) => h("option", { value: x }, x)));
  const smoothBox = h("input", { id: "smoothing", type: "range", min: 0, max: 0.99, step: 0.01 });
  const smoothLabel = h("span", { id: "smoothing-value", class: "muted" });
  const logBox = h("input", { id: "log-scale", type: "checkbox" });
  const bandBox = h("select", { id: "group-band", title: "The shaded band of a group", "aria-label": "Group band" },
    h("option", { value: "std" }, "band ±1 std"), h("option", { value: "minmax" }, "band min–max"));
  const outlierBox = h("select", { id: "outliers", title: "Ignore outliers in the y range", "aria-label": "Outliers" },
    h("option", { value: "auto" }, "outliers: auto"), h("option", { value: "on" }, "ignore outliers"),
    h("option", { value: "off" }, "show outliers"));
  const chartRoot = h("div", { id: "charts" });
  const mediaRoot = h("section", { id: "workspace-media" });
  const systemRoot = h("div", { id: "workspace-system-charts" });
  const systemStatus = h("span", { id: "workspace-system-status", class: "muted" });
  const systemSection = h("details", { id: "workspace-system", class: "section" },
    h("summary", {}, "System ", systemStatus), systemRoot);


  main.append(
    h("section", { class: "runs-pane" },
      h("div", { class: "toolbar" }, searchBox, countLabel, h("span", { class: "spacer" }), expandBtn),
      h("div", { class: "toolbar" }, "Filter ", fieldBox, opBox, valueBox,
        h("button", { id: "filter-add", onclick: () => addFilter() }, "Add filter"), fieldList, chips),
      h("div", { class: "toolbar" }, "Group by ", groupBox, " Add column ", columnBox, " ", cropBox,
        h("label", {}, " Charted runs ", maxRunsBox)),
      bulk, confirmPanel, actionMsg, h("div", { class: "table-wrap" }, table)),
    h("section", { class: "charts-pane" },
      h("div", { class: "toolbar" }, chartsTitle, h("label", {}, "x ", xBox),
        h("label", {}, " smoothing ", smoothBox, smoothLabel), h("label", {}, logBox, " log scale"), bandBox, outlierBox),
      chartRoot, systemSection, mediaRoot));

  xBox.value = st.x;
  searchBox.value = st.search;
  smoothBox.value = st.smoothing;
  smoothLabel.textContent = String(st.smoothing);
  logBox.checked = st.log;
  bandBox.value = st.band;
  outlierBox.value = st.outliers;

  // -- columns ----------------------------------------------------------------------------------

  const meta = (r) => (r.metadata && typeof r.metadata === "object" ? r.metadata : {});
  const FIXED = [
    { id: "name", label: "Name", order: "name", cell: (r) => nameCell(r) },
    { id: "state", label: "State", order: "state", cell: (r) => rs.stateBadge(r.state) },
    { id: "created", label: "Created", order: "created_at", cell: (r) => rs.fmtTime(r.created_at) },
    { id: "runtime", label: "Runtime", order: "runtime", cell: (r) => rs.fmtDuration(r.runtime) },
    { id: "tags", label: "Tags", order: "tags", cell: (r) => r.tags.map((t) => h("span", { class: "tag" }, t)) },
    { id: "group", label: "Group", order: "group", cell: (r) => r.group || "" },
    { id: "job_type", label: "Job type", order: "job_type", cell: (r) => r.job_type || "" },
    { id: "user", label: "User", order: "user", cell: (r) => meta(r).username || "" },
    { id: "notes", label: "Notes", cell: (r) => h("span", { class: "notes", title: r.notes || "" }, crop((r.notes || "").split("\n")[0], 40, "end")) },
  ];
  const NAME_WIDTH = 28;
  /** `text` cropped to `n` characters at its end, middle or beginning (the guide's three modes). */
  function crop(text, n, mode) {
    const t = String(text);
    if (t.length <= n) return t;
    if (mode === "end") return t.slice(0, n - 1) + "…";
    if (mode === "beginning") return "…" + t.slice(t.length - n + 1);
    const head = Math.ceil((n - 1) / 2);
    return t.slice(0, head) + "…" + t.slice(t.length - (n - 1 - head));
  }
  function nameCell(r) {
    const full = r.name || r.run_id;
    return [h("a", { href: rs.runHref(entity, project, r.run_id), class: "run-link", title: full },
              crop(full, NAME_WIDTH, st.crop)), kebab(r)];
  }
  function userColumn(id) {
    const [kind, ...rest] = id.split(".");
    const key = rest.join(".");
    const src = kind === "config" ? "config" : "summary";
    return { id, label: id, order: kind === "config" ? `config.${key}` : `summary_metrics.${key}`, removable: true,
             cell: (r) => rs.fmtValue((r[src] || {})[key]) };
  }
  const columns = () => [...FIXED, ...st.columns.map(userColumn)];

  // -- fetching ---------------------------------------------------------------------------------

  function parseValue(text) {
    const t = text.trim();
    if (/^-?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(t)) return Number(t);
    if (t === "true" || t === "false") return t === "true";
    return t;
  }

  function filterCondition(f) {
    const v = f.value;
    switch (f.op) {
      case "=": return { [f.field]: parseValue(v) };
      case "!=": return { [f.field]: { $ne: parseValue(v) } };
      case ">": return { [f.field]: { $gt: parseValue(v) } };
      case ">=": return { [f.field]: { $gte: parseValue(v) } };
      case "<": return { [f.field]: { $lt: parseValue(v) } };
      case "<=": return { [f.field]: { $lte: parseValue(v) } };
      case "in": return { [f.field]: { $in: v.split(",").map(parseValue) } };
      case "not in": return { [f.field]: { $nin: v.split(",").map(parseValue) } };
      case "regex": return { [f.field]: { $regex: v } };
      case "exists": return { [f.field]: { $exists: v.trim() !== "false" } };
    }
    throw new Error(`unknown filter operator ${f.op}`);
  }

  function filtersJson() {
    const parts = st.filters.map(filterCondition);
    if (st.search.trim()) parts.push({ name: { $regex: st.search.trim(), $options: "i" } });
    return parts.length ? JSON.stringify({ $and: parts }) : null;
  }

  let fetchToken = 0;
  async function fetchRuns() {
    const token = ++fetchToken;
    const params = new URLSearchParams({ per_page: String(PAGE), order: st.order, fresh: "true" });
    const f = filtersJson();
    if (f) params.set("filters", f);
    const runs = [];
    let offset = 0;
    let charted = null;  // the charted ids once drawn from the first page
    try {
      for (;;) {
        params.set("offset", String(offset));
        const page = await rs.api("GET", `${base}/runs?${params}`);
        if (token !== fetchToken) return;
        runs.push(...page.runs);
        const done = page.next_offset === null || page.next_offset === undefined;
        if (charted === null || done) {
          // the first page is the table's top and the charted runs: show it at once, the rest as it comes
          document.getElementById("banner").hidden = true;
          st.runs = runs.slice();
          st.total = page.total;
          render();
          const ids = shownRuns().map((r) => r.run_id).join("\n");
          if (ids !== charted) { charted = ids; fetchCharts(); }
        }
        if (done) break;
        offset = page.next_offset;
      }
    } catch (e) {
      if (token === fetchToken) { rs.showError(`Could not list runs: ${e.message}`); st.runs = []; render(); }
    }
  }

  /** The charted runs: the first maxRuns of the table in its current order (filters and search applied),
   * then the eye icon's choices on top. */
  const shownRuns = () => st.runs.filter((r, i) => {
    const o = st.overrides[r.run_id];
    return o === undefined ? i < st.maxRuns : o;
  });
  let shownIdx = new Map();  // run_id → position among the charted runs; rebuilt by render()
  const indexShown = () => { shownIdx = new Map(shownRuns().map((r, i) => [r.run_id, i])); };
  const visibleSet = () => shownIdx;

  function colourOf(r) {
    if (st.colours[r.run_id]) return st.colours[r.run_id];
    const i = shownIdx.get(r.run_id);
    if (i !== undefined) return RSCharts.colour(i);
    let hash = 0;
    for (const c of r.run_uid || r.run_id) hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
    return RSCharts.colour(hash);
  }

  function groupValue(r) {
    if (!st.groupBy) return null;
    if (st.groupBy === "group") return r.group;
    if (st.groupBy === "job_type") return r.job_type;
    const key = st.groupBy.slice("config.".length);
    const v = (r.config || {})[key];
    return v === undefined || v === null ? null : rs.fmtValue(v);
  }

  function groups(runs) {
    const out = new Map();
    for (const r of runs) {
      const g = groupValue(r);
      const label = g === null || g === undefined || g === "" ? "(none)" : String(g);
      if (!out.has(label)) out.set(label, []);
      out.get(label).push(r);
    }
    return out;
  }

  let chartToken = 0;
  const panel = RSCharts.panel(chartRoot, (key, lo, hi) => {
    if (lo === null) delete st.zoom[key]; else st.zoom[key] = [Number(lo), Number(hi)];
    syncUrl();
    zoom(key, lo, hi);
  }, { layout: { get: () => ({ order: [], hidden: [], wide: [], max: {}, ...load("layout", {}) }), save: (l) => save("layout", l) } });

  // the System section: the charted runs' system metrics (x: _runtime), loaded when opened
  const systemPanel = RSCharts.panel(systemRoot, null);
  let systemToken = 0;
  async function fetchSystem() {
    if (!systemSection.open) return;
    const token = ++systemToken;
    const shown = shownRuns().slice(0, 20);
    systemStatus.textContent = "loading…";
    const series = [];
    try {
      const all = await Promise.all(shown.map((r) => rs.api("GET", `${runApi(r)}/system?samples=500`).catch(() => null)));
      all.forEach((res, i) => {
        if (!res) return;
        for (const col of res.columns.filter((c) => !c.startsWith("_"))) {
          const s = { run_id: shown[i].run_id, key: `system/${col.replace(/^system\./, "")}`, x: [], y: [] };
          for (const row of res.rows) {
            const v = row[col];
            if (typeof v === "number" && isFinite(v) && typeof row._runtime === "number") { s.x.push(row._runtime); s.y.push(v); }
          }
          if (s.x.length) series.push(s);
        }
      });
    } catch (e) {
      systemStatus.textContent = `could not load: ${e.message}`;
      return;
    }
    if (token !== systemToken) return;
    const runs = new Map(shown.map((r) => [r.run_id, { name: r.name || r.run_id, color: colourOf(r) }]));
    systemStatus.textContent = series.length ? `(${new Set(series.map((s) => s.key)).size})` : "(none recorded by the charted runs)";
    systemPanel.set({ series, runs, groups: null, x: "_runtime", smoothing: 0, log: false, outliers: "off" });
    systemRoot.dataset.ready = String(token);
  }
  systemSection.addEventListener("toggle", fetchSystem);
  const mediaPanel = RSWorkspaceMedia.panel(mediaRoot, entity, project);
  function buckets(n) { return n > 100 ? 100 : n > 20 ? 250 : 500; }

  async function fetchSeries(runs, extra) {
    const ids = runs.map((r) => r.run_id);
    if (!ids.length) return [];
    const out = [];
    for (let i = 0; i < ids.length; i += 200) {
      const res = await rs.api("POST", `/api/ui/projects/${rs.enc(entity, project)}/series`,
                               { runs: ids.slice(i, i + 200), x: st.x, buckets: buckets(ids.length), ...extra });
      out.push(...res.series);
    }
    return out;
  }

  function chartState(series) {
    const shown = shownRuns();
    const runs = new Map(shown.map((r) => [r.run_id, { name: r.name || r.run_id, color: colourOf(r) }]));
    let gs = null;
    if (st.groupBy) {
      gs = [...groups(shown)].map(([name, members], i) => ({ name, color: RSCharts.colour(i), members: members.map((r) => r.run_id) }));
    }
    return { series, runs, groups: gs, x: st.x, zoom: st.zoom, smoothing: Number(st.smoothing), log: st.log, band: st.band, outliers: st.outliers };
  }

  async function fetchCharts() {
    indexShown();
    const token = ++chartToken;
    const shown = shownRuns();
    chartsTitle.textContent = `Charts (${shown.length} visualized)`;
    mediaPanel.set(shown.map((r) => ({ run_id: r.run_id, name: r.name || r.run_id, color: colourOf(r) })));
    fetchSystem();
    try {
      const series = await fetchSeries(shown, {});  // plotly.js runs after this: the table is drawn by then
      if (token !== chartToken) return;
      panel.set(chartState(series));
      chartRoot.dataset.ready = String(token);
      for (const [key, [lo, hi]] of Object.entries(st.zoom)) zoom(key, lo, hi);  // a linked zoom, at full resolution
    } catch (e) {
      rs.showError(`Could not load charts: ${e.message}`);
    }
  }

  function redrawCharts() {
    if (panel.state) panel.set(chartState(panel.state.series));
  }

  async function zoom(key, lo, hi) {
    try {
      const extra = lo === null ? { keys: [key] } : { keys: [key], x_min: Number(lo), x_max: Number(hi) };
      panel.replaceKey(key, await fetchSeries(shownRuns(), extra));
    } catch (e) {
      rs.showError(`Could not load the zoomed range of ${key}: ${e.message}`);
    }
  }

  // -- rendering --------------------------------------------------------------------------------

  function header() {
    const selAll = h("input", { type: "checkbox", id: "select-all", title: "Select all shown runs" });
    selAll.checked = st.runs.length > 0 && st.runs.every((r) => st.selected.has(r.run_id));
    selAll.addEventListener("change", () => {
      for (const r of st.runs) selAll.checked ? st.selected.add(r.run_id) : st.selected.delete(r.run_id);
      render();
    });
    const cells = columns().map((c) => {
      const dir = st.order === `+${c.order}` || st.order === c.order ? "asc" : st.order === `-${c.order}` ? "desc" : null;
      const th = h("th", { "data-col": c.id, class: c.order ? "sortable" : null, "aria-sort": dir ? `${dir}ending` : null },
        h("span", { class: "resizable" }, c.label, dir ? h("span", { class: "arrow" }, dir === "asc" ? " ▲" : " ▼") : null));
      if (c.order) th.addEventListener("click", () => {  // the order now, not when this header was drawn
        st.order = st.order === `-${c.order}` ? `+${c.order}` : `-${c.order}`; save("order", st.order); syncUrl(); fetchRuns();
      });
      if (c.removable) {
        th.append(h("button", { class: "x", title: "Remove column", onclick: (ev) => { ev.stopPropagation();
          st.columns = st.columns.filter((x) => x !== c.id); save("columns", st.columns); render(); } }, "×"));
      }
      return th;
    });
    return h("thead", {}, h("tr", {}, h("th", {}, selAll), h("th", { title: "Show in charts" }, "show"), h("th", {}, ""), cells));
  }

  function runRow(r, hidden) {
    const vis = visibleSet();
    const sel = h("input", { type: "checkbox", class: "select", title: "Select" });
    sel.checked = st.selected.has(r.run_id);
    sel.addEventListener("change", () => { sel.checked ? st.selected.add(r.run_id) : st.selected.delete(r.run_id); renderBulk(); });
    const eye = h("input", { type: "checkbox", class: "visible", title: "Show in charts" });
    eye.checked = vis.has(r.run_id);
    eye.addEventListener("change", () => setVisible([r.run_id], eye.checked));
    const colour = h("input", { type: "color", class: "colour", value: colourOf(r), title: "Colour in charts" });
    colour.addEventListener("change", () => { st.colours[r.run_id] = colour.value; save("colours", st.colours); redrawCharts(); });
    return h("tr", { class: "run", "data-run": r.run_id, hidden: hidden },
      h("td", {}, sel), h("td", {}, eye), h("td", {}, colour),
      columns().map((c) => h("td", { "data-col": c.id }, c.cell(r))));
  }

  const ROWS = 200;  // rows drawn at a time: a 10,000-run project pages its table ("Show more")
  let rowLimit = ROWS;
  function render() {
    indexShown();
    syncUrl();
    const body = h("tbody", {});
    let drawn = 0;
    if (!st.runs.length) {
      body.append(h("tr", {}, h("td", { colspan: columns().length + 3, class: "empty" },
        st.filters.length || st.search ? "No runs match the search and filters." : "No runs in this project yet.")));
    } else if (st.groupBy) {
      for (const [label, members] of groups(st.runs)) {
        const collapsed = !st.expanded.has(label);
        const vis = visibleSet();
        const eye = h("input", { type: "checkbox", class: "visible", title: "Show the group's runs in charts" });
        eye.checked = members.some((r) => vis.has(r.run_id));
        eye.addEventListener("change", () => setVisible(members.map((r) => r.run_id), eye.checked));
        const toggle = h("button", { class: "toggle", "aria-expanded": String(!collapsed),
          onclick: () => { st.expanded.has(label) ? st.expanded.delete(label) : st.expanded.add(label); render(); } },
          collapsed ? "▸" : "▾");
        body.append(h("tr", { class: "group-row", "data-group": label },
          h("td", {}, toggle), h("td", {}, eye), h("td", {}),
          h("td", { colspan: columns().length }, h("strong", {}, `${st.groupBy}: ${label}`), h("span", { class: "muted" }, ` ${members.length} runs`))));
        if (collapsed) continue;  // a collapsed group's rows are drawn when it opens
        for (const r of members) {
          if (drawn >= rowLimit) break;
          body.append(runRow(r, false));
          drawn++;
        }
      }
    } else {
      for (const r of st.runs.slice(0, rowLimit)) body.append(runRow(r, false));
      drawn = Math.min(st.runs.length, rowLimit);
    }
    if (!st.groupBy && st.runs.length > rowLimit) {
      const rest = st.runs.length - rowLimit;
      body.append(h("tr", { class: "more-row" }, h("td", { colspan: columns().length + 3 },
        h("button", { id: "more-runs", onclick: () => { rowLimit += ROWS; render(); } },
          `Show ${Math.min(ROWS, rest)} more`), h("span", { class: "muted" }, ` of ${rest} not shown`))));
    }
    table.replaceChildren(header(), body);
    countLabel.textContent = `${st.total} run${st.total === 1 ? "" : "s"}`;
    renderChips();
    renderOptions();
    renderBulk();
  }

  function renderChips() {
    chips.replaceChildren(...st.filters.map((f, i) => h("span", { class: "chip", "data-filter": i },
      `${f.field} ${f.op} ${f.op === "exists" ? "" : f.value}`,
      h("button", { class: "x", title: "Remove filter", onclick: () => { st.filters.splice(i, 1); save("filters", st.filters); fetchRuns(); } }, "×"))));
  }

  function knownKeys() {
    const config = new Set(), summary = new Set();
    for (const r of st.runs) {
      for (const k of Object.keys(r.config || {})) config.add(k);
      for (const k of Object.keys(r.summary || {})) if (!k.startsWith("_")) summary.add(k);
    }
    return { config: [...config].sort(), summary: [...summary].sort() };
  }

  function renderOptions() {
    const { config, summary } = knownKeys();
    const fields = ["state", "name", "tags", "group", "job_type", "created_at", "runtime", "notes",
                    ...config.map((k) => `config.${k}`), ...summary.map((k) => `summary_metrics.${k}`)];
    fieldList.replaceChildren(...fields.map((f) => h("option", { value: f })));
    const groupOpts = [["", "(no grouping)"], ["group", "group"], ["job_type", "job type"], ...config.map((k) => [`config.${k}`, `config.${k}`])];
    if (st.groupBy && !groupOpts.some(([v]) => v === st.groupBy)) groupOpts.push([st.groupBy, st.groupBy]);
    groupBox.replaceChildren(...groupOpts.map(([v, l]) => h("option", { value: v }, l)));
    groupBox.value = st.groupBy;
    const cols = [...config.map((k) => `config.${k}`), ...summary.map((k) => `summary.${k}`)].filter((c) => !st.columns.includes(c));
    columnBox.replaceChildren(h("option", { value: "" }, "—"), ...cols.map((c) => h("option", { value: c }, c)));
  }

  function renderBulk() {
    const n = st.selected.size;
    bulk.hidden = n === 0;
    document.getElementById("selected-count").textContent = `${n} selected`;
    // a confirmation lists the runs it acts on: a different selection closes it
    if (st.pending && !sameIds(st.pending.runs, selectedRuns())) closeConfirm();
  }

  const sameIds = (a, b) => { const ids = new Set(a.map((r) => r.run_id)); return a.length === b.length && b.every((r) => ids.has(r.run_id)); };

  function setVisible(ids, on) {
    for (const id of ids) st.overrides[id] = on;
    save("overrides", st.overrides);
    render();
    fetchCharts();
  }

  // -- the kebab menu of a run: rename, stop (while running), delete --------------------------------

  let openMenu = null;
  function closeMenu() { if (openMenu) { openMenu.remove(); openMenu = null; } }
  document.addEventListener("click", (ev) => { if (openMenu && !openMenu.contains(ev.target)) closeMenu(); });
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape") closeMenu(); });

  function kebab(r) {
    return h("button", { class: "kebab", title: "Run actions", "aria-haspopup": "menu", "aria-label": `Actions for ${r.name || r.run_id}`,
      onclick: (ev) => {
        ev.stopPropagation();
        const had = openMenu && openMenu.dataset.run === r.run_id;
        closeMenu();
        if (had) return;
        const item = (id, label, fn, cls) => h("button", { role: "menuitem", class: `menu-item ${cls || ""}`, "data-action": id,
          onclick: (e) => { e.stopPropagation(); closeMenu(); fn(); } }, label);
        openMenu = h("div", { class: "menu", role: "menu", "data-run": r.run_id },
          item("rename", "Rename", () => startRename(r)),
          r.state === "running" ? item("stop", "Stop run", () => stopRun(r)) : null,
          item("delete", "Delete…", () => { st.selected = new Set([r.run_id]); render(); ask("delete"); }, "danger"));
        ev.currentTarget.parentElement.append(openMenu);
        openMenu.querySelector("button").focus();
      } }, "⋮");
  }

  function startRename(r) {
    const cell = table.querySelector(`tr.run[data-run="${CSS.escape(r.run_id)}"] td[data-col=name]`);
    if (!cell) return;
    const box = h("input", { id: "rename-input", value: r.name || r.run_id, "aria-label": "New run name", size: 24 });
    box.addEventListener("keydown", async (ev) => {
      if (ev.key === "Escape") { render(); return; }
      if (ev.key !== "Enter") return;
      const name = box.value.trim();
      if (!name) { showMessage("A run's name cannot be empty.", true); return; }
      box.disabled = true;
      try {
        await rs.api("PATCH", runApi(r), { name });
        showMessage(`Renamed ${r.run_id} to ${name}.`);
      } catch (e) {
        showMessage(`Could not rename: ${e.message}`, true);
      }
      fetchRuns();
    });
    cell.replaceChildren(box);
    box.focus();
    box.select();
  }

  async function stopRun(r) {
    try {
      const res = await rs.api("POST", `${runApi(r)}/stop`, { requested_by: "web" });
      showMessage(`Stop requested for ${r.name || r.run_id}${res && res.state ? ` (${res.state})` : ""}.`);
    } catch (e) {
      showMessage(`Could not stop: ${e.message}`, true);
    }
  }

  function toggleExpanded() {
    st.expanded_view = !st.expanded_view;
    main.classList.toggle("expanded", st.expanded_view);
    expandBtn.setAttribute("aria-pressed", String(st.expanded_view));
    expandBtn.textContent = st.expanded_view ? "⤡ Back to charts" : "⤢ Expand";
    if (!st.expanded_view) window.dispatchEvent(new Event("resize"));  // plotly re-fits the charts it hid
  }

  // -- actions ----------------------------------------------------------------------------------

  function addFilter() {
    const field = fieldBox.value.trim();
    if (!field) { rs.showError("Name the field to filter on, e.g. state, tags or config.lr"); return; }
    st.filters.push({ field, op: opBox.value, value: valueBox.value });
    save("filters", st.filters);
    fieldBox.value = valueBox.value = "";
    fetchRuns();
  }

  const selectedRuns = () => st.runs.filter((r) => st.selected.has(r.run_id));
  const runApi = (r) => `/api/runs/${rs.enc(entity, project, r.run_id)}`;

  async function retag(add) {
    const tag = tagBox.value.trim();
    if (!tag) { bulkMsg.textContent = "Type a tag first."; return; }
    bulkMsg.textContent = "Saving…";
    try {
      for (const r of selectedRuns()) {
        const tags = add ? [...new Set([...r.tags, tag])] : r.tags.filter((t) => t !== tag);
        await rs.api("PATCH", runApi(r), { tags });
      }
      bulkMsg.textContent = `${add ? "Tagged" : "Untagged"} ${st.selected.size} run(s).`;
      tagBox.value = "";
    } catch (e) {
      bulkMsg.textContent = `Could not change tags: ${e.message}`;
    }
    fetchRuns();
  }

  // Move and delete act on the selected runs in one bulk call, so the server checks them all before
  // changing anything (a taken target path, or a fork left behind, refuses the whole call with 409).

  function ask(kind) {
    const runs = selectedRuns();
    if (!runs.length) return;
    st.pending = { kind, runs };
    showMessage(null);
    const n = runs.length, noun = `${n} run${n === 1 ? "" : "s"}`;
    const list = h("ul", { id: "confirm-runs" }, runs.map((r) => h("li", { "data-run": r.run_id },
      h("strong", {}, r.name || r.run_id), h("span", { class: "muted" }, ` ${entity}/${project}/${r.run_id}`))));
    const cancel = h("button", { id: "confirm-cancel", onclick: () => closeConfirm() }, "Cancel");
    if (kind === "move") {
      const target = h("input", { id: "move-project", list: "move-projects", placeholder: "project", size: 18,
                                  "aria-label": "Project to move to" });
      const known = h("datalist", { id: "move-projects" });
      const go = h("button", { id: "confirm-move", onclick: () => move(runs, target.value.trim(), go) }, `Move ${noun}`);
      target.addEventListener("keydown", (ev) => { if (ev.key === "Enter") go.click(); });
      confirmPanel.replaceChildren(h("p", {}, `Move ${noun} to another project of ${entity}: `, target, known, " ", go, " ", cancel),
        list, h("p", { class: "muted" }, "Their history, config, summary, files and artifacts go with them; their old paths stop resolving."));
      projectOptions(known);
      confirmPanel.hidden = false;
      target.focus();
    } else {
      const go = h("button", { id: "confirm-delete", class: "danger", onclick: () => remove(runs, go) }, `Delete ${noun} for good`);
      confirmPanel.replaceChildren(h("p", {}, h("strong", {}, `Delete ${noun}?`), " This cannot be undone."), list,
        h("p", {}, "Their history, config, summary, console output, and the files and artifacts only they use are removed, and " +
                   "their ids can never be used again. A run that has forks can only be deleted together with its forks: " +
                   "select those too."),
        h("p", {}, go, " ", cancel));
      confirmPanel.hidden = false;
      cancel.focus();
    }
  }

  function closeConfirm() {
    st.pending = null;
    confirmPanel.hidden = true;
    confirmPanel.replaceChildren();
  }

  /** The result of a move or delete under the table's toolbar; errors (the server's text) in red. */
  function showMessage(text, isError) {
    actionMsg.hidden = !text;
    actionMsg.className = isError ? "error" : "notice";
    actionMsg.replaceChildren(...(text ? [text].flat() : []));
  }

  async function projectOptions(list) {
    try {
      const data = await rs.api("GET", `/api/projects?entity=${encodeURIComponent(entity)}`);
      list.replaceChildren(...data.projects.filter((p) => p.project !== project).map((p) => h("option", { value: p.project })));
    } catch { /* only suggestions: the input still takes any name */ }
  }

  /** The runs acted on leave the selection and the charts' settings of this project. */
  function forget(runIds) {
    for (const id of runIds) { st.selected.delete(id); delete st.colours[id]; }
    for (const id of runIds) delete st.overrides[id];
    save("overrides", st.overrides);
    save("colours", st.colours);
  }

  async function move(runs, dest, btn) {
    if (!dest) { showMessage("Type the project to move the runs to.", true); return; }
    if (dest === project) { showMessage(`The runs are in ${project} already.`, true); return; }
    btn.disabled = true;
    try {
      const res = await rs.api("POST", `${base}/runs/move`, { project: dest, run_ids: runs.map((r) => r.run_id) });
      closeConfirm();
      forget(runs.map((r) => r.run_id));
      const n = res.moved.length;
      showMessage([`Moved ${n} run${n === 1 ? "" : "s"} to `, h("a", { href: rs.projectHref(entity, dest), id: "moved-to" }, dest),
                   res.projected ? "." : " (the table catches up once the server has applied it)."]);
    } catch (e) {
      btn.disabled = false;
      showMessage(`Could not move: ${e.message}`, true);
    }
    fetchRuns();
  }

  async function remove(runs, btn) {
    btn.disabled = true;
    try {
      const res = await rs.api("POST", `${base}/runs/delete`, { run_ids: runs.map((r) => r.run_id) });
      closeConfirm();
      forget(runs.map((r) => r.run_id));
      const n = res.deleted.length;
      showMessage(`Deleted ${n} run${n === 1 ? "" : "s"}${res.projected ? "." : " (the table catches up once the server has applied it)."}`);
    } catch (e) {
      btn.disabled = false;
      showMessage(`Could not delete: ${e.message}`, true);
    }
    fetchRuns();
  }

  // -- events -----------------------------------------------------------------------------------

  let searchTimer = null;
  searchBox.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { st.search = searchBox.value; fetchRuns(); }, 250);
  });
  valueBox.addEventListener("keydown", (ev) => { if (ev.key === "Enter") addFilter(); });
  groupBox.addEventListener("change", () => { st.groupBy = groupBox.value; syncUrl(); save("groupBy", st.groupBy); render(); redrawCharts(); });
  columnBox.addEventListener("change", () => {
    if (columnBox.value) { st.columns.push(columnBox.value); save("columns", st.columns); render(); }
  });
  maxRunsBox.addEventListener("change", () => {
    const n = Math.max(1, Math.floor(Number(maxRunsBox.value) || DEFAULT_MAX_RUNS));
    st.maxRuns = n; maxRunsBox.value = n; save("maxRuns", n); render(); fetchCharts();
  });
  cropBox.addEventListener("change", () => { st.crop = cropBox.value; save("crop", st.crop); render(); });
  xBox.addEventListener("change", () => { st.x = xBox.value; st.zoom = {}; save("x", st.x); syncUrl(); fetchCharts(); });
  smoothBox.addEventListener("input", () => { st.smoothing = Number(smoothBox.value); smoothLabel.textContent = smoothBox.value; save("smoothing", st.smoothing); redrawCharts(); });
  logBox.addEventListener("change", () => { st.log = logBox.checked; save("log", st.log); redrawCharts(); });
  bandBox.addEventListener("change", () => { st.band = bandBox.value; save("band", st.band); redrawCharts(); });
  outlierBox.addEventListener("change", () => { st.outliers = outlierBox.value; save("outliers", st.outliers); redrawCharts(); });

  // live: the project's runs as they change; a new run or a visible run that logged more refetches
  let liveTimer = null;
  function liveRun(run) {
    const i = st.runs.findIndex((r) => r.run_uid === run.run_uid);
    if (i < 0) { schedule(fetchRuns); return; }
    const old = st.runs[i];
    st.runs[i] = { ...old, ...run, config: old.config };
    if (old.state !== run.state || old.name !== run.name || String(old.tags) !== String(run.tags)) scheduleRender();
    if (old.last_step !== run.last_step && visibleSet().has(run.run_id)) schedule(fetchCharts);
  }
  const pending = new Set();
  function schedule(fn) {
    pending.add(fn);
    if (liveTimer) return;
    liveTimer = setTimeout(() => { liveTimer = null; const fns = [...pending]; pending.clear(); fns.forEach((f) => f()); }, 1000);
  }
  let renderQueued = false;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => { renderQueued = false; render(); });
  }

  await fetchRuns();
  rs.follow(`${base}/runs/events`, { run: liveRun, error: () => {} });
})();
