// runstream web app: one run — Overview (metadata, editable notes and tags, config, summary, lineage),
// Charts (live while the run logs; a fork's inherited segment dotted, a rewound run's branches), the
// System, Logs, Files and Artifacts tabs (run_tabs.js), and the Stop button of a running run.
"use strict";

(async () => {
  const { h } = rs;
  const [entity, project, , runId] = rs.pathParts();
  const runApi = `/api/runs/${rs.enc(entity, project, runId)}`;
  const main = rs.frame([[entity, null], [project, rs.projectHref(entity, project)], [runId, null]]);
  main.classList.add("run-page");

  let run;
  try {
    run = await rs.api("GET", `${runApi}?fresh=true`);
  } catch (e) {
    rs.showError(e.status === 404 ? `No run ${entity}/${project}/${runId}: it may have been moved or deleted.`
                                  : `Could not load the run: ${e.message}`);
    return;
  }
  document.title = `${run.name || runId} · runstream`;
  const routes = await rs.routes();

  // -- header and tabs --------------------------------------------------------------------------

  const badge = h("span", { id: "run-state" }, rs.stateBadge(run.state));
  const title = h("h1", { id: "run-name" }, run.name || runId);
  const stopBtn = h("button", { id: "stop-run", class: "danger", onclick: () => stop() }, "Stop run");
  const stopMsg = h("span", { id: "stop-msg", class: "muted" });
  const TABS = ["overview", "charts", "media", "system", "logs", "files", "artifacts"];
  const tabBar = h("nav", { class: "tabs" }, TABS.map((t) => h("a", { href: `${location.pathname}#${t}`, "data-tab": t }, t[0].toUpperCase() + t.slice(1))));
  const panes = Object.fromEntries(TABS.map((t) => [t, h("section", { class: "pane", id: `tab-${t}`, hidden: true })]));
  main.append(h("div", { class: "run-head" }, title, badge, stopBtn, stopMsg), tabBar, ...Object.values(panes));

  function showTab() {
    const want = TABS.includes(location.hash.slice(1)) ? location.hash.slice(1) : "overview";
    for (const t of TABS) {
      panes[t].hidden = t !== want;
      tabBar.querySelector(`[data-tab="${t}"]`).classList.toggle("active", t === want);
    }
    if (want === "charts") ensureCharts();
    if (tabs[want]) tabs[want].show();
  }
  window.addEventListener("hashchange", showTab);

  function renderStop() {
    stopBtn.hidden = run.state !== "running";
    if (!routes["POST /api/runs/{}/{}/{}/stop"]) {
      stopBtn.disabled = true;
      stopBtn.title = "This server cannot stop runs yet (no POST /api/runs/{entity}/{project}/{id}/stop)";
    }
  }

  async function stop() {
    stopBtn.disabled = true;
    try {
      const res = await rs.api("POST", `${runApi}/stop`, { requested_by: "web" });
      const n = (res.writers || []).length;
      stopMsg.textContent = `Stop requested: ${n || "the"} process${n === 1 || !n ? "" : "es"} got a KeyboardInterrupt; the run ends killed.`;
    } catch (e) {
      if (e.status === 409) {
        stopMsg.textContent = `Not stopped: ${e.message}`;
      } else if (e.status === 404 || e.status === 405) {
        stopBtn.title = `This server cannot stop runs yet (it answered ${e.status})`;
        stopMsg.textContent = "Stopping runs is not available on this server.";
      } else {
        stopBtn.disabled = false;
        stopMsg.textContent = `Could not stop the run: ${e.message}`;
      }
    }
  }

  // -- overview ---------------------------------------------------------------------------------

  const meta = run.metadata && typeof run.metadata === "object" ? run.metadata : {};
  const notesBox = h("textarea", { id: "notes", rows: 3, cols: 60, placeholder: "What is this run about?" });
  notesBox.value = run.notes || "";
  const notesSave = h("button", { id: "notes-save", onclick: () => saveMeta({ notes: notesBox.value }, notesMsg) }, "Save notes");
  const notesMsg = h("span", { class: "muted", id: "notes-msg" });
  const tagsList = h("span", { id: "tags", class: "chips" });
  const tagBox = h("input", { id: "tag-input", placeholder: "add a tag", size: 14 });
  const tagMsg = h("span", { class: "muted", id: "tags-msg" });
  const tagAdd = h("button", { id: "tag-add", onclick: () => addTag() }, "Add");
  tagBox.addEventListener("keydown", (ev) => { if (ev.key === "Enter") addTag(); });

  function renderTags() {
    tagsList.replaceChildren(...run.tags.map((t) => h("span", { class: "tag", "data-tag": t }, t,
      h("button", { class: "x", title: `Remove tag ${t}`, onclick: () => saveMeta({ tags: run.tags.filter((x) => x !== t) }, tagMsg) }, "×"))));
  }

  function addTag() {
    const t = tagBox.value.trim();
    if (!t) return;
    tagBox.value = "";
    if (!run.tags.includes(t)) saveMeta({ tags: [...run.tags, t] }, tagMsg);
  }

  async function saveMeta(changes, msg) {
    msg.textContent = "Saving…";
    try {
      await rs.api("PATCH", runApi, changes);
      Object.assign(run, changes);
      renderTags();
      msg.textContent = "Saved.";
    } catch (e) {
      msg.textContent = `Could not save: ${e.message}`;
    }
  }

  const git = meta.git && typeof meta.git === "object" ? meta.git : {};
  // the guide: Duration is the time the run was running (resume gaps and time crashed left out: the
  // projection's runtime, from finish or the last heartbeat of each session); Runtime is the wall clock
  // from start to end (to now while running, to the last sign of life when crashed)
  const epoch = (t) => (t === null || t === undefined ? null : typeof t === "number" ? t * 1000 : new Date(t).getTime());
  function wallClock(r) {
    const start = epoch(r.created_at);
    const end = r.state === "running" ? Date.now() : epoch(r.finished_at) ?? epoch(r.heartbeat_at);
    return start === null || end === null || isNaN(start) || isNaN(end) ? null : Math.max(0, (end - start) / 1000);
  }
  const durationCell = h("span", { id: "duration" }, rs.fmtDuration(run.runtime));
  const nameBox = h("input", { id: "name-edit", value: run.name || runId, "aria-label": "Run name", size: 32 });
  const nameMsg = h("span", { id: "name-msg", class: "muted" });
  async function saveName() {
    const name = nameBox.value.trim();
    if (!name) { nameMsg.textContent = "A run's name cannot be empty."; return; }
    if (name === run.name) return;
    await saveMeta({ name }, nameMsg);
    title.textContent = run.name || runId;
    document.title = `${run.name || runId} · runstream`;
  }
  nameBox.addEventListener("keydown", (ev) => { if (ev.key === "Enter") saveName(); if (ev.key === "Escape") nameBox.value = run.name || runId; });
  nameBox.addEventListener("change", saveName);
  const artifactOutputs = h("div", { id: "artifact-outputs" }, "…");
  rs.api("GET", `${runApi}/artifacts?role=output`).then((res) => {
    const rows = (res && res.artifacts) || [];
    artifactOutputs.replaceChildren(...(rows.length ? rows.map((a) => h("div", { class: "artifact-output", "data-artifact": `${a.name}:v${a.version}` },
      h("a", { href: "#artifacts" }, `${a.name}:v${a.version}`), h("span", { class: "muted" }, ` ${a.type || ""}`))) : [h("span", { class: "muted" }, "none")]));
  }).catch((e) => { artifactOutputs.textContent = `could not be loaded: ${e.message}`; });
  const hardware = [meta.cpu_count ? `${meta.cpu_count} CPU${meta.cpu_count_physical ? ` (${meta.cpu_count_physical} cores)` : ""}` : null,
                    meta.memory_total ? `${rs.fmtBytes(meta.memory_total)} RAM` : null,
                    meta.gpu_count ? `${meta.gpu_count} × ${(meta.gpu_names || []).join(", ")}` : null].filter(Boolean).join(", ");
  const runtimeCell = h("span", { id: "runtime" }, rs.fmtDuration(wallClock(run)));
  const lineageCell = h("div", { id: "lineage" }, "—");
  const rows = [
    ["State", rs.stateBadge(run.state), "state"], ["Name", h("div", {}, nameBox, " ", nameMsg), "name"],
    ["Notes", h("div", {}, notesBox, h("div", {}, notesSave, " ", notesMsg)), "notes"],
    ["Tags", h("div", {}, tagsList, " ", tagBox, tagAdd, " ", tagMsg), "tags"],
    ["Author", meta.username || "", "author"], ["Command", meta.command || "", "command"],
    ["Start time", rs.fmtTime(meta.started_at || run.created_at), "start"],
    ["Duration", durationCell, "duration"],
    ["Runtime", runtimeCell, "runtime"],
    ["Group", run.group || "", "group"], ["Job type", run.job_type || "", "job_type"],
    ["Git repository", git.remote || "", "git-remote"],
    ["Git commit", [git.commit || "", git.branch ? ` (${git.branch})` : "", git.dirty ? " dirty" : ""].join(""), "git-commit"],
    ["Host", meta.host || "", "host"], ["OS", meta.os || "", "os"],
    ["Python executable", meta.python_executable || "", "python-executable"], ["Python version", meta.python || "", "python"],
    ["Run path", `${entity}/${project}/${runId}`, "path"], ["System hardware", hardware, "hardware"],
    ["runstream version", meta.runstream_version || "", "version"], ["Exit code", run.exit_code ?? "", "exit-code"],
    ["Lineage", lineageCell, "lineage"], ["Artifact Outputs", artifactOutputs, "artifact-outputs"],
  ];
  function kvTable(id, obj) {
    const keys = Object.keys(obj || {}).sort();
    if (!keys.length) return h("p", { class: "muted", id }, "none");
    return h("table", { class: "grid kv", id }, h("tbody", {}, keys.map((k) => h("tr", { "data-key": k }, h("th", {}, k), h("td", {}, rs.fmtValue(obj[k]))))));
  }
  const summaryWrap = h("div", {}, kvTable("summary-table", run.summary));
  panes.overview.append(
    h("table", { class: "grid kv overview", id: "overview" }, h("tbody", {}, rows.map(([label, value, id]) =>
      h("tr", { "data-field": id }, h("th", {}, label), h("td", {}, value))))),
    h("h2", {}, "Config"), kvTable("config-table", run.config),
    h("h2", {}, "Summary"), summaryWrap);
  renderTags();
  renderStop();

  const lineage = rs.api("GET", `/api/ui/runs/${rs.enc(entity, project, runId)}/lineage`).catch(() => null);
  lineage.then((lin) => {
    if (!lin) { lineageCell.textContent = "unknown (the lineage could not be loaded)"; return; }
    const parts = [];
    if (lin.origin) {
      const o = lin.origin;
      const at = o.step === null || o.step === undefined ? "" : ` at step ${o.step}`;
      if (o.kind === "rewind" && o.path === `${entity}/${project}/${runId}`) {
        parts.push(h("div", { class: "origin", id: "origin" }, `rewound${at}: earlier branches are archived (Charts: branch)`));
      } else {
        parts.push(h("div", { class: "origin", id: "origin" }, o.kind === "fork" ? "forked from " : `${o.kind || "origin"} of `,
          h("a", { href: `/runs/by-uid/${encodeURIComponent(o.run_uid)}`, id: "origin-link" }, o.name && o.path ? `${o.name} (${o.path})` : o.path || o.run_uid),
          at, o.kind === "fork" ? "; the parent's history up to that step is drawn dotted on the charts" : ""));
      }
    }
    for (const c of lin.children) {
      const [ce, cp, ...cid] = (c.path || "").split("/");
      parts.push(h("div", { class: "child" }, `${c.kind || "child"}: `, h("a", { href: rs.runHref(ce, cp, cid.join("/")) }, c.name || c.path),
        c.step === null || c.step === undefined ? "" : ` from step ${c.step}`));
    }
    lineageCell.replaceChildren(...(parts.length ? parts : ["not forked or rewound"]));
  });

  // -- system, logs, files, artifacts -----------------------------------------------------------

  const ctx = { runApi, entity, project, runId, routes, isLive: () => run.state === "running" };
  const tabs = Object.fromEntries(["system", "logs", "files", "artifacts"].map((t) => [t, RSRunTabs[t](panes[t], ctx)]));
  tabs.media = RSRunMedia.media(panes.media, ctx);

  // -- charts -----------------------------------------------------------------------------------

  const xBox = h("select", { id: "x-axis" }, ["_step", "_runtime", "_timestamp"].map((x) => h("option", { value: x }, x)));
  const smoothBox = h("input", { id: "smoothing", type: "range", min: 0, max: 0.99, step: 0.01, value: 0 });
  const logBox = h("input", { id: "log-scale", type: "checkbox" });
  const branchBox = h("select", { id: "branch", title: "A rewind archives the branch it cut: show one of them" });
  const branchLabel = h("label", { id: "branch-label", hidden: true }, " branch ", branchBox);
  const chartRoot = h("div", { id: "charts" });
  panes.charts.append(h("div", { class: "toolbar" }, h("label", {}, "x ", xBox), h("label", {}, " smoothing ", smoothBox),
    h("label", {}, logBox, " log scale"), branchLabel), chartRoot);
  let origin = null; // {kind, step, name, path} of a forked or rewound run
  const colour = RSCharts.colour(0);
  let panel = null, series = [], chartsLoaded = false;
  const runsMap = () => new Map([[runId, { name: run.name || runId, color: colour }]]);
  function chartState() {
    const branch = branchBox.value === "" ? null : Number(branchBox.value);
    let inherited = null;
    const markers = [];
    if (origin && origin.step !== null && origin.step !== undefined) {
      if (origin.kind === "fork") {
        inherited = origin.step;
        markers.push({ x: origin.step, label: `fork of ${origin.name || origin.path || "parent"}` });
      } else if (origin.kind === "rewind" && branch === null) {
        markers.push({ x: origin.step, label: "rewind" });
      }
    }
    return { series, runs: runsMap(), groups: null, x: xBox.value, smoothing: Number(smoothBox.value), log: logBox.checked,
             inherited, markers };
  }

  async function loadSeries(extra) {
    const branch = branchBox.value === "" ? {} : { branch: Number(branchBox.value) };
    const res = await rs.api("POST", `/api/ui/projects/${rs.enc(entity, project)}/series`, { runs: [runId], x: xBox.value, buckets: 1000, ...branch, ...extra });
    return res.series;
  }

  async function loadBranches() {
    if (!routes["GET /api/runs/{}/{}/{}/branches"]) return;
    let res;
    try { res = await rs.api("GET", `${runApi}/branches`); } catch { return; }
    const list = res.branches || [];
    if (list.length < 2) return;
    const range = (b) => (b.steps ? `steps ${b.min_step}–${b.max_step}` : "no steps");
    branchBox.replaceChildren(...list.slice().reverse().map((b) => h("option", { value: b.current ? "" : String(b.branch) },
      b.current ? `current (${range(b)})` : `archived ${b.branch} (${range(b)})`)));
    branchLabel.hidden = false;
  }

  async function ensureCharts() {
    if (chartsLoaded) return;
    chartsLoaded = true;
    const [lin] = await Promise.all([lineage, loadBranches()]);
    origin = lin && lin.origin ? lin.origin : null;
    panel = RSCharts.panel(chartRoot, async (key, lo, hi) => {
      const extra = lo === null ? { keys: [key] } : { keys: [key], x_min: Number(lo), x_max: Number(hi) };
      panel.replaceKey(key, await loadSeries(extra));
    });
    await reloadCharts();
  }

  async function reloadCharts() {
    try {
      series = await loadSeries({});
      panel.set(chartState());
      chartRoot.dataset.ready = "1";
    } catch (e) {
      rs.showError(`Could not load charts: ${e.message}`);
    }
  }
  xBox.addEventListener("change", reloadCharts);
  branchBox.addEventListener("change", reloadCharts);
  smoothBox.addEventListener("input", () => panel && panel.set(chartState()));
  logBox.addEventListener("change", () => panel && panel.set(chartState()));

  // -- live -------------------------------------------------------------------------------------

  let drawQueued = false;
  function appendRow(row) {
    if (!chartsLoaded || branchBox.value !== "") return; // the charts load everything when first opened
    const x = row[xBox.value];
    if (typeof x !== "number") return;
    for (const [k, v] of Object.entries(row)) {
      if (k.startsWith("_") || typeof v !== "number" || !isFinite(v)) continue;
      let s = series.find((q) => q.key === k);
      if (!s) { s = { run_id: runId, key: k, x: [], y: [] }; series.push(s); }
      if (s.x.length && x <= s.x[s.x.length - 1]) continue;
      s.x.push(x); s.y.push(v);
    }
    if (!drawQueued) {
      drawQueued = true;
      requestAnimationFrame(() => { drawQueued = false; panel.set(chartState()); chartRoot.dataset.lastStep = String(lastStep); });
    }
  }

  function setState(state) {
    if (state === run.state) return;
    const ended = run.state === "running";
    run.state = state;
    if (ended) for (const t of Object.values(tabs)) if (t.ended) t.ended(); // their last lines, files, samples
    badge.replaceChildren(rs.stateBadge(state));
    document.querySelector('[data-field="state"] td').replaceChildren(rs.stateBadge(state));
    renderStop();
  }

  let lastStep = run.last_step ?? -1;
  const live = new Set(["running", "crashed"]);
  if (live.has(run.state)) {
    rs.follow(`${runApi}/history/events?after_step=${encodeURIComponent(lastStep)}`, {
      history: (row) => { lastStep = Math.max(lastStep, row._step); appendRow(row); },
      state: (ev) => setState(ev.state),
      end: (ev) => { setState(ev.state); refreshSummary(); },
      error: () => {},
    });
    // runtime and summary move with the run: refresh them from the project's runs stream
    rs.follow(`/api/projects/${rs.enc(entity, project)}/runs/events?filters=${encodeURIComponent(JSON.stringify({ run_id: runId }))}`, {
      run: (r) => {
        if (r.run_id !== runId) return;
        durationCell.textContent = rs.fmtDuration(r.runtime);
        runtimeCell.textContent = rs.fmtDuration(wallClock(r));
        setState(r.state);
        summaryWrap.replaceChildren(kvTable("summary-table", r.summary));
      },
      error: () => {},
    });
  }

  async function refreshSummary() {
    try {
      const fresh = await rs.api("GET", `${runApi}?fresh=true`);
      durationCell.textContent = rs.fmtDuration(fresh.runtime);
      runtimeCell.textContent = rs.fmtDuration(wallClock(fresh));
      summaryWrap.replaceChildren(kvTable("summary-table", fresh.summary));
    } catch { /* the stream's values stay */ }
  }

  showTab();
})();
