// runstream web app: the run page's data tabs — System (system-metrics charts), Logs (console output,
// search, download, live while the run runs), Files (list, text preview, download) and Artifacts
// (outputs and inputs with versions, aliases, manifests and lineage links). Each tab loads when first
// shown; a tab whose endpoint this server lacks says so instead. Every value is put in the page as text.
"use strict";

const RSRunTabs = (() => {
  const { h } = rs;
  const PREVIEW_MAX = 1024 * 1024; // bytes of a file shown as text; larger ones are downloaded
  const LOG_RENDER_MAX = 5000; // console lines drawn at once (the download has all of them)
  const LOG_POLL_MS = 1500;

  const missing = (what, route) => h("p", { class: "placeholder", "data-placeholder": what },
    `This server has no ${route} endpoint, so the ${what} tab is not available here.`);
  const empty = (id, ...text) => h("div", { class: "placeholder", id }, ...text);
  const code = (s) => h("code", {}, s);
  const epochTime = (s) => (s === null || s === undefined ? "" : rs.fmtTime(new Date(Number(s) * 1000).toISOString()));

  /** Save a fetch Response as a file named `name` (a blob: URL of our own, set directly). */
  async function saveAs(resp, name) {
    const url = URL.createObjectURL(await resp.blob());
    const a = h("a", { download: name });
    a.href = url;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  async function download(path, name, msg) {
    try {
      await saveAs(await rs.api("GET", path, undefined, { raw: true }), name);
    } catch (e) {
      if (msg) msg.textContent = `Could not download ${name}: ${e.message}`;
    }
  }

  // -- system -------------------------------------------------------------------------------------

  /** "system.gpu.0.temp" → {family: "system.gpu.*.temp", section: "gpu", index: "0"}. */
  function family(key) {
    const bare = key.startsWith("system.") ? key.slice(7) : key;
    const m = /^(.*?)\.(\d+)(\..*)?$/.exec(bare);
    const fam = m ? `${m[1]}.*${m[3] || ""}` : bare;
    const section = bare.split(".")[0] || "system";
    return { family: `system.${fam}`, section, index: m ? m[2] : "" };
  }

  function system(pane, ctx) {
    if (!ctx.routes["GET /api/runs/{}/{}/{}/system"]) { pane.append(missing("system", "…/system")); return { show() {} }; }
    const status = h("span", { id: "system-status", class: "muted" });
    const root = h("div", { id: "system-charts" });
    pane.append(h("div", { class: "toolbar" }, h("span", { class: "muted" }, "x: _runtime (seconds since the start)"), status), root);
    let panel = null, timer = null, loaded = false;

    async function load() {
      let res;
      try {
        res = await rs.api("GET", `${ctx.runApi}/system?samples=2000`);
      } catch (e) {
        status.textContent = `Could not load system metrics: ${e.message}`;
        return;
      }
      const keys = res.columns.filter((c) => !c.startsWith("_"));
      if (!res.rows.length || !keys.length) {
        root.replaceChildren(empty("system-empty", "No system metrics recorded for this run. While a run is active the SDK samples CPU, memory, disk, network and GPUs every ",
          code("stats_interval"), " seconds (", code("RUNSTREAM_STATS_INTERVAL"), ", default 15; ", code("RUNSTREAM_DISABLE_STATS=1"), " turns it off)."));
        root.dataset.ready = "1";
        return;
      }
      const writers = [...new Set(res.rows.map((r) => r._writer))];
      const labelOf = new Map(res.rows.map((r) => [r._writer, r._label]));
      const byTrace = new Map(); // `${chart}\u0000${writer}\u0000${index}` → series
      const runs = new Map();
      for (const k of keys) {
        const f = family(k);
        const chartKey = `${f.section}/${f.family}`;
        for (const w of writers) {
          const id = `${w}\u0000${f.index}`;
          if (!runs.has(id)) {
            const who = writers.length > 1 ? (labelOf.get(w) || w) : "";
            const name = [who, f.index === "" ? "" : `#${f.index}`].filter(Boolean).join(" ") || "this run";
            runs.set(id, { name, color: RSCharts.colour(runs.size) });
          }
          byTrace.set(`${chartKey}\u0000${id}`, { run_id: id, key: chartKey, x: [], y: [], writer: w, column: k });
        }
      }
      for (const r of res.rows) {
        for (const s of byTrace.values()) {
          if (s.writer !== r._writer) continue;
          const v = r[s.column];
          if (typeof v === "number" && isFinite(v) && typeof r._runtime === "number") { s.x.push(r._runtime); s.y.push(v); }
        }
      }
      const series = [...byTrace.values()].filter((s) => s.x.length);
      if (!panel) panel = RSCharts.panel(root, null);
      panel.set({ series, runs, groups: null, x: "_runtime", smoothing: 0, log: false });
      status.textContent = `${res.rows.length} samples${writers.length > 1 ? ` from ${writers.length} processes` : ""}`;
      root.dataset.ready = "1";
    }

    return {
      show() {
        if (!loaded) { loaded = true; load(); }
        if (ctx.isLive() && !timer) timer = setInterval(() => (ctx.isLive() ? load() : this.stop()), 15000);
      },
      stop() { clearInterval(timer); timer = null; },
      ended() { if (loaded) load(); },
    };
  }

  // -- logs ---------------------------------------------------------------------------------------

  function logs(pane, ctx) {
    if (!ctx.routes["GET /api/runs/{}/{}/{}/logs"]) { pane.append(missing("logs", "…/logs")); return { show() {} }; }
    const search = h("input", { type: "search", id: "log-search", placeholder: "Search the output", size: 30 });
    const count = h("span", { id: "log-count", class: "muted" });
    const msg = h("span", { id: "log-msg", class: "muted" });
    const dl = h("button", { id: "log-download", onclick: () => download(`${ctx.runApi}/logs?format=text`, `${ctx.runId}-output.log`, msg) }, "Download");
    const box = h("div", { id: "log-lines", class: "log" });
    pane.append(h("div", { class: "toolbar" }, search, count, dl, msg), box);
    const lines = new Map(); // `${writer}\u0000${line}` → row; a redrawn line (\r) replaces its row
    const cursors = {};
    let order = [], loaded = false, polling = false, writers = new Set();

    function render() {
      const q = search.value.toLowerCase();
      const shown = q ? order.filter((l) => l.text.toLowerCase().includes(q)) : order;
      const tail = shown.slice(-LOG_RENDER_MAX);
      const many = writers.size > 1;
      box.replaceChildren(...(order.length ? tail.map((l) => h("div", { class: `log-line ${l.stream === "stderr" ? "stderr" : ""}`,
        "data-line": l.line, "data-stream": l.stream }, many ? h("span", { class: "who" }, `${l.label || l.writer} `) : null, l.text))
        : [empty("logs-empty", "No console output recorded for this run. What the run's process prints to stdout and stderr (",
            code("print()"), ", logging, progress bars) is recorded while it runs; ", code("RUNSTREAM_CONSOLE=off"), " turns it off.")]));
      count.textContent = !order.length ? "" : q ? `${shown.length} of ${order.length} lines match`
        : `${order.length} lines${shown.length > tail.length ? ` (the last ${tail.length} shown; download for all)` : ""}`;
      box.dataset.lines = String(order.length);
    }

    async function fetchMore() {
      // from the last line of each writer again: a line still being redrawn comes back with its new text
      const after = Object.fromEntries(Object.entries(cursors).map(([w, n]) => [w, n - 1]));
      const q = Object.keys(after).length ? `?after=${encodeURIComponent(JSON.stringify(after))}` : "";
      const res = await rs.api("GET", `${ctx.runApi}/logs${q}`);
      let changed = false;
      for (const l of res.lines) {
        const k = `${l.writer}\u0000${l.line}`;
        const old = lines.get(k);
        if (old && old.text === l.text) continue;
        changed = true;
        if (old) old.text = l.text; else { lines.set(k, l); order.push(l); writers.add(l.writer); }
        cursors[l.writer] = Math.max(cursors[l.writer] ?? -1, l.line);
      }
      if (changed || !loaded) {
        order.sort((a, b) => a.timestamp - b.timestamp || (a.writer < b.writer ? -1 : a.writer > b.writer ? 1 : 0) || a.line - b.line);
        loaded = true;
        render();
      }
      return res.state;
    }

    async function poll() {
      if (polling) return;
      polling = true;
      try {
        for (;;) {
          let state;
          try { state = await fetchMore(); } catch (e) { msg.textContent = `Could not load the output: ${e.message}`; return; }
          if (state !== "running" || !ctx.isLive()) { box.dataset.final = "1"; return; }
          await new Promise((r) => setTimeout(r, LOG_POLL_MS));
        }
      } finally { polling = false; }
    }

    search.addEventListener("input", render);
    return { show() { poll(); }, ended() { if (loaded) poll(); } };
  }

  // -- files --------------------------------------------------------------------------------------

  function isText(bytes) {
    const head = bytes.subarray(0, 8192);
    if (head.includes(0)) return null;
    try { return new TextDecoder("utf-8", { fatal: true }).decode(bytes); } catch { return null; }
  }

  function files(pane, ctx) {
    if (!ctx.routes["GET /api/runs/{}/{}/{}/files"]) { pane.append(missing("files", "…/files")); return { show() {} }; }
    const msg = h("span", { id: "files-msg", class: "muted" });
    const list = h("div", { id: "files-list" });
    const preview = h("div", { id: "file-preview" });
    pane.append(list, msg, preview);
    const fileUrl = (name) => `${ctx.runApi}/files/${name.split("/").map(encodeURIComponent).join("/")}`;
    const base = (name) => name.split("/").pop() || "file";

    async function show(f) {
      preview.replaceChildren(h("h2", {}, f.name), h("p", { class: "muted" }, "Loading…"));
      if (f.size > PREVIEW_MAX) {
        preview.replaceChildren(h("h2", {}, f.name), h("p", { class: "muted", id: "preview-note" },
          `${rs.fmtBytes(f.size)}: too large to preview here; download it.`));
        return;
      }
      try {
        const resp = await rs.api("GET", fileUrl(f.name), undefined, { raw: true });
        const text = isText(new Uint8Array(await resp.arrayBuffer()));
        preview.replaceChildren(h("h2", {}, f.name), text === null
          ? h("p", { class: "muted", id: "preview-note" }, "Not a text file (binary content): download it to open it.")
          : h("pre", { class: "file-text", id: "preview-text" }, text));
      } catch (e) {
        preview.replaceChildren(h("p", { class: "error" }, `Could not load ${f.name}: ${e.message}`));
      }
    }

    async function load() {
      let res;
      try { res = await rs.api("GET", `${ctx.runApi}/files`); } catch (e) { msg.textContent = `Could not list files: ${e.message}`; return; }
      if (!res.files.length) {
        list.replaceChildren(empty("files-empty", "No files saved for this run yet. Save some with ", code('run.save("model.pt")'),
          " (policy ", code('"live"'), ": now and on every change, ", code('"end"'), ": at finish, ", code('"now"'), ": once)."));
        return;
      }
      list.replaceChildren(h("table", { class: "grid", id: "files-table" },
        h("thead", {}, h("tr", {}, ["Name", "Size", "Policy", "Updated", ""].map((c) => h("th", {}, c)))),
        h("tbody", {}, res.files.map((f) => h("tr", { "data-file": f.name },
          h("td", {}, h("a", { href: "#files", class: "preview", onclick: (ev) => { ev.preventDefault(); show(f); } }, f.name)),
          h("td", { class: "num" }, rs.fmtBytes(f.size)), h("td", {}, f.policy || ""), h("td", {}, epochTime(f.updated_at ?? f.mtime)),
          h("td", {}, h("button", { class: "download", onclick: () => download(fileUrl(f.name), base(f.name), msg) }, "Download")))))));
    }

    let loaded = false;
    return { show() { if (!loaded) { loaded = true; load(); } }, ended() { if (loaded) load(); } };
  }

  // -- artifacts ----------------------------------------------------------------------------------

  function artifacts(pane, ctx) {
    if (!ctx.routes["GET /api/runs/{}/{}/{}/artifacts"]) { pane.append(missing("artifacts", "…/artifacts")); return { show() {} }; }
    const out = h("div", { id: "artifacts-output" });
    const inp = h("div", { id: "artifacts-input" });
    const msg = h("span", { id: "artifacts-msg", class: "muted" });
    pane.append(h("h2", {}, "Output artifacts (logged by this run)"), out, h("h2", {}, "Input artifacts (used by this run)"), inp, msg);
    const runLink = (path) => {
      const [e, p, ...id] = String(path).split("/");
      return h("a", { href: rs.runHref(e, p, id.join("/")) }, path);
    };
    const versionApi = (a) => `/api/artifacts/${rs.enc(a.entity, a.project, a.name)}/v${a.version}`;

    function manifest(a, detail) {
      const entry = (f) => h("tr", { "data-path": f.path }, h("td", {}, f.path), h("td", { class: "num" }, f.ref ? "" : rs.fmtBytes(f.size)),
        h("td", {}, f.ref ? h("span", { class: "muted", title: "a reference: recorded, never uploaded" }, f.ref)
          : h("button", { class: "download", onclick: () => download(`${versionApi(a)}/files/${f.path.split("/").map(encodeURIComponent).join("/")}`, f.path.split("/").pop(), msg) }, "Download")));
      return h("div", { class: "manifest" },
        a.description ? h("p", {}, a.description) : null,
        h("p", {}, "Logged by ", ...(detail.produced_by.length ? detail.produced_by.map(runLink) : ["—"]),
          "; used by ", ...(detail.used_by.length ? detail.used_by.flatMap((p, i) => [i ? ", " : "", runLink(p)]) : ["no run"])),
        h("table", { class: "grid" }, h("thead", {}, h("tr", {}, h("th", {}, "Path"), h("th", {}, "Size"), h("th", {}, ""))),
          h("tbody", {}, detail.files.map(entry))));
    }

    async function table(root, role) {
      const res = await rs.api("GET", `${ctx.runApi}/artifacts?role=${role}`);
      const rows = res.artifacts || [];
      if (!rows.length) {
        root.replaceChildren(role === "output"
          ? empty("artifacts-output-empty", "This run logged no artifacts. Log one with ", code('run.log_artifact(art, aliases=["best"])'),
              " after ", code('art = runstream.Artifact("mnist", type="dataset"); art.add_file("train.npz")'), ".")
          : empty("artifacts-input-empty", "This run used no artifacts. Use one with ", code('run.use_artifact("mnist:latest")'), "."));
        return;
      }
      const details = await Promise.all(rows.map((a) => rs.api("GET", versionApi(a)).catch(() => null)));
      const body = h("tbody", {});
      rows.forEach((a, i) => {
        const d = details[i];
        const id = `${a.name}:v${a.version}`;
        const more = h("tr", { class: "manifest-row", hidden: true }, h("td", { colspan: 7 }, d ? manifest(a, d) : "manifest unavailable"));
        const toggle = h("button", { class: "x toggle", title: "Show the manifest", onclick: () => { more.hidden = !more.hidden; } }, "▸");
        const where = a.entity === ctx.entity && a.project === ctx.project ? "" : `${a.entity}/${a.project}/`;
        body.append(h("tr", { "data-artifact": id },
          h("td", {}, toggle, " ", `${where}${id}`), h("td", {}, a.type || ""),
          h("td", { class: "aliases" }, (d ? d.aliases : []).map((al) => h("span", { class: "tag" }, al))),
          h("td", { class: "num" }, rs.fmtBytes(a.size)), h("td", { class: "num" }, a.file_count ?? ""),
          h("td", {}, epochTime(a.created_at)),
          h("td", {}, a.created_by ? h("a", { href: `/runs/by-uid/${encodeURIComponent(a.created_by)}` }, "producer run") : "")), more);
      });
      root.replaceChildren(h("table", { class: "grid", id: `artifacts-${role}-table` },
        h("thead", {}, h("tr", {}, ["Artifact", "Type", "Aliases", "Size", "Files", "Created", "Logged by"].map((c) => h("th", {}, c)))), body));
    }

    async function load() {
      try { await Promise.all([table(out, "output"), table(inp, "input")]); } catch (e) { msg.textContent = `Could not load artifacts: ${e.message}`; }
    }

    let loaded = false;
    return { show() { if (!loaded) { loaded = true; load(); } }, ended() { if (loaded) load(); } };
  }

  return { system, logs, files, artifacts, family, isText };
})();
