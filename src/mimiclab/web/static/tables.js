/* Table browser: filter, sort, paginate any table; per-column stats; export the view as CSV. */
"use strict";
(() => {
  const { api, ds, el, num, put, grid, debounce, qs, slug } = ML;
  const PAGE = 50;
  const state = { table: document.body.dataset.table || "", f: [], q: "", sort: null, desc: false, offset: 0, columns: [] };

  function fromUrl() {
    const u = new URLSearchParams(location.search);
    state.f = u.getAll("f");
    state.q = u.get("q") || "";
    state.sort = u.get("sort");
    state.desc = u.get("desc") === "1";
    state.offset = +(u.get("offset") || 0);
  }
  function params() { return { f: state.f, q: state.q, sort: state.sort, desc: state.desc ? "1" : "" }; }
  function toUrl() {
    history.replaceState(null, "", location.pathname + qs({ ...params(), offset: state.offset || "" }));
  }

  async function list() {
    const { tables } = await api(ds("/tables"));
    const groups = {};
    for (const t of tables) (groups[t.table.split(".")[0]] = groups[t.table.split(".")[0]] || []).push(t);
    const nodes = [];
    for (const [schema, ts] of Object.entries(groups)) {
      nodes.push(el("h3", schema));
      for (const t of ts) {
        nodes.push(el(`a${t.table === state.table || t.name === state.table ? ".active" : ""}${t.status === "loaded" ? "" : ".empty"}`,
          { href: `/d/${encodeURIComponent(slug)}/tables/${encodeURIComponent(t.table)}`, title: t.description },
          el("span", t.name), el("span.n", t.status === "loaded" ? num(t.rows) : "not loaded")));
      }
    }
    put("table-list", ...nodes);
    return tables;
  }

  function chips() {
    put("filters", ...state.f.map((f, i) => {
      const [c, op, ...v] = f.split(":");
      const sym = { eq: "=", ne: "≠", lt: "<", le: "≤", gt: ">", ge: "≥", contains: "contains", starts: "starts with", null: "is empty", notnull: "is not empty" }[op] || op;
      const x = el("button", { type: "button", title: "remove filter", "aria-label": "remove filter" }, "×");
      x.addEventListener("click", () => { state.f.splice(i, 1); state.offset = 0; refresh(); });
      return el("span.chip", `${c} ${sym} ${v.join(":")}`, x);
    }));
  }

  async function stats(column) {
    const box = document.getElementById("col-stats");
    box.hidden = false;
    put(box, el("p.muted", `Computing statistics of ${column}…`));
    try {
      const s = await api(ds(`/tables/${encodeURIComponent(state.table)}/stats`) + qs({ column, f: state.f, q: state.q }));
      const kv = (k, v) => el("div.kv", el("span", k), el("b", v));
      // above a few million rows the server estimates what needs every value, and says which (s.estimated)
      const est = s.estimated, approx = (k) => (est && est.fields.includes(k) ? "≈ " : "");
      const facts = [kv("rows", num(s.rows)), kv("empty", num(s.nulls)),
        kv(est ? "distinct (at least: seen in the sample)" : "distinct (approx.)", num(s.distinct))];
      for (const k of ["min", "max", "mean", "median", "std"]) if (s[k] !== undefined && s[k] !== null) facts.push(kv(`${approx(k)}${k}`, typeof s[k] === "number" ? String(+s[k].toFixed(4)) : s[k]));
      const note = est ? el("p.muted.small.estimated",
        `Estimated from a sample of ${num(est.from_rows)} of the ${num(est.of)} rows (blocks of rows, ${est.percent}% of the table): `
        + `${est.fields.filter((f) => f !== "distinct" && f !== "top").join(", ")}${est.fields.length > 2 ? " and " : ""}the counts of the most frequent values are estimates (≈); `
        + `distinct counts the values seen in the sample. Rows, empty${s.min !== undefined ? ", min and max" : ""} are exact.`) : null;
      const close = el("button.button.secondary", { type: "button" }, "close");
      close.addEventListener("click", () => { box.hidden = true; });
      put(box, el("div.row.between", el("h2", `Column `, el("code", s.column), " ", el("span.muted.small", s.type.toLowerCase())), close),
        el("div.stats", facts), ...(note ? [note] : []),
        el("h3", est ? "Most frequent values (estimated from the sample)" : "Most frequent values"),
        ...(est && est.top_left_out ? [el("p.muted.small.left-out", s.top.length
          ? `${est.top_left_out} frequent-looking values are left out: the sample caught them in one place only (rows stored together, such as one patient's), so their counts cannot be estimated.`
          : "Not estimated: the values seen most often in the sample were each stored together (such as one patient's rows), so a sample cannot count them. Filter the rows to count them exactly.")] : []),
        grid({ columns: ["value", est ? "rows ≈" : "rows"], types: ["", ""], rows: s.top.map((t) => [t.value, t.n]) }, { showTypes: false }));
    } catch (e) { put(box, ML.errorBox(e.message)); }
  }

  let shown = null;  // the AbortController of the refresh() the page shows; a newer one aborts it

  // The pager and the row count; `total` null while the count is still being worked out.
  function pager(total, rowsOnPage) {
    const prev = el("button.button.secondary", { type: "button", disabled: state.offset === 0 }, "‹ Prev");
    const next = el("button.button.secondary#pager-next", { type: "button" }, "Next ›");
    prev.addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); refresh(); });
    next.addEventListener("click", () => { state.offset += PAGE; refresh(); });
    put("pager", prev, next, el("span#pager-of", ""));
    counted(total, rowsOnPage);
  }

  // The count's parts of the pager, updated in place when the count arrives (a focused button keeps focus).
  function counted(total, rowsOnPage) {
    const known = total !== null && total !== undefined;
    const from = rowsOnPage ? state.offset + 1 : 0, to = rowsOnPage ? state.offset + rowsOnPage : 0;
    document.getElementById("pager-next").disabled = known ? to >= total : rowsOnPage < PAGE;
    document.getElementById("pager-of").textContent = `${num(from)}–${num(to)} of ${known ? num(total) : "…"} rows`;
    document.getElementById("table-meta").textContent = known
      ? `${num(total)} rows${state.f.length || state.q ? " match" : ""}` : "counting the matching rows…";
  }

  async function refresh() {
    toUrl(); chips();
    if (shown) shown.abort();  // the server stops the work of a request whose client went away
    const me = shown = new AbortController();
    const link = document.getElementById("export-csv");
    link.href = ds(`/tables/${encodeURIComponent(state.table)}/export.csv`) + qs(params());
    try {
      // rows first, the count after: the rows show without waiting for a second pass over a large table
      const d = await api(ds(`/tables/${encodeURIComponent(state.table)}/rows`) + qs({ ...params(), limit: PAGE, offset: state.offset, count: 0 }),
        { signal: me.signal });
      if (me !== shown) return;
      state.columns = d.columns;
      const fc = document.getElementById("filter-col");
      if (!fc.options.length) fc.replaceChildren(...d.columns.map((c, i) => el("option", { value: c }, `${c} (${d.types[i].toLowerCase()})`)));
      put("table-grid", grid(d, {
        sort: state.sort, desc: state.desc,
        empty: d.status !== "loaded" ? "This table is not loaded: its file was not part of the download, so it is empty." : "No rows match the filters.",
        onSort: (c) => { if (state.sort === c) state.desc = !state.desc; else { state.sort = c; state.desc = false; } state.offset = 0; refresh(); },
      }));
      for (const th of document.querySelectorAll("#table-grid th")) {
        const col = th.firstChild.textContent.replace(/ [▲▼]$/, "");
        const b = el("a.small", { href: "#", title: "column statistics" }, " stats");
        b.addEventListener("click", (e) => { e.preventDefault(); e.stopPropagation(); stats(col); });
        th.append(b);
      }
      pager(d.total, d.rows.length);
      if (d.total === null) {
        try {
          const c = await api(ds(`/tables/${encodeURIComponent(state.table)}/count`) + qs({ f: state.f, q: state.q }),
            { signal: me.signal });
          if (me === shown) counted(c.total, d.rows.length);
        } catch (e) {  // the rows stay; only the count is missing
          if (me === shown) document.getElementById("table-meta").textContent = `The rows could not be counted: ${e.message}`;
        }
      }
    } catch (e) {
      if (me !== shown) return;
      put("table-grid", ML.errorBox(e.message));
      put("pager");
    }
  }

  async function load() {
    fromUrl();
    let tables;
    try { tables = await list(); } catch (e) { put("table-grid", ML.errorBox(e.message)); return; }
    if (!state.table) {
      const first = tables.find((t) => t.name === "admissions" || t.name === "person" || t.name === "edstays") || tables.find((t) => t.status === "loaded") || tables[0];
      if (first) location.replace(`/d/${encodeURIComponent(slug)}/tables/${encodeURIComponent(first.table)}`);
      return;
    }
    const t = tables.find((x) => x.table === state.table || x.name === state.table);
    if (t) state.table = t.table;
    document.getElementById("table-title").textContent = state.table;
    document.getElementById("table-desc").textContent = t ? t.description : "";
    document.getElementById("table-tools").hidden = false;
    const q = document.getElementById("table-q");
    q.value = state.q;
    q.addEventListener("input", debounce(() => { state.q = q.value; state.offset = 0; refresh(); }, 300));
    const add = () => {
      const c = document.getElementById("filter-col").value, op = document.getElementById("filter-op").value;
      const v = document.getElementById("filter-value").value;
      if (!c) return;
      state.f.push(op === "null" || op === "notnull" ? `${c}:${op}` : `${c}:${op}:${v}`);
      state.offset = 0;
      document.getElementById("filter-value").value = "";
      refresh();
    };
    document.getElementById("filter-add").addEventListener("click", add);
    document.getElementById("filter-value").addEventListener("keydown", (e) => { if (e.key === "Enter") add(); });
    await refresh();
  }
  load();
})();
