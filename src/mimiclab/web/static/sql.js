/* SQL: read-only editor, results grid, CSV export, example queries. */
"use strict";
(() => {
  const { api, ds, el, num, put, grid, slug } = ML;
  const editor = document.getElementById("sql-editor");
  const status = document.getElementById("sql-status");
  const errBox = document.getElementById("sql-error");
  const KEY = `mimiclab.sql.${slug}`;

  function csvLink() {
    document.getElementById("sql-csv").href = ds("/sql.csv") + ML.qs({ sql: editor.value });
  }

  async function run() {
    const sql = editor.value;
    try { localStorage.setItem(KEY, sql); } catch (e) { /* private mode */ }
    csvLink();
    errBox.hidden = true;
    status.textContent = "running…";
    const btn = document.getElementById("sql-run");
    btn.disabled = true;
    try {
      const r = await api(ds("/sql"), { json: { sql } });
      put("sql-results", grid(r, { empty: "The query returned no rows." }));
      status.textContent = `${num(r.row_count)} row${r.row_count === 1 ? "" : "s"}${r.truncated ? ` (first ${num(r.max_rows)} shown — download CSV for more)` : ""} · ${(r.seconds * 1000).toFixed(0)} ms`;
      status.dataset.rows = r.row_count;
    } catch (e) {
      errBox.textContent = e.message;
      errBox.hidden = false;
      put("sql-results");
      status.textContent = "";
    } finally { btn.disabled = false; }
  }

  editor.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === "Enter") { e.preventDefault(); run(); }
    if (e.key === "Tab") {
      e.preventDefault();
      const s = editor.selectionStart;
      editor.setRangeText("  ", s, editor.selectionEnd, "end");
    }
  });
  editor.addEventListener("input", csvLink);
  document.getElementById("sql-run").addEventListener("click", run);

  async function load() {
    try {
      const saved = localStorage.getItem(KEY);
      if (saved) editor.value = saved;
    } catch (e) { /* ignore */ }
    csvLink();
    try {
      const ex = await api(ds("/sql/examples"));
      put("sql-examples", ...ex.examples.map((x) => {
        const a = el("a", { href: "#" }, x.title);
        a.addEventListener("click", (e) => { e.preventDefault(); editor.value = x.sql; run(); });
        return a;
      }));
      if (!ex.examples.length) put("sql-examples", el("p.muted.small", "No examples for this dataset."));
      const t = await api(ds("/tables"));
      put("sql-tables", ...t.tables.filter((x) => x.status === "loaded").map((x) => {
        const a = el("a", { href: "#", title: x.description }, x.table);
        a.addEventListener("click", (e) => { e.preventDefault(); editor.value = `SELECT *\nFROM ${x.table}\nLIMIT 100;`; run(); });
        return a;
      }));
    } catch (e) { put("sql-examples", ML.errorBox(e.message)); }
  }
  load();
})();
