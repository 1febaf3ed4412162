/* mimiclab workbench: shared helpers. Plain JS, no build step, no external requests. */
"use strict";

const ML = (() => {
  const body = document.body;
  const slug = body.dataset.slug || "";

  /** fetch JSON from the local API; errors become Error(message) with the server's explanation. */
  async function api(path, opts = {}) {
    const init = { headers: { "Accept": "application/json" }, credentials: "same-origin", ...opts };
    if (opts.json !== undefined) {
      init.method = init.method || "POST";
      init.body = JSON.stringify(opts.json);
      init.headers["Content-Type"] = "application/json";
      delete init.json;
    }
    const r = await fetch(path, init);
    let data = null;
    const text = await r.text();
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (!r.ok) {
      const msg = (data && (data.error || data.detail)) || `${r.status} ${r.statusText}`;
      const err = new Error(typeof msg === "string" ? msg : JSON.stringify(msg));
      err.status = r.status;
      throw err;
    }
    return data;
  }

  const ds = (p) => `/api/datasets/${encodeURIComponent(slug)}${p}`;

  /** el("div.card#x", {attr}, children...) */
  function el(spec, attrs, ...children) {
    const m = spec.match(/^([a-z0-9]+)?((?:[.#][^.#]+)*)$/i);
    const node = document.createElement((m && m[1]) || "div");
    if (m && m[2]) {
      for (const part of m[2].match(/[.#][^.#]+/g) || []) {
        if (part[0] === ".") node.classList.add(part.slice(1)); else node.id = part.slice(1);
      }
    }
    if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
      children.unshift(attrs); attrs = null;
    }
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "text") node.textContent = v;
      else if (k === "html") throw new Error("no html");
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const fmt = new Intl.NumberFormat("en-US");
  function num(n) { return n === null || n === undefined ? "–" : fmt.format(n); }

  function isNumType(t) { return /^(int|uint|double|float|decimal|bigint|smallint|tinyint|hugeint)/i.test(t || ""); }

  function cell(v, type) {
    if (v === null || v === undefined) return el("td.null", "∅");
    // six decimals, but a number too small for them keeps six significant digits (1e-7 had shown as 0)
    if (typeof v === "number") return el("td.num", Number.isInteger(v) ? String(v)
      : String(Math.abs(v) >= 1e-3 ? +v.toFixed(6) : +v.toPrecision(6)));
    const s = typeof v === "object" ? JSON.stringify(v) : String(v);
    const td = el("td", s.length > 120 ? s.slice(0, 120) + "…" : s);
    if (s.length > 120) td.title = s;
    if (s.length > 60) td.className = "wrap";
    return td;
  }

  /** A results grid from {columns, types, rows}. opts.sortable(col) -> click handler, opts.sort/desc mark state. */
  function grid(data, opts = {}) {
    const cols = data.columns || [];
    const types = data.types || [];
    const descs = data.descriptions || [];
    const thead = el("tr", cols.map((c, i) => {
      const th = el("th", c, types[i] && opts.showTypes !== false ? el("span.typ", types[i].toLowerCase()) : null);
      if (descs[i]) th.title = descs[i];
      if (opts.onSort) {
        th.classList.add("sortable");
        if (opts.sort === c) th.firstChild.textContent = c + (opts.desc ? " ▼" : " ▲");
        th.addEventListener("click", () => opts.onSort(c));
        th.addEventListener("contextmenu", (e) => { if (opts.onColumn) { e.preventDefault(); opts.onColumn(c); } });
      }
      return th;
    }));
    const rows = (data.rows || []).map((r) => el("tr", r.map((v, i) => cell(v, types[i]))));
    const table = el("table.grid", el("thead", thead), el("tbody", rows));
    if (!rows.length) {
      const wrap = el("div", table, el("p.muted", { style: null }, opts.empty || "No rows."));
      wrap.lastChild.style.padding = "10px 12px";
      return wrap;
    }
    return table;
  }

  function put(target, ...nodes) {
    const t = typeof target === "string" ? document.getElementById(target) : target;
    t.replaceChildren(...nodes.filter(Boolean));
    return t;
  }

  function flash(msg) {
    const f = document.getElementById("flash");
    if (!f) return;
    f.textContent = msg;
    f.hidden = false;
    clearTimeout(flash._t);
    flash._t = setTimeout(() => { f.hidden = true; }, 8000);
  }

  function errorBox(msg) { return el("div.state.error", msg); }

  function debounce(fn, ms = 250) {
    let t;
    return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
  }

  function qs(params) {
    const u = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (Array.isArray(v)) v.forEach((x) => u.append(k, x));
      else if (v !== null && v !== undefined && v !== "") u.append(k, v);
    }
    const s = u.toString();
    return s ? "?" + s : "";
  }

  function download(name, text, type = "text/plain") {
    const a = el("a", { href: URL.createObjectURL(new Blob([text], { type })), download: name });
    document.body.append(a); a.click(); a.remove();
  }

  /** POST and save the binary answer as a file (report / subset zips). */
  async function postDownload(path, json, fallbackName) {
    const r = await fetch(path, { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" }, body: JSON.stringify(json) });
    if (!r.ok) {
      let msg = `${r.status}`;
      try { msg = (await r.json()).error || msg; } catch (e) { /* keep status */ }
      throw new Error(msg);
    }
    const cd = r.headers.get("content-disposition") || "";
    const m = cd.match(/filename="([^"]+)"/);
    const blob = await r.blob();
    const a = el("a", { href: URL.createObjectURL(blob), download: m ? m[1] : fallbackName });
    document.body.append(a); a.click(); a.remove();
  }

  const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d"] };
  const PLOT_LAYOUT = {
    margin: { l: 60, r: 20, t: 16, b: 48 }, font: { family: getComputedStyle(document.body).fontFamily, size: 12, color: "#1f2933" },
    paper_bgcolor: "#fff", plot_bgcolor: "#fff", colorway: ["#0f766e", "#7c3aed", "#ea580c", "#2563eb", "#db2777", "#65a30d", "#0891b2", "#a16207", "#64748b"],
    xaxis: { gridcolor: "#eef1f4", zerolinecolor: "#e3e7ec", automargin: true }, yaxis: { gridcolor: "#eef1f4", zerolinecolor: "#e3e7ec", automargin: true },
    legend: { orientation: "h", y: 1.08 }, hoverlabel: { font: { family: "system-ui, sans-serif" } },
  };
  /** plotly.js: a `defer` tag on pages that chart at once (population); loaded on first use elsewhere, so
      its 1 MB parse does not hold up what the page shows first (the patient explorer's uPlot chart). */
  let plotlyLoad = null;
  function plotly() {
    if (window.Plotly) return Promise.resolve(window.Plotly);
    if (!plotlyLoad) {
      plotlyLoad = new Promise((resolve, reject) => {
        let tag = document.querySelector("script[data-plotly]");
        if (!tag) {
          tag = el("script", { src: "/vendor/plotly.min.js", "data-plotly": "" });
          document.head.append(tag);
        }
        tag.addEventListener("load", () => resolve(window.Plotly));
        tag.addEventListener("error", () => { plotlyLoad = null; tag.remove(); reject(new Error("could not load the chart library (/vendor/plotly.min.js)")); });
        const t = setInterval(() => { if (window.Plotly) { clearInterval(t); resolve(window.Plotly); } }, 50);  // tag already ran
      });
    }
    return plotlyLoad;
  }
  function merge(a, b) {
    const out = { ...a };
    for (const [k, v] of Object.entries(b || {})) out[k] = v && typeof v === "object" && !Array.isArray(v) && a[k] ? merge(a[k], v) : v;
    return out;
  }
  async function plot(target, traces, layout) {
    const P = await plotly();
    const node = typeof target === "string" ? document.getElementById(target) : target;
    if (node.querySelector(".empty-chart") || !node._fullLayout) node.replaceChildren();  // keep plotly's own DOM
    await P.react(node, traces, merge(PLOT_LAYOUT, layout), PLOT_CONFIG);
    node.dataset.drawn = "1";
    node.dataset.drawnAt = String(Math.round(performance.now()));  // ms since navigation (benchmarks)
    return node;
  }
  function emptyChart(target, msg) {
    const node = typeof target === "string" ? document.getElementById(target) : target;
    if (window.Plotly) window.Plotly.purge(node);
    node.replaceChildren(el("div.empty-chart", msg));
    node.dataset.drawn = "empty";
  }

  // dataset selector: same page, other dataset
  const sel = document.getElementById("dataset-select");
  if (sel) {
    sel.addEventListener("change", () => {
      const page = body.dataset.page;
      const known = ["dictionary", "tables", "patients", "population", "cohort", "sql"];
      location.href = known.includes(page) ? `/d/${encodeURIComponent(sel.value)}/${page}` : `/d/${encodeURIComponent(sel.value)}/dictionary`;
    });
  }

  const colors = PLOT_LAYOUT.colorway;
  return { api, ds, el, num, grid, put, flash, errorBox, debounce, qs, download, postDownload, plot, plotly, emptyChart, colors, slug, isNumType, cell };
})();
