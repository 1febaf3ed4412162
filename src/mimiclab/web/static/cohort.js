/* Cohort builder: criteria from the cohort library by point and click; attrition and Table 1 update live. */
"use strict";
(() => {
  const { api, ds, el, num, put, grid, qs, slug } = ML;
  const $ = (id) => document.getElementById(id);
  const KEY = `mimiclab.cohort.${slug}`;
  let library = [];
  let spec = { name: "my-cohort", unit: "admission", include: [], exclude: [] };
  let seq = 0;

  function save() { try { localStorage.setItem(KEY, JSON.stringify(spec)); } catch (e) { /* private mode */ } }

  /** A list below a text parameter with values from the data (codes with titles, labels, categories, most
      frequent first); clicking one puts it in place of the word being typed. */
  function picker(input, criterion, param) {
    const list = el("div.suggest", { role: "listbox", "aria-label": `${param} suggestions` });
    list.hidden = true;
    let asked = 0;
    const token = () => input.value.split(",").pop().trim();
    const refresh = ML.debounce(async () => {
      const mine = ++asked;
      try {
        const r = await api(ds("/cohort/suggest") + qs({ criterion, param, q: token() }));
        if (mine !== asked) return;
        list.replaceChildren(...r.suggestions.map((x) => el("button.sugg", { type: "button", role: "option", "data-value": x.value, onclick: () => choose(x.value) },
          el("b", x.value), x.label ? el("span.muted", x.label) : null, x.n !== null && x.n !== undefined ? el("span.n", num(x.n)) : null)));
        list.hidden = !r.suggestions.length;
      } catch (e) { list.hidden = true; }
    }, 150);
    function choose(v) {
      const parts = input.value.split(",").map((x) => x.trim());
      parts[parts.length - 1] = v;
      input.value = parts.filter(Boolean).join(", ") + ", ";
      asked++;  // an answer still on its way must not reopen the list
      list.hidden = true;
      input.focus();
    }
    input.addEventListener("input", refresh);
    input.addEventListener("click", refresh);
    input.addEventListener("keydown", (e) => { if (e.key === "Escape") list.hidden = true; });
    return list;
  }

  function field(p, criterion) {
    const id = `p-${p.name}`;
    const req = p.required ? " *" : "";
    if (p.type === "bool") {
      return el("label.check", el("input", { type: "checkbox", id, "data-param": p.name, "data-kind": "bool", checked: p.default === true }), p.name.replace(/_/g, " "));
    }
    if (p.type === "choice") {
      const s = el("select", { id, "data-param": p.name, "data-kind": "choice" },
        p.required ? null : el("option", { value: "" }, p.default !== undefined && p.default !== null ? `(default: ${p.default})` : "(any)"),
        p.choices.map((c) => el("option", { value: c }, c)));
      return el("label", `${p.name.replace(/_/g, " ")}${req}`, s);
    }
    if (p.type === "list[choice]") {
      return el("fieldset", el("legend.small.muted", `${p.name}${req}`), p.choices.map((c) =>
        el("label.check", el("input", { type: "checkbox", "data-param": p.name, "data-kind": "multi", value: c }), c)));
    }
    if (p.type === "window") {
      return el("fieldset", el("legend.small.muted", "time window (optional)"),
        el("label", "anchor", el("select", { "data-param": "window.anchor", "data-kind": "choice" }, el("option", { value: "" }, "(default)"), el("option", { value: "admission" }, "admission"), el("option", { value: "icu" }, "icu"))),
        el("label", "from hour", el("input", { type: "number", step: "any", "data-param": "window.start_hours", "data-kind": "float", placeholder: "0" })),
        el("label", "to hour", el("input", { type: "number", step: "any", "data-param": "window.end_hours", "data-kind": "float", placeholder: "end of stay" })));
    }
    if (p.name === "query") {
      return el("label", `SQL query${req}`, el("textarea", { id, rows: 4, "data-param": p.name, "data-kind": "str", placeholder: "SELECT hadm_id FROM ..." }));
    }
    const isList = p.type.startsWith("list[");
    const kind = isList ? p.type : p.type;
    const hint = { values: "comma-separated, e.g. EW EMER., URGENT", icd9: "e.g. 4280, 410*", icd10: "e.g. I50*, A41-A41", labels: "e.g. Creatinine, Lactate", itemids: "e.g. 50912", names: "e.g. vancomycin", codes: "NDC or formulary codes" }[p.name] || "";
    const input = el("input", { id, type: /float|int/.test(p.type) && !isList ? "number" : "text", step: "any", "data-param": p.name, "data-kind": kind, placeholder: hint, autocomplete: "off" });
    const label = el("label", `${p.name.replace(/_/g, " ")}${req}`, input);
    if (!p.suggest) return label;
    const box = el("div.pickfield", label, picker(input, criterion, p.name));
    box.addEventListener("focusout", (e) => { if (!box.contains(e.relatedTarget)) box.lastChild.hidden = true; });
    return box;
  }

  function showForm() {
    const c = library.find((x) => x.name === $("crit-type").value);
    if (!c) return;
    $("crit-help").textContent = c.description || "";
    put("crit-params", ...c.parameters.map((p) => field(p, c.name)));
  }

  function readForm() {
    const c = library.find((x) => x.name === $("crit-type").value);
    const out = { type: c.name };
    for (const node of $("crit-params").querySelectorAll("[data-param]")) {
      const name = node.dataset.param, kind = node.dataset.kind;
      let v;
      if (kind === "bool") v = node.checked;
      else if (kind === "multi") { if (!node.checked) continue; (out[name] = out[name] || []).push(node.value); continue; }
      else if (kind === "float" || kind === "int") v = node.value === "" ? undefined : Number(node.value);
      else if (kind.startsWith("list[")) {
        v = node.value.split(",").map((x) => x.trim()).filter(Boolean);
        if (kind === "list[int]") v = v.map(Number);
        if (!v.length) v = undefined;
      } else v = node.value === "" ? undefined : node.value;
      if (v === undefined) continue;
      if (name.startsWith("window.")) { out.window = out.window || {}; out.window[name.slice(7)] = v; }
      else out[name] = v;
    }
    return out;
  }

  function describe(c) {
    const lib = library.find((x) => x.name === c.type);
    const parts = Object.entries(c).filter(([k]) => k !== "type" && k !== "label").map(([k, v]) =>
      `${k}=${Array.isArray(v) ? v.join(",") : typeof v === "object" ? JSON.stringify(v) : v}`);
    return `${lib ? lib.label : c.type}${parts.length ? ": " + parts.join(" ") : ""}`;
  }

  function listCriteria() {
    const items = [];
    for (const kind of ["include", "exclude"]) {
      spec[kind].forEach((c, i) => {
        const rm = el("button", { type: "button", title: "remove", "aria-label": "remove criterion" }, "remove");
        rm.addEventListener("click", () => { spec[kind].splice(i, 1); changed(); });
        items.push(el("li", { "data-kind": kind }, el(kind === "include" ? "span.incl" : "span.excl", kind === "include" ? "Include " : "Exclude "), describe(c), rm));
      });
    }
    put("crit-list", ...(items.length ? items : [el("li.muted", "None yet: everyone is in.")]));
  }

  function attrition(res) {
    const cols = res.attrition.columns;
    const rows = res.attrition.rows.map((r) => Object.fromEntries(cols.map((c, i) => [c, r[i]])));
    const n0 = rows[0] ? rows[0].n_after || 1 : 1;
    const cells = [el("div.hdr", "Step"), el("div.hdr", ""), el("div.hdr.n", "Excluded"), el("div.hdr.n", `Remaining`)];
    for (const r of rows) {
      const bar = el("div.bar", el("i"));
      bar.firstChild.style.width = `${Math.max(0.5, 100 * r.n_after / n0)}%`;
      cells.push(el("div", { "data-step": r.step }, r.label), bar, el("div.x", r.step ? `−${num(r.n_excluded)}` : ""), el("div.n", { "data-n-after": r.n_after }, num(r.n_after)));
    }
    return el("div.attr#attrition-grid", cells);
  }

  function table1(t) {
    if (!t) return el("p.muted", "Table 1 needs at least one unit in the cohort.");
    const out = { columns: t.columns, types: [], rows: [] };
    let last = null;
    for (const r of t.rows) { const row = [...r]; if (row[0] === last) row[0] = ""; else last = row[0]; out.rows.push(row); }
    return grid(out, { showTypes: false });
  }

  let running = 0;
  async function runNow() {
    const mine = ++running;
    $("cohort-error").hidden = true;
    $("cohort-n").textContent = "…";
    try {
      const res = await api(ds("/cohort/run"), { json: { spec } });
      if (mine !== running) return;
      $("cohort-n").textContent = `${num(res.n)} ${res.unit_label}`;
      $("cohort-n").dataset.n = res.n;
      put("attrition", attrition(res), ...(res.warnings || []).map((w) => el("div.state.warn.small", w)), res.empty ? el("div.state.warn", res.empty) : null);
      put("table1", table1(res.table1), res.table1_note ? el("p.muted.small", res.table1_note) : null);
      $("cohort-sql").textContent = res.sql;
    } catch (e) {
      if (mine !== running) return;
      $("cohort-n").textContent = "";
      $("cohort-error").textContent = e.message;
      $("cohort-error").hidden = false;
    }
  }
  const run = ML.debounce(runNow, 150);

  function changed() { save(); listCriteria(); run(); }

  function add(kind) {
    const c = readForm();
    spec[kind].push(c);
    seq++;
    changed();
  }

  async function load() {
    try {
      const lib = await api("/api/cohort/criteria");
      library = lib.criteria;
      const groups = {};
      for (const c of library) (groups[c.group] = groups[c.group] || []).push(c);
      put("crit-type", ...Object.entries(groups).map(([g, cs]) => el("optgroup", { label: g }, cs.map((c) => el("option", { value: c.name }, c.label)))));
      const unit = el("select#cohort-unit", lib.units.map((u) => el("option", { value: u.name }, u.label)));
      $("cohort-name").parentElement.after(el("label", "Unit of analysis", unit));
      try { const s = JSON.parse(localStorage.getItem(KEY) || "null"); if (s && s.unit) spec = s; } catch (e) { /* ignore */ }
      unit.value = spec.unit;
      $("cohort-name").value = spec.name || "my-cohort";
      unit.addEventListener("change", () => { spec.unit = unit.value; changed(); });
      $("cohort-name").addEventListener("change", () => { spec.name = $("cohort-name").value || "cohort"; save(); });
      $("crit-type").addEventListener("change", showForm);
      $("crit-include").addEventListener("click", () => add("include"));
      $("crit-exclude").addEventListener("click", () => add("exclude"));
      $("spec-save").addEventListener("click", async () => {
        try { await ML.postDownload("/api/cohort/spec.yaml", { spec }, `${spec.name}.yaml`); } catch (e) { ML.flash(e.message); }
      });
      $("spec-file").addEventListener("change", async () => {
        const f = $("spec-file").files[0];
        if (!f) return;
        try {
          const r = await api("/api/cohort/parse", { json: { text: await f.text() } });
          spec = { name: r.spec.name || "cohort", unit: r.spec.unit, include: r.spec.include || [], exclude: r.spec.exclude || [] };
          unit.value = spec.unit; $("cohort-name").value = spec.name;
          changed();
        } catch (e) { ML.flash(`Could not load ${f.name}: ${e.message}`); }
        $("spec-file").value = "";
      });
      for (const [id, what] of [["dl-report", "report"], ["dl-subset", "subset"]]) {
        $(id).addEventListener("click", async () => {
          const b = $(id); b.disabled = true; const old = b.textContent; b.textContent = "Preparing…";
          const whole = what === "subset" && $("dl-whole").checked ? "?whole_patients=true" : "";
          try { await ML.postDownload(ds(`/cohort/${what}`) + whole, { spec }, `${spec.name}-${what}.zip`); } catch (e) { ML.flash(e.message); }
          b.disabled = false; b.textContent = old;
        });
      }
      showForm();
      listCriteria();
      await runNow();
    } catch (e) { put("attrition", ML.errorBox(e.message)); }
  }
  load();
})();
