// runstream web app: the charts panel — one plotly line chart per metric, sections by the "/" prefix,
// runs overlaid (or one mean line with a min–max band per group), smoothing, log scale, zoom, hover.
"use strict";

const RSCharts = (() => {
  const { h } = rs;
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                   "#bcbd22", "#17becf", "#3b5bdb", "#e8590c", "#2b8a3e", "#c2255c", "#5f3dc4", "#0b7285"];

  /** A colour for the i-th run or group: the palette, then hues a golden angle apart, so no two of the
   * charted runs share one. */
  const colour = (i) => i < PALETTE.length ? PALETTE[i]
    : `hsl(${Math.round(((i - PALETTE.length) * 137.508 + 17) % 360)}, ${60 + (i % 3) * 12}%, ${38 + (i % 4) * 7}%)`;
  /** A colour with alpha for a band (hex or hsl). */
  const faded = (c) => c.startsWith("#") ? c + "33" : c.replace("hsl(", "hsla(").replace(")", ", 0.2)");

  /** Plotly reads a small HTML subset in names and labels: escape so user text stays text. */
  const plotlyText = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

  /** W&B-style exponential moving average with debiasing; weight in [0, 1). */
  function smooth(y, weight) {
    if (!weight) return y;
    const out = new Array(y.length);
    let last = 0, n = 0;
    for (let i = 0; i < y.length; i++) {
      last = last * weight + (1 - weight) * y[i];
      n++;
      out[i] = last / (1 - Math.pow(weight, n));
    }
    return out;
  }

  /** Mean, min/max and population std per x bin of several series: {x, mean, lo, hi, std}. */
  function aggregate(list, bins) {
    let lo = Infinity, hi = -Infinity;
    for (const s of list) for (const x of s.x) { if (x < lo) lo = x; if (x > hi) hi = x; }
    if (!isFinite(lo)) return { x: [], mean: [], lo: [], hi: [], std: [] };
    const width = hi > lo ? (hi - lo) / bins : 1;
    const sums = new Map();
    for (const s of list) {
      const per = new Map();
      for (let i = 0; i < s.x.length; i++) {
        const b = Math.min(Math.floor((s.x[i] - lo) / width), bins - 1);
        const cell = per.get(b) || { sum: 0, n: 0, x: 0 };
        cell.sum += s.y[i]; cell.n++; cell.x += s.x[i];
        per.set(b, cell);
      }
      for (const [b, c] of per) {
        const agg = sums.get(b) || { vals: [], xs: 0, n: 0 };
        agg.vals.push(c.sum / c.n); agg.xs += c.x / c.n; agg.n++;
        sums.set(b, agg);
      }
    }
    const keys = [...sums.keys()].sort((a, b) => a - b);
    const out = { x: [], mean: [], lo: [], hi: [], std: [] };
    for (const b of keys) {
      const a = sums.get(b);
      out.x.push(a.xs / a.n);
      const mean = a.vals.reduce((p, v) => p + v, 0) / a.vals.length;
      out.mean.push(mean);
      out.std.push(Math.sqrt(a.vals.reduce((p, v) => p + (v - mean) * (v - mean), 0) / a.vals.length));
      out.lo.push(Math.min(...a.vals));
      out.hi.push(Math.max(...a.vals));
    }
    return out;
  }

  function sectionOf(key) {
    const i = key.indexOf("/");
    return i > 0 ? key.slice(0, i) : "Charts";
  }

  /**
   * A charts panel in `root`. set(state) redraws: state = {series: [{run_id, key, x, y, sampled}],
   * runs: Map run_id → {name, color}, groups: null | [{name, color, members: [run_id]}], x: "_step",
   * smoothing: 0…0.99, log: bool, inherited: null | the fork step (a forked run's points up to it are its
   * parent's: drawn dotted), markers: [{x, label}] (dashed vertical lines on the _step axis)}.
   * onZoom(key, lo, hi) is called when a chart's x range changes
   * (lo/hi null when reset), so the caller can fetch that range at full resolution.
   */
  function panel(root, onZoom, opts) {
    // opts.layout: {get() → {order: [key], hidden: [key], wide: [key], max: {key: n}}, save(layout)} makes the
    // panels arrangeable (the workspace): reorder, hide, widen, a max-runs per chart; hidden ones can be added back
    const arrange = opts && opts.layout;
    const charts = new Map(); // key → {div, range}
    let state = null;
    window.addEventListener("rs-theme", () => { if (state && window.Plotly) for (const key of charts.keys()) draw(key); });
    let loading = null;

    function traces(key) {
      let list = state.series.filter((s) => s.key === key);
      const max = arrange ? arrange.get().max[key] : undefined;
      if (max && !state.groups) {  // this chart's max runs: the first n of the charted runs, in their order
        const allowed = new Set([...state.runs.keys()].slice(0, max));
        list = list.filter((s) => allowed.has(s.run_id));
      }
      const out = [];
      if (state.groups) {
        for (const g of state.groups) {
          const members = new Set(g.members);
          const mine = list.filter((s) => members.has(s.run_id));
          if (!mine.length) continue;
          const a = aggregate(mine, 200);
          const name = plotlyText(`${g.name} (${members.size})`);
          // the guide: a line along the mean, a shaded region for the variance (±1 std); min–max as an option
          const minmax = state.band === "minmax";
          const lo = minmax ? a.lo : a.mean.map((m, i) => m - a.std[i]);
          const hi = minmax ? a.hi : a.mean.map((m, i) => m + a.std[i]);
          const mode = a.x.length === 1 ? "markers" : "lines";
          out.push({ x: a.x, y: lo, mode, line: { width: 0, color: g.color }, marker: { size: 0.1 }, hoverinfo: "skip",
                     showlegend: false, legendgroup: name, type: "scatter", meta: "band-lo" });
          out.push({ x: a.x, y: hi, mode, line: { width: 0, color: g.color }, marker: { size: 0.1 }, fill: "tonexty",
                     fillcolor: faded(g.color), hoverinfo: "skip", showlegend: false, legendgroup: name, type: "scatter",
                     meta: "band-hi" });
          out.push({ x: a.x, y: smooth(a.mean, state.smoothing), mode: a.x.length === 1 ? "markers" : "lines", name,
                     legendgroup: name, line: { color: g.color, width: 2 }, marker: { color: g.color, size: 8 },
                     type: "scatter", meta: "mean" });
        }
        return out;
      }
      for (const s of list) {
        const run = state.runs.get(s.run_id);
        if (!run) continue;
        const name = plotlyText(run.name || s.run_id);
        if (state.smoothing) {
          out.push({ x: s.x, y: s.y, mode: "lines", line: { color: run.color, width: 1 }, opacity: 0.25,
                     hoverinfo: "skip", showlegend: false, type: "scatter" });
        }
        const y = smooth(s.y, state.smoothing);
        const cut = inheritedCut(s.x);
        if (cut > 0) {
          // a forked run: the parent's rows up to the fork step, dotted and faded, then the run's own
          out.push({ x: s.x.slice(0, cut), y: y.slice(0, cut), mode: "lines", name: `${name} (inherited)`,
                     line: { color: run.color, width: 1.5, dash: "dot" }, opacity: 0.55, type: "scatter",
                     meta: "inherited" });
          if (cut < s.x.length) {
            out.push({ x: s.x.slice(cut - 1), y: y.slice(cut - 1), mode: "lines", name,
                       line: { color: run.color, width: 1.5 }, type: "scatter", meta: "own" });
          }
          continue;
        }
        // a run with a single point draws it as a marker (a line of one point is invisible)
        out.push({ x: s.x, y, mode: s.x.length === 1 ? "markers" : "lines", name, line: { color: run.color, width: 1.5 },
                   marker: { color: run.color, size: 8 }, type: "scatter" });
      }
      return out;
    }

    /** How many leading points of a series are inherited (x ≤ state.inherited on the _step axis). */
    function inheritedCut(xs) {
      if (state.inherited === null || state.inherited === undefined || state.x !== "_step") return 0;
      let i = 0;
      while (i < xs.length && xs[i] <= state.inherited) i++;
      return i;
    }

    function markers() {
      const list = state.x === "_step" ? state.markers || [] : [];
      return {
        shapes: list.map((m) => ({ type: "line", xref: "x", yref: "paper", x0: m.x, x1: m.x, y0: 0, y1: 1,
                                   line: { color: "#888", width: 1, dash: "dash" } })),
        annotations: list.map((m) => ({ x: m.x, xref: "x", y: 1, yref: "paper", text: plotlyText(m.label),
                                        showarrow: false, xanchor: "left", yanchor: "top", font: { size: 10, color: "#666" } })),
      };
    }

    function layout(key, chart) {
      const xr = chart && chart.range ? { range: chart.range, autorange: false } : { autorange: true };
      return {
        ...markers(),
        title: { text: plotlyText(key), font: { size: 13 }, x: 0.02 },
        margin: { l: 50, r: 10, t: 30, b: 35 }, height: 260, hovermode: "closest",
        showlegend: Boolean(state.groups), legend: { orientation: "h", y: -0.25, font: { size: 11 } },
        paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", font: { color: themeColour("--fg") },
        xaxis: { title: { text: state.x, font: { size: 11 } }, gridcolor: themeColour("--line"), ...xr },
        yaxis: { type: state.log ? "log" : "linear", gridcolor: themeColour("--line"), ...yRange(key) },
      };
    }

    /** The y range: autorange, or the 5th–95th percentile of the points (padded) when outliers are
     * ignored — state.outliers "on", or "auto" (the default) when one series dwarfs the rest. */
    function yRange(key) {
      const list = state.series.filter((s) => s.key === key && (state.groups || state.runs.has(s.run_id)));
      const chart = charts.get(key);
      const ignore = state.outliers === "on" || (state.outliers !== "off" && dwarfs(list));
      if (chart) chart.div.dataset.outliers = ignore ? "ignored" : "shown";
      if (!ignore || state.log) return { autorange: true };
      const ys = list.flatMap((s) => s.y).filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
      if (ys.length < 3) return { autorange: true };
      const q = (p) => ys[Math.min(ys.length - 1, Math.max(0, Math.round(p * (ys.length - 1))))];
      const lo = q(0.05), hi = q(0.95), pad = (hi - lo || Math.abs(hi) || 1) * 0.1;
      return { autorange: false, range: [lo - pad, hi + pad] };
    }

    /** True when one series' largest |y| is over 10× every other series' largest (three or more series). */
    function dwarfs(list) {
      if (list.length < 3) return false;
      const peaks = list.map((s) => s.y.reduce((m, v) => (Number.isFinite(v) ? Math.max(m, Math.abs(v)) : m), 0)).sort((a, b) => b - a);
      return peaks[1] > 0 && peaks[0] > 10 * peaks[1];
    }

    function draw(key) {
      const chart = charts.get(key);
      Plotly.react(chart.div, traces(key), layout(key, chart), { displaylogo: false, responsive: true,
                                                                  modeBarButtonsToRemove: ["toImage"] });
    }

    /** A chart's frame: its tools (when arrangeable) above the plotly div. */
    function frameOf(key, chart) {
      if (!arrange) return chart.div;
      if (!chart.frame) {
        const lay = () => arrange.get();
        const move = (d) => {
          const l = lay(), all = visibleKeys(), i = all.indexOf(key), j = i + d;
          if (j < 0 || j >= all.length) return;
          [all[i], all[j]] = [all[j], all[i]];
          arrange.save({ ...l, order: all });
          set(state);
        };
        const maxBox = h("input", { type: "number", min: 1, class: "chart-max", "aria-label": `Max runs in ${key}`,
                                    title: "Max runs in this chart", placeholder: "max runs" });
        maxBox.addEventListener("change", () => {
          const l = lay(), n = Math.floor(Number(maxBox.value));
          const max = { ...l.max };
          if (n > 0) max[key] = n; else delete max[key];
          arrange.save({ ...l, max });
          draw(key);
        });
        chart.maxBox = maxBox;
        const tool = (cls, label, title, fn) => h("button", { type: "button", class: `chart-tool ${cls}`, title, "aria-label": `${title}: ${key}`, onclick: fn }, label);
        chart.frame = h("div", { class: "chart-frame", "data-panel": key },
          h("div", { class: "chart-tools" },
            tool("move-left", "←", "Move earlier", () => move(-1)), tool("move-right", "→", "Move later", () => move(1)),
            tool("resize", "⇔", "Wide / narrow", () => {
              const l = lay(), wide = l.wide.includes(key) ? l.wide.filter((k) => k !== key) : [...l.wide, key];
              arrange.save({ ...l, wide });
              set(state);
            }),
            maxBox,
            tool("hide", "✕", "Hide panel", () => { const l = lay(); arrange.save({ ...l, hidden: [...l.hidden, key] }); set(state); })),
          chart.div);
      }
      const l = arrange.get();
      chart.frame.classList.toggle("wide", l.wide.includes(key));
      chart.maxBox.value = l.max[key] || "";
      return chart.frame;
    }

    let allKeys = [];
    /** The keys drawn, in the layout's order (keys it does not know yet go after, by name). */
    function visibleKeys() {
      if (!arrange) return allKeys;
      const l = arrange.get();
      const rank = (k) => { const i = l.order.indexOf(k); return i < 0 ? Infinity : i; };
      return allKeys.filter((k) => !l.hidden.includes(k)).sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
    }

    function set(next) {
      state = next;
      if (!window.Plotly) {  // plotly.js loads on the first draw: draw the latest state once it is there
        if (!loading) loading = rs.plotly().then(() => { loading = null; set(state); }, (e) => rs.showError(e.message));
        return;
      }
      allKeys = [...new Set(state.series.map((s) => s.key))].sort();
      const keys = visibleKeys();
      const sections = new Map();
      for (const k of keys) {
        const sec = sectionOf(k);
        if (!sections.has(sec)) sections.set(sec, []);
        sections.get(sec).push(k);
      }
      for (const [key, chart] of charts) {
        if (!keys.includes(key)) { Plotly.purge(chart.div); charts.delete(key); }
      }
      const frag = [];
      for (const [sec, list] of [...sections].sort((a, b) => (a[0] === "Charts") - (b[0] === "Charts") || a[0].localeCompare(b[0]))) {
        const grid = h("div", { class: "chart-grid" });
        for (const key of list) {
          let chart = charts.get(key);
          if (!chart) {
            chart = { div: h("div", { class: "chart", "data-key": key }), range: (state.zoom || {})[key] || null, bound: false };
            charts.set(key, chart);
          }
          grid.appendChild(frameOf(key, chart));
        }
        frag.push(h("details", { class: "section", open: true, "data-section": sec },
                    h("summary", {}, `${sec} `, h("span", { class: "muted" }, `(${list.length})`)), grid));
      }
      if (arrange) frag.push(layoutBar());
      root.replaceChildren(...(frag.length ? frag : [h("p", { class: "muted empty" }, "No numeric metrics logged by the visible runs yet.")]));
      for (const key of keys) {
        const chart = charts.get(key);
        draw(key);
        if (!chart.bound) {
          chart.bound = true;
          chart.div.on("plotly_relayout", (ev) => {
            if (ev["xaxis.autorange"]) { chart.range = null; onZoom && onZoom(key, null, null); }
            else if (ev["xaxis.range[0]"] !== undefined) {
              chart.range = [ev["xaxis.range[0]"], ev["xaxis.range[1]"]];
              onZoom && onZoom(key, chart.range[0], chart.range[1]);
            }
          });
        }
      }
    }

    /** Add a hidden panel back, and reset the layout. */
    function layoutBar() {
      const l = arrange.get();
      const hidden = allKeys.filter((k) => l.hidden.includes(k));
      const add = h("select", { class: "add-panel", "aria-label": "Add a panel" },
        h("option", { value: "" }, hidden.length ? `Add panel (${hidden.length} hidden)` : "Add panel (none hidden)"),
        hidden.map((k) => h("option", { value: k }, k)));
      add.disabled = !hidden.length;
      add.addEventListener("change", () => {
        if (!add.value) return;
        const cur = arrange.get();
        arrange.save({ ...cur, hidden: cur.hidden.filter((k) => k !== add.value) });
        set(state);
      });
      const reset = h("button", { type: "button", class: "reset-layout", onclick: () => {
        arrange.save({ order: [], hidden: [], wide: [], max: {} });
        set(state);
      } }, "Reset layout");
      return h("div", { class: "toolbar layout-bar" }, add, reset);
    }

    /** Replace one key's series (a zoomed fetch) and redraw that chart only. */
    function replaceKey(key, list) {
      state.series = state.series.filter((s) => s.key !== key).concat(list);
      if (charts.has(key) && window.Plotly) draw(key);
    }

    return { set, replaceKey, get state() { return state; } };
  }

  /** A theme colour (a CSS custom property of :root) for plotly, which cannot read CSS variables. */
  function themeColour(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#444";
  }

  return { panel, colour, smooth, aggregate, plotlyText, PALETTE };
})();
