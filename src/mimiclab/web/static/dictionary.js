/* Data dictionary: every table and column with type and description; search d_items, d_labitems, ICD. */
"use strict";
(() => {
  const { api, ds, el, num, put, grid, debounce, slug } = ML;
  let dict = null;

  function tableCard(t) {
    const id = "t-" + t.table;
    return el("section.card.dtable", { id, "data-table": t.table },
      el("h2", el("code", t.table), el(`span.badge.${t.status}`, t.status === "loaded" ? `${num(t.rows)} rows` : t.status.replace("_", " ")),
        t.kind === "dictionary" ? el("span.badge.dictionary", "dictionary") : null,
        el("a.small", { href: `/d/${encodeURIComponent(slug)}/tables/${encodeURIComponent(t.table)}` }, "browse →")),
      el("p.muted", t.description || ""),
      el("table.grid", el("thead", el("tr", el("th", "column"), el("th", "type"), el("th", "description"))),
        el("tbody", t.columns.map((c) => el("tr", { "data-col": c.name },
          el("td", c.name, t.primary_key.includes(c.name) ? el("span.badge", { title: "primary key" }, "key") : null),
          el("td.type", c.type.toLowerCase()), el("td.desc", c.description))))));
  }

  function render(filter) {
    const f = (filter || "").trim().toLowerCase();
    const toc = [];
    const cards = [];
    for (const m of dict.modules) {
      const tables = m.tables.filter((t) => !f || t.table.toLowerCase().includes(f) || (t.description || "").toLowerCase().includes(f)
        || t.columns.some((c) => c.name.toLowerCase().includes(f) || (c.description || "").toLowerCase().includes(f)));
      if (!tables.length) continue;
      toc.push(el("h3", m.db_schema));
      for (const t of tables) {
        toc.push(el(`a${t.status === "loaded" ? "" : ".empty"}`, { href: `#t-${t.table}` }, el("span", t.name), el("span.n", t.status === "loaded" ? num(t.rows) : "—")));
        const card = tableCard(t);
        if (f) {
          for (const tr of card.querySelectorAll("tbody tr")) {
            const txt = tr.textContent.toLowerCase();
            if (txt.includes(f)) tr.querySelector("td").classList.add("hit");
            else if (!t.table.toLowerCase().includes(f)) tr.hidden = true;
          }
        }
        cards.push(card);
      }
    }
    put("dict-toc", ...toc);
    put("dict-tables", ...(cards.length ? cards : [el("p.muted", `No table or column matches “${filter}”.`)]));
  }

  async function lookups() {
    const sel = document.getElementById("lookup-table");
    const q = document.getElementById("lookup-q");
    const { lookups } = await api(ds("/lookups"));
    if (!lookups.length) { document.getElementById("lookups").hidden = true; return; }
    sel.replaceChildren(...lookups.map((l) => el("option", { value: l.table }, `${l.label} (${l.name}, ${num(l.rows)})`)));
    const run = async () => {
      try {
        const res = await api(ds(`/lookups/${encodeURIComponent(sel.value)}`) + ML.qs({ q: q.value, limit: 100 }));
        put("lookup-results", grid(res, { showTypes: false, empty: q.value ? `Nothing matches “${q.value}”.` : "This dictionary table is empty (not loaded)." }));
      } catch (e) { put("lookup-results", ML.errorBox(e.message)); }
    };
    sel.addEventListener("change", run);
    q.addEventListener("input", debounce(run, 200));
    await run();
  }

  async function load() {
    try {
      dict = await api(ds("/dictionary"));
      const input = document.getElementById("dict-filter");
      input.addEventListener("input", debounce(() => render(input.value), 150));
      render("");
      if (location.hash) document.getElementById(location.hash.slice(1))?.scrollIntoView();
    } catch (e) { put("dict-tables", ML.errorBox(e.message)); }
    try { await lookups(); } catch (e) { put("lookup-results", ML.errorBox(e.message)); }
  }
  load();
})();
