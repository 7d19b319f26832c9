// runstream web app: the workspace's Media section — one media key at a time across the visualized
// runs: images side by side at one step (a slider over every step any run logged it; each run shows
// its latest image at or before that step), histograms over steps as one heatmap per run, tables as
// their size with a link to the run's Media tab. Every value goes into the page as text.
"use strict";

const RSWorkspaceMedia = (() => {
  const { h } = rs;

  function panel(root, entity, project) {
    const keyBox = h("select", { id: "media-key" });
    const slider = h("input", { type: "range", id: "media-step", min: 0, max: 0, step: 1, value: 0 });
    const stepLabel = h("span", { id: "media-step-label", class: "muted" });
    const grid = h("div", { id: "media-grid", class: "media-list" });
    const msg = h("span", { id: "workspace-media-msg", class: "muted" });
    root.append(h("div", { class: "toolbar" }, h("h2", {}, "Media"), keyBox, slider, stepLabel, msg), grid);
    let runs = [], perRun = new Map(), steps = [], token = 0;
    const urls = [];
    const runApi = (id) => `/api/runs/${rs.enc(entity, project)}/${rs.enc(id)}`;

    async function image(run, ref) {
      const resp = await rs.api("GET", `${runApi(run.run_id)}/files/${ref.path.split("/").map(encodeURIComponent).join("/")}`,
        undefined, { raw: true });
      const url = URL.createObjectURL(new Blob([await resp.arrayBuffer()], { type: ref.format === "png" ? "image/png" : "" }));
      urls.push(url);
      const img = h("img", { class: "media-img", alt: ref.caption || ref.path, "data-run": run.run_id });
      img.src = url;
      return img;
    }

    async function heatmap(div, data) {
      await rs.plotly();
      const x = [], y = [], c = [];
      for (const s of data.steps) {
        for (let i = 0; i < s.values.length; i++) { x.push(s.step); y.push((s.bins[i] + s.bins[i + 1]) / 2); c.push(s.values[i]); }
      }
      Plotly.newPlot(div, [{ type: "scatter", mode: "markers", x, y, marker: { symbol: "square", size: 7, color: c, colorscale: "Blues", reversescale: true } }],
        { margin: { t: 6, r: 6, b: 30, l: 40 }, height: 220, width: 320 }, { displaylogo: false });
    }

    async function draw() {
      const mine = ++token;
      const key = keyBox.value;
      for (const u of urls.splice(0)) URL.revokeObjectURL(u);
      if (!key) { grid.replaceChildren(); return; }
      const type = keyBox.selectedOptions[0]?.dataset.type;
      const step = steps.length ? steps[Number(slider.value)] : null;
      stepLabel.textContent = type === "histogram" || step === null ? "" : `step ${step}`;
      slider.hidden = type === "histogram" || steps.length < 2;
      const cards = await Promise.all(runs.filter((r) => perRun.get(r.run_id)?.has(key)).map(async (r) => {
        const card = h("figure", { class: "media-figure", "data-run": r.run_id },
          h("figcaption", {}, h("span", { style: `color:${r.color}` }, "■ "), h("a", { href: `${rs.runHref(entity, project, r.run_id)}#media` }, r.name)));
        try {
          if (type === "histogram") {
            const div = h("div", { class: "chart media-hist" });
            card.append(div);
            heatmap(div, await rs.api("GET", `${runApi(r.run_id)}/media/histograms?key=${encodeURIComponent(key)}`));
            return card;
          }
          const rows = (await rs.api("GET", `${runApi(r.run_id)}/media?key=${encodeURIComponent(key)}`)).media;
          const at = rows.filter((m) => step === null || m.step <= step).pop();
          if (!at) { card.append(h("div", { class: "muted" }, "not logged yet at this step")); return card; }
          const ref = JSON.parse(at.reference);
          if (type === "table-file") card.append(h("div", {}, `${ref.nrows} rows × ${ref.ncols} columns at step ${at.step}`));
          else if (type === "image-file" || (type === "video-file" && ref.format === "png")) card.append(await image(r, ref));
          else if (type === "images") card.append(...await Promise.all(ref.items.map((it) => image(r, it))));
          else card.append(h("div", { class: "muted" }, `${type} at step ${at.step}: open the run's Media tab`));
          if (ref.caption) card.append(h("div", { class: "caption" }, ref.caption));
        } catch (e) { card.append(h("p", { class: "error" }, e.message)); }
        return card;
      }));
      if (mine !== token) return;
      grid.replaceChildren(...cards);
      grid.dataset.ready = String(mine);
    }

    async function set(shown) {
      runs = shown;
      perRun = new Map();
      const types = new Map();
      const stepSet = new Set();
      try {
        await Promise.all(runs.map(async (r) => {
          const keys = (await rs.api("GET", `${runApi(r.run_id)}/media/keys`)).keys;
          perRun.set(r.run_id, new Set(keys.map((k) => k.key)));
          for (const k of keys) types.set(k.key, k.type);
        }));
      } catch (e) { msg.textContent = `Could not list media: ${e.message}`; return; }
      root.hidden = !types.size;
      const keep = keyBox.value;
      keyBox.replaceChildren(...[...types].sort().map(([k, t]) => h("option", { value: k, "data-type": t }, `${k} (${t})`)));
      if (types.has(keep)) keyBox.value = keep;
      const key = keyBox.value;
      await Promise.all(runs.filter((r) => perRun.get(r.run_id)?.has(key)).map(async (r) => {
        const rows = (await rs.api("GET", `${runApi(r.run_id)}/media?key=${encodeURIComponent(key)}`)).media;
        for (const m of rows) stepSet.add(m.step);
      }));
      steps = [...stepSet].sort((a, b) => a - b);
      slider.max = String(Math.max(0, steps.length - 1));
      slider.value = slider.max;
      await draw();
    }

    keyBox.addEventListener("change", () => set(runs));
    slider.addEventListener("input", () => draw());
    root.hidden = true;
    return { set };
  }

  return { panel };
})();
