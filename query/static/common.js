// runstream web app: helpers every page shares (DOM building, the JSON API, live streams, formatting).
// Every value from the server goes into the page as text (textContent / text nodes), never as markup.
"use strict";

const rs = (() => {
  const KEY_STORE = "runstream.apiKey";

  /** An element: h("td", {class: "x", title: t}, "text", child, ...). Strings become text nodes. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
      else if (k === "href") el.setAttribute("href", safeHref(v));
      else if (k === "dataset") Object.assign(el.dataset, v);
      else if (v === true) el.setAttribute(k, "");
      else el.setAttribute(k, String(v));
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  /** Only our own relative links: anything else (javascript:, data:, other hosts) becomes "#". */
  function safeHref(v) {
    const s = String(v);
    return s.startsWith("/") && !s.startsWith("//") ? s : "#";
  }

  const enc = (...parts) => parts.map((p) => encodeURIComponent(p)).join("/");
  const runHref = (e, p, id) => `/${enc(e, p)}/runs/${enc(id)}`;
  const projectHref = (e, p) => `/${enc(e, p)}`;

  /** The server's words: our {"error": ...}, or FastAPI's list of what a request body got wrong (422). */
  function errorText(status, body) {
    if (body && typeof body.error === "string") return body.error;
    if (body && Array.isArray(body.detail)) {
      return body.detail.map((d) => `${(d.loc || []).filter((l) => l !== "body").join(".") || "request"}: ${d.msg}`).join("; ");
    }
    return `HTTP ${status}`;
  }

  class ApiError extends Error {
    constructor(status, body) {
      super(errorText(status, body));
      this.status = status;
      this.kind = body && body.kind;
      this.body = body;
    }
  }

  function authHeaders() {
    const key = sessionStorage.getItem(KEY_STORE);
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  /** A JSON request to the API; throws ApiError with the server's message. Asks for the API key once on 401. */
  async function api(method, path, body, opts) {
    const headers = { Accept: "application/json", ...authHeaders() };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                                     credentials: "same-origin" });
    if (resp.status === 401 && !(opts && opts.noPrompt)) {
      const key = window.prompt("This runstream server needs an API key (RUNSTREAM_API_KEY):");
      if (key) {
        sessionStorage.setItem(KEY_STORE, key);
        return api(method, path, body, { noPrompt: true });
      }
    }
    if (opts && opts.raw) {
      if (!resp.ok) throw new ApiError(resp.status, await resp.json().catch(() => null));
      return resp;
    }
    const data = await resp.json().catch(() => null);
    if (!resp.ok) throw new ApiError(resp.status, data);
    return data;
  }

  /**
   * Follow a server-sent-events stream (fetch, so the API key header can go along); handlers[event](data).
   * Returns a function that stops it. Reconnects after a dropped connection with Last-Event-ID.
   */
  function follow(path, handlers) {
    const ctl = new AbortController();
    let lastId = null;
    let stopped = false;
    async function once() {
      const headers = { Accept: "text/event-stream", ...authHeaders() };
      if (lastId !== null) headers["Last-Event-ID"] = lastId;
      const resp = await fetch(path, { headers, signal: ctl.signal });
      if (!resp.ok) throw new ApiError(resp.status, await resp.json().catch(() => null));
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let event = "message", data = "", id = null;
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue;
            const i = line.indexOf(":");
            const field = i < 0 ? line : line.slice(0, i);
            const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
            if (field === "event") event = val;
            else if (field === "data") data += (data ? "\n" : "") + val;
            else if (field === "id") id = val;
          }
          if (id !== null) lastId = id;
          if (!data) continue;
          const fn = handlers[event];
          if (fn) fn(JSON.parse(data));
          if (event === "end") { stopped = true; return; }
        }
      }
    }
    (async () => {
      let delay = 500;
      while (!stopped) {
        try { await once(); delay = 500; } catch (e) {
          if (ctl.signal.aborted) return;
          if (handlers.error) handlers.error(e);
          if (e instanceof ApiError && e.status < 500) return;
        }
        if (stopped) return;
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 10000);
      }
    })();
    return () => { stopped = true; ctl.abort(); };
  }

  /** The routes this server has (from its OpenAPI schema): {"POST /api/runs/{}/{}/{}/stop": true, ...}. */
  let routesPromise = null;
  function routes() {
    if (!routesPromise) {
      routesPromise = fetch("/openapi.json").then((r) => (r.ok ? r.json() : { paths: {} })).then((schema) => {
        const out = {};
        for (const [path, ops] of Object.entries(schema.paths || {})) {
          const shape = path.replace(/\{[^}]+\}/g, "{}");
          for (const m of Object.keys(ops)) out[`${m.toUpperCase()} ${shape}`] = true;
        }
        return out;
      }).catch(() => ({}));
    }
    return routesPromise;
  }

  // -- formatting -------------------------------------------------------------------------------

  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleString();
  }

  function fmtDuration(s) {
    if (s === null || s === undefined || s === "" || isNaN(Number(s))) return "";
    s = Math.max(0, Math.round(Number(s)));
    const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
    if (d) return `${d}d ${hh}h`;
    if (hh) return `${hh}h ${mm}m`;
    if (mm) return `${mm}m ${ss}s`;
    return `${ss}s`;
  }

  function fmtValue(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6)));
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  function fmtBytes(n) {
    if (!n && n !== 0) return "";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0; n = Number(n);
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
  }

  function stateBadge(state) {
    return h("span", { class: `badge state-${/^[a-z]+$/.test(state || "") ? state : "unknown"}`, "data-state": state || "" },
             state || "unknown");
  }

  // the theme: the system's (prefers-color-scheme) until the toggle picks light or dark, kept per browser
  const THEME_STORE = "runstream.theme";
  const darkQuery = window.matchMedia("(prefers-color-scheme: dark)");
  const savedTheme = () => { try { return localStorage.getItem(THEME_STORE); } catch { return null; } };
  /** "light" or "dark": the theme the page shows now. */
  const theme = () => savedTheme() || (darkQuery.matches ? "dark" : "light");
  function applyTheme() {
    const t = savedTheme();
    if (t) document.documentElement.dataset.theme = t; else delete document.documentElement.dataset.theme;
    const btn = document.getElementById("theme-toggle");
    if (btn) {
      const now = theme();
      btn.textContent = now === "dark" ? "☀ Light" : "☾ Dark";
      btn.setAttribute("aria-label", `Switch to the ${now === "dark" ? "light" : "dark"} theme`);
    }
    window.dispatchEvent(new Event("rs-theme"));  // charts redraw in the theme's colours
  }
  applyTheme();
  darkQuery.addEventListener("change", applyTheme);

  /** plotly.js, loaded once when a page first draws a chart (a page that lists things first, like the
   * workspace's table, does not wait for its ~4 MB to parse). Resolves to window.Plotly. */
  let plotlyLoading = null;
  function plotly() {
    if (window.Plotly) return Promise.resolve(window.Plotly);
    if (!plotlyLoading) {
      plotlyLoading = new Promise((resolve, reject) => {
        const s = document.createElement("script");
        s.src = "/static/vendor/plotly.min.js";
        s.onload = () => resolve(window.Plotly);
        s.onerror = () => { plotlyLoading = null; reject(new Error("could not load /static/vendor/plotly.min.js")); };
        document.head.appendChild(s);
      });
    }
    return plotlyLoading;
  }

  /** The page frame: a top bar with breadcrumbs, then the page's main element. */
  function frame(crumbs) {
    const toggle = h("button", { id: "theme-toggle", type: "button", onclick: () => {
      localStorage.setItem(THEME_STORE, theme() === "dark" ? "light" : "dark");
      applyTheme();
    } });
    const nav = h("nav", { class: "topbar" }, h("a", { href: "/", class: "brand" }, "runstream"),
      crumbs.map(([label, href]) => [h("span", { class: "sep" }, "/"), href ? h("a", { href }, label) : h("span", {}, label)]),
      h("span", { class: "spacer" }), h("a", { href: "/sql" }, "SQL"), toggle);
    const main = h("main", { id: "main" });
    const stalled = h("div", { id: "stalled", class: "banner", hidden: true });
    document.body.replaceChildren(nav, stalled, h("div", { id: "banner", class: "banner", hidden: true }), main);
    showStalled(stalled);
    applyTheme();
    return main;
  }

  /** The server's projection is paused (a full disk, a recreated event stream): say so and why. */
  async function showStalled(el) {
    try {
      const health = await api("GET", "/api/health", undefined, { noPrompt: true });
      if (health && health.stalled) {
        el.hidden = false;
        el.textContent = "Projection paused — what you see may be behind: " + health.stalled.message;
      }
    } catch (_) { /* the page's own requests report errors */ }
  }

  function showError(err) {
    const el = document.getElementById("banner");
    if (!el) return;
    el.hidden = false;
    el.textContent = err instanceof Error ? err.message : String(err);
  }

  /** The path segments of this page after decoding: "/e/p/runs/id" → ["e", "p", "runs", "id"]. */
  function pathParts() {
    return location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  }

  return { h, append, api, ApiError, follow, routes, fmtTime, fmtDuration, fmtValue, fmtBytes, stateBadge, frame,
           showError, pathParts, enc, runHref, projectHref, theme, plotly };
})();
