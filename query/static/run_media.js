// runstream web app: the run page's Media tab — one panel per media key: images (and videos, audio)
// with a step slider, a table viewer (filter, sort by a column, pages), a histogram over steps
// (a heatmap of counts: steps across, bin centres up), HTML as text, plotly figures drawn by
// plotly.js. Media bytes are the run's files (…/files/{path}), fetched with the API key and shown
// through blob: URLs of our own; every value goes into the page as text.
"use strict";

const RSRunMedia = (() => {
  const { h } = rs;
  const TABLE_PAGE = 20;
  const MIME = { png: "image/png", jpg: "image/jpeg", gif: "image/gif", webp: "image/webp", svg: "image/svg+xml",
    wav: "audio/wav", mp3: "audio/mpeg", ogg: "audio/ogg", flac: "audio/flac", mp4: "video/mp4", webm: "video/webm" };

  function media(pane, ctx) {
    if (!ctx.routes["GET /api/runs/{}/{}/{}/media/keys"]) {
      pane.append(h("p", { class: "placeholder", "data-placeholder": "media" },
        "This server has no …/media endpoint, so the media tab is not available here."));
      return { show() {} };
    }
    const msg = h("span", { id: "media-msg", class: "muted" });
    const root = h("div", { id: "media-panels" });
    pane.append(msg, root);
    const fileUrl = (path) => `${ctx.runApi}/files/${path.split("/").map(encodeURIComponent).join("/")}`;
    const urls = [];

    async function blobUrl(path, format) {
      const resp = await rs.api("GET", fileUrl(path), undefined, { raw: true });
      const type = MIME[format] || "application/octet-stream";
      const url = URL.createObjectURL(new Blob([await resp.arrayBuffer()], { type }));
      urls.push(url);
      return url;
    }

    /** One media reference → an element (an image, a video, audio, HTML as text, a plotly figure). */
    async function view(ref) {
      const t = ref._type;
      if (t === "images" || t === "media-list") {
        return h("div", { class: "media-list" }, await Promise.all((ref.items || []).map(view)));
      }
      if (!ref.path) return h("span", { class: "muted" }, `(${t})`);
      const cap = ref.caption ? h("div", { class: "caption" }, ref.caption) : null;
      if (t === "image-file" || (t === "video-file" && ref.format === "png")) {
        const img = h("img", { class: "media-img", alt: ref.caption || ref.path, "data-path": ref.path });
        img.src = await blobUrl(ref.path, ref.format);
        return h("figure", { class: "media-figure" }, img, cap);
      }
      if (t === "video-file") {
        const v = h("video", { controls: true, class: "media-img", "data-path": ref.path });
        v.src = await blobUrl(ref.path, ref.format);
        return h("figure", { class: "media-figure" }, v, cap);
      }
      if (t === "audio-file") {
        const a = h("audio", { controls: true, "data-path": ref.path });
        a.src = await blobUrl(ref.path, ref.format);
        return h("figure", { class: "media-figure" }, a, cap);
      }
      const resp = await rs.api("GET", fileUrl(ref.path), undefined, { raw: true });
      const text = await resp.text();
      if (t === "plotly-file") {
        const div = h("div", { class: "chart media-plotly" });
        try {
          const fig = JSON.parse(text);
          setTimeout(() => Plotly.newPlot(div, fig.data || [], { ...(fig.layout || {}), autosize: true }, { responsive: true }), 0);
        } catch (e) { div.append(h("p", { class: "error" }, `Not a plotly figure: ${e.message}`)); }
        return div;
      }
      return h("pre", { class: "file-text", "data-path": ref.path }, text); // HTML shown as its source, never rendered
    }

    /** Images, videos, audio...: the step slider picks the step shown. */
    function stepped(box, rows) {
      const shown = h("div", { class: "media-shown" });
      const label = h("span", { class: "step-label" });
      const slider = h("input", { type: "range", class: "step-slider", min: 0, max: rows.length - 1, step: 1, value: rows.length - 1 });
      let token = 0;
      async function pick() {
        const i = Number(slider.value);
        const row = rows[i];
        label.textContent = `step ${row.step} (${i + 1} of ${rows.length})`;
        const mine = ++token;
        try {
          const el = await view(JSON.parse(row.reference));
          if (mine === token) shown.replaceChildren(el);
        } catch (e) { shown.replaceChildren(h("p", { class: "error" }, `Could not load: ${e.message}`)); }
        box.dataset.step = String(row.step);
      }
      slider.addEventListener("input", pick);
      box.append(h("div", { class: "toolbar" }, rows.length > 1 ? slider : null, label), shown);
      pick();
    }

    /** A logged Table: filter, sort by a column header, pages of TABLE_PAGE rows (server-side). */
    function tableViewer(box, key, rows) {
      const st = { step: rows[rows.length - 1].step, offset: 0, sort: null, desc: false, filter: "" };
      const filter = h("input", { type: "search", class: "table-filter", placeholder: "filter rows…" });
      const stepBox = h("select", { class: "table-step" }, rows.map((r) => h("option", { value: r.step }, `step ${r.step}`)));
      stepBox.value = String(st.step);
      const info = h("span", { class: "muted table-info" });
      const prev = h("button", { class: "prev" }, "‹ Prev");
      const next = h("button", { class: "next" }, "Next ›");
      const grid = h("div", { class: "table-wrap" });
      box.append(h("div", { class: "toolbar" }, rows.length > 1 ? stepBox : null, filter, prev, next, info), grid);
      let timer = null;
      async function load() {
        const q = new URLSearchParams({ key, step: st.step, offset: st.offset, limit: TABLE_PAGE });
        if (st.sort !== null) { q.set("sort", st.sort); q.set("desc", st.desc); }
        if (st.filter) q.set("filter", st.filter);
        let res;
        try { res = await rs.api("GET", `${ctx.runApi}/media/table?${q}`); } catch (e) { info.textContent = `Could not load: ${e.message}`; return; }
        const head = h("tr", {}, res.columns.map((c) => h("th", { class: "sortable", "data-col": c, onclick: () => {
          st.desc = st.sort === c ? !st.desc : false; st.sort = c; st.offset = 0; load();
        } }, c, st.sort === c ? (st.desc ? " ▼" : " ▲") : "")));
        grid.replaceChildren(h("table", { class: "grid media-table" }, h("thead", {}, head),
          h("tbody", {}, res.rows.map((r) => h("tr", {}, r.map((v) => h("td", {}, rs.fmtValue(v))))))));
        const last = Math.min(res.total, st.offset + res.rows.length);
        info.textContent = res.total ? `rows ${st.offset + 1}–${last} of ${res.total}` : "no matching rows";
        prev.disabled = st.offset === 0;
        next.disabled = last >= res.total;
        box.dataset.ready = "1";
      }
      prev.addEventListener("click", () => { st.offset = Math.max(0, st.offset - TABLE_PAGE); load(); });
      next.addEventListener("click", () => { st.offset += TABLE_PAGE; load(); });
      stepBox.addEventListener("change", () => { st.step = Number(stepBox.value); st.offset = 0; load(); });
      filter.addEventListener("input", () => {
        clearTimeout(timer);
        timer = setTimeout(() => { st.filter = filter.value; st.offset = 0; load(); }, 250);
      });
      load();
    }

    /** A histogram key over steps: a heatmap of counts, one column per step, bin centres up. */
    async function histogram(box, key) {
      const res = await rs.api("GET", `${ctx.runApi}/media/histograms?key=${encodeURIComponent(key)}`);
      const x = [], y = [], c = [];
      for (const s of res.steps) {
        for (let i = 0; i < s.values.length; i++) {
          x.push(s.step);
          y.push((s.bins[i] + s.bins[i + 1]) / 2);
          c.push(s.values[i]);
        }
      }
      const div = h("div", { class: "chart media-hist" });
      box.append(div);
      Plotly.newPlot(div, [{ type: "scatter", mode: "markers", x, y,
        marker: { symbol: "square", size: 9, color: c, colorscale: "Blues", reversescale: true, showscale: true, colorbar: { title: { text: "count" } } },
        hovertemplate: "step %{x}<br>bin %{y:.4g}<br>count %{marker.color}<extra></extra>" }],
      { margin: { t: 10, r: 10, b: 40, l: 50 }, xaxis: { title: { text: "step" } }, yaxis: { title: { text: key } } },
      { displaylogo: false, responsive: true });
      box.dataset.ready = "1";
    }

    async function load() {
      let keys;
      try { keys = (await rs.api("GET", `${ctx.runApi}/media/keys`)).keys; } catch (e) { msg.textContent = `Could not list media: ${e.message}`; return; }
      if (!keys.length) {
        root.replaceChildren(h("div", { class: "placeholder", id: "media-empty" }, "No media logged for this run yet. Log some with ",
          h("code", {}, 'run.log({"examples": runstream.Image(array)})'), ", ", h("code", {}, "runstream.Table(...)"), " or ",
          h("code", {}, "runstream.Histogram(values)"), "."));
        return;
      }
      root.replaceChildren();
      for (const k of keys) {
        const box = h("section", { class: "media-panel", "data-key": k.key, "data-type": k.type },
          h("h2", {}, k.key, " ", h("span", { class: "muted" }, `${k.type} · ${k.steps} step${k.steps === 1 ? "" : "s"}`)));
        root.append(box);
        try {
          if (k.type === "histogram") { await histogram(box, k.key); continue; }
          const rows = (await rs.api("GET", `${ctx.runApi}/media?key=${encodeURIComponent(k.key)}`)).media;
          if (k.type === "table-file") tableViewer(box, k.key, rows);
          else stepped(box, rows);
        } catch (e) { box.append(h("p", { class: "error" }, `Could not load ${k.key}: ${e.message}`)); }
      }
      root.dataset.ready = "1";
    }

    let loaded = false;
    return {
      show() { if (!loaded) { loaded = true; load(); } },
      ended() { if (loaded) { for (const u of urls.splice(0)) URL.revokeObjectURL(u); load(); } },
    };
  }

  return { media };
})();
