// runstream web app: the charts panel — one plotly line chart per metric, sections by the "/" prefix,
// runs overlaid (or one mean line with a min–max band per group), smoothing, log scale, zoom, hover.
"use strict";

const RSCharts = (() => {
  const { h } = rs;
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                   "#bcbd22", "#17becf", "#3b5bdb", "#e8590c", "#2b8a3e", "#c2255c", "#5f3dc4", "#0b7285"];

  /** A colour for the i-th run or group. */
  const colour = (i) => PALETTE[i % PALETTE.length];

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

  /** Mean and min/max per x bin of several series: {x, mean, lo, hi}. */
  function aggregate(list, bins) {
    let lo = Infinity, hi = -Infinity;
    for (const s of list) for (const x of s.x) { if (x < lo) lo = x; if (x > hi) hi = x; }
    if (!isFinite(lo)) return { x: [], mean: [], lo: [], hi: [] };
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
    const out = { x: [], mean: [], lo: [], hi: [] };
    for (const b of keys) {
      const a = sums.get(b);
      out.x.push(a.xs / a.n);
      out.mean.push(a.vals.reduce((p, v) => p + v, 0) / a.vals.length);
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
  function panel(root, onZoom) {
    const charts = new Map(); // key → {div, range}
    let state = null;

    function traces(key) {
      const list = state.series.filter((s) => s.key === key);
      const out = [];
      if (state.groups) {
        for (const g of state.groups) {
          const members = new Set(g.members);
          const mine = list.filter((s) => members.has(s.run_id));
          if (!mine.length) continue;
          const a = aggregate(mine, 200);
          const name = plotlyText(`${g.name} (${members.size})`);
          out.push({ x: a.x, y: a.lo, mode: "lines", line: { width: 0, color: g.color }, hoverinfo: "skip",
                     showlegend: false, legendgroup: name, type: "scatter" });
          out.push({ x: a.x, y: a.hi, mode: "lines", line: { width: 0, color: g.color }, fill: "tonexty",
                     fillcolor: g.color + "33", hoverinfo: "skip", showlegend: false, legendgroup: name, type: "scatter" });
          out.push({ x: a.x, y: smooth(a.mean, state.smoothing), mode: "lines", name, legendgroup: name,
                     line: { color: g.color, width: 2 }, type: "scatter" });
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
        out.push({ x: s.x, y, mode: "lines", name, line: { color: run.color, width: 1.5 }, type: "scatter" });
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
        margin: { l: 50, r: 10, t: 30, b: 35 }, height: 260, showlegend: false, hovermode: "closest",
        xaxis: { title: { text: state.x, font: { size: 11 } }, ...xr },
        yaxis: { type: state.log ? "log" : "linear", autorange: true },
      };
    }

    function draw(key) {
      const chart = charts.get(key);
      Plotly.react(chart.div, traces(key), layout(key, chart), { displaylogo: false, responsive: true,
                                                                  modeBarButtonsToRemove: ["toImage"] });
    }

    function set(next) {
      state = next;
      const keys = [...new Set(state.series.map((s) => s.key))].sort();
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
            chart = { div: h("div", { class: "chart", "data-key": key }), range: null, bound: false };
            charts.set(key, chart);
          }
          grid.appendChild(chart.div);
        }
        frag.push(h("details", { class: "section", open: true, "data-section": sec },
                    h("summary", {}, `${sec} `, h("span", { class: "muted" }, `(${list.length})`)), grid));
      }
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

    /** Replace one key's series (a zoomed fetch) and redraw that chart only. */
    function replaceKey(key, list) {
      state.series = state.series.filter((s) => s.key !== key).concat(list);
      if (charts.has(key)) draw(key);
    }

    return { set, replaceKey, get state() { return state; } };
  }

  return { panel, colour, smooth, aggregate, plotlyText, PALETTE };
})();
