/* Population: distribution of any column (histogram or bars), optionally grouped; counts by category. */
"use strict";
(() => {
  const { api, ds, el, num, put, grid, qs, slug } = ML;
  const $ = (id) => document.getElementById(id);
  let dict = null;

  function tableOf(name) {
    for (const m of dict.modules) for (const t of m.tables) if (t.table === name) return t;
    return null;
  }

  function fillColumns() {
    const t = tableOf($("pop-table").value);
    const cols = t ? t.columns : [];
    const want = new URLSearchParams(location.search);
    $("pop-column").replaceChildren(...cols.map((c) => el("option", { value: c.name }, `${c.name} (${c.type.toLowerCase()})`)));
    $("pop-by").replaceChildren(el("option", { value: "" }, "(none)"),
      ...cols.filter((c) => !/TIMESTAMP|DATE|DOUBLE/.test(c.type)).map((c) => el("option", { value: c.name }, c.name)));
    const pick = want.get("column") || (cols.find((c) => ["admission_type", "anchor_age", "first_careunit", "gender", "los"].includes(c.name)) || cols[0] || {}).name;
    if (pick) $("pop-column").value = pick;
    if (want.get("by")) $("pop-by").value = want.get("by");
  }

  async function draw() {
    const table = $("pop-table").value, column = $("pop-column").value, by = $("pop-by").value;
    if (!table || !column) return;
    const bins = Math.max(2, Math.min(200, +$("pop-bins").value || 30));
    history.replaceState(null, "", location.pathname + qs({ table, column, by, bins }));
    $("pop-summary").textContent = "Counting…";
    try {
      const d = await api(ds("/distribution") + qs({ table, column, by, bins }));
      const pct = $("pop-pct").checked;
      const total = d.series.reduce((a, s) => a + s.counts.reduce((x, y) => x + y, 0), 0);
      $("pop-summary").textContent = `${num(d.rows)} rows in ${d.table} · ${num(d.nulls)} with ${d.column} empty${d.by ? ` · grouped by ${d.by}` : ""}`;
      if (d.kind === "empty" || !total) { ML.emptyChart("pop-chart", "No values to plot: the column is empty in this table."); put("pop-table-out"); return; }
      const val = (s) => pct ? s.counts.map((c) => 100 * c / (s.counts.reduce((a, b) => a + b, 0) || 1)) : s.counts;
      let traces, layout, rows;
      if (d.kind === "categorical") {
        traces = d.series.map((s) => ({ type: "bar", name: s.name, x: d.categories, y: val(s), hovertemplate: "%{x}<br>%{y}<extra>%{fullData.name}</extra>" }));
        layout = { barmode: "group", xaxis: { type: "category", automargin: true, tickangle: d.categories.length > 8 ? -35 : 0 }, yaxis: { title: { text: pct ? "% of group" : "rows" } }, showlegend: !!d.by };
        rows = d.categories.map((c, i) => [c, ...d.series.map((s) => s.counts[i])]);
      } else {
        const mids = d.edges.slice(0, -1).map((e, i) => d.kind === "temporal" ? e : (e + d.edges[i + 1]) / 2);
        const width = d.kind === "temporal" ? undefined : (d.edges[1] - d.edges[0]);
        traces = d.series.map((s) => ({ type: "bar", name: s.name, x: d.integer ? d.edges.slice(0, -1) : mids, y: val(s), width: d.integer ? 0.9 : width, opacity: d.series.length > 1 ? 0.65 : 1 }));
        layout = { barmode: d.series.length > 1 ? "overlay" : "group", bargap: 0.03, xaxis: { title: { text: column } }, yaxis: { title: { text: pct ? "% of group" : "rows" } }, showlegend: !!d.by };
        rows = d.edges.slice(0, -1).map((e, i) => [d.integer ? e : `${typeof e === "number" ? +e.toFixed(3) : e} – ${typeof d.edges[i + 1] === "number" ? +d.edges[i + 1].toFixed(3) : d.edges[i + 1]}`, ...d.series.map((s) => s.counts[i])]);
      }
      await ML.plot("pop-chart", traces, layout);
      put("pop-table-out", grid({ columns: [column, ...d.series.map((s) => s.name === "all" ? "rows" : s.name)], types: [], rows }, { showTypes: false }));
    } catch (e) {
      $("pop-summary").textContent = "";
      ML.emptyChart("pop-chart", e.message);
    }
  }

  async function load() {
    try {
      dict = await api(ds("/dictionary"));
      const tables = dict.modules.flatMap((m) => m.tables).filter((t) => t.status === "loaded");
      $("pop-table").replaceChildren(...tables.map((t) => el("option", { value: t.table }, `${t.table} (${num(t.rows)})`)));
      const want = new URLSearchParams(location.search);
      const first = want.get("table") || (tables.find((t) => /\.(admissions|person|edstays)$/.test(t.table)) || tables[0] || {}).table;
      if (first) $("pop-table").value = first;
      if (want.get("bins")) $("pop-bins").value = want.get("bins");
      fillColumns();
      $("pop-table").addEventListener("change", () => { history.replaceState(null, "", location.pathname); fillColumns(); draw(); });
      for (const id of ["pop-column", "pop-by", "pop-bins", "pop-pct"]) $(id).addEventListener("change", draw);
      await draw();
    } catch (e) { put("pop-summary", ML.errorBox(e.message)); }
  }
  load();
})();
