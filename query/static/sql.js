// runstream web app: the SQL page — one read-only query over the documented tables, results as a
// table, CSV and Parquet downloads, and the sandbox's limits when a query is refused.
"use strict";

(() => {
  const { h } = rs;
  const main = rs.frame([["SQL", null]]);
  document.title = "SQL · runstream";
  const editor = h("textarea", { id: "sql", rows: 8, cols: 100, spellcheck: "false" });
  editor.value = sessionStorage.getItem("runstream.sql") ||
    "SELECT entity, project, state, count(*) AS runs\nFROM runs\nGROUP BY ALL\nORDER BY runs DESC";
  const maxRows = h("input", { id: "max-rows", type: "number", min: 0, value: 1000, size: 7 });
  const runBtn = h("button", { id: "run-sql", onclick: () => run() }, "Run (Ctrl+Enter)");
  const csvBtn = h("button", { id: "download-csv", onclick: () => download("csv") }, "Download CSV");
  const pqBtn = h("button", { id: "download-parquet", onclick: () => download("parquet") }, "Download Parquet");
  const status = h("p", { id: "sql-status", class: "muted" });
  const out = h("div", { id: "sql-result", class: "table-wrap" });
  main.append(h("h1", {}, "SQL"),
    h("p", { class: "muted" }, "Tables: runs, history, summary, config, metrics, dead_letters; views history_wide, runs_overview (see the README's SQL section)."),
    editor, h("div", { class: "toolbar" }, runBtn, h("label", {}, " row cap ", maxRows), csvBtn, pqBtn), status, out);
  editor.addEventListener("keydown", (ev) => { if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); run(); } });

  const LIMITS = "The sandbox runs one read-only statement (SELECT, WITH, FROM, DESCRIBE, SHOW…): no files, network, " +
                 "extensions or settings; 30 s time limit, a row cap (results past it are cut and marked truncated) " +
                 "and a per-query memory bound (RUNSTREAM_SQL_MEMORY_LIMIT).";

  function fail(e) {
    out.replaceChildren(h("div", { class: "error", id: "sql-error" },
      h("strong", {}, e.kind ? `${e.kind}: ` : "error: "), e.message, h("p", { class: "muted" }, LIMITS)));
    status.textContent = "";
  }

  async function run() {
    sessionStorage.setItem("runstream.sql", editor.value);
    status.textContent = "Running…";
    const t0 = performance.now();
    try {
      const res = await rs.api("POST", "/api/sql", { sql: editor.value, max_rows: Number(maxRows.value) || 0 });
      const ms = Math.round(performance.now() - t0);
      status.textContent = `${res.rows.length} row${res.rows.length === 1 ? "" : "s"}${res.truncated ? " (truncated at the row cap)" : ""} in ${ms} ms`;
      out.replaceChildren(h("table", { class: "grid", id: "result-table" },
        h("thead", {}, h("tr", {}, res.columns.map((c) => h("th", {}, c)))),
        h("tbody", {}, res.rows.map((r) => h("tr", {}, res.columns.map((c) => h("td", {}, rs.fmtValue(r[c]))))))));
    } catch (e) {
      fail(e);
    }
  }

  async function download(format) {
    try {
      const resp = await rs.api("POST", "/api/ui/sql/download", { sql: editor.value, format }, { raw: true });
      const url = URL.createObjectURL(await resp.blob());
      const a = h("a", { download: `query.${format}` });
      a.href = url; // a blob: URL of our own, set directly (h() only takes our relative links)
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) {
      fail(e);
    }
  }
})();
