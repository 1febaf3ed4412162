/* Home: built datasets and what else PhysioNet publishes, with the commands to get it. */
"use strict";
(() => {
  const { api, el, num, put } = ML;

  function when(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }
  function bytes(n) {
    if (!n) return "–";
    const u = ["B", "KB", "MB", "GB", "TB"]; let i = 0;
    while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
    return `${n.toFixed(n < 10 && i ? 1 : 0)} ${u[i]}`;
  }
  function cmd(lines) {
    const pre = el("pre.cmd", lines.join("\n"));
    const btn = el("button.button.secondary.copy", { type: "button" }, "copy");
    btn.addEventListener("click", async () => {
      try { await navigator.clipboard.writeText(lines.join("\n")); btn.textContent = "copied"; } catch (e) { btn.textContent = "select and copy"; }
    });
    return el("div.row", pre, btn);
  }

  function builtCard(b) {
    const base = `/d/${encodeURIComponent(b.slug)}`;
    const notLoaded = b.not_loaded.length
      ? el("div.notloaded.state.warn",
          el("b", `${b.not_loaded.length} table${b.not_loaded.length > 1 ? "s" : ""} not loaded: `),
          b.not_loaded.map((t) => t.table).join(", "),
          el("div.small", "These exist as empty typed tables (their files were not in the download); queries that use them return no rows."))
      : null;
    return el("article.card.ds", { "data-slug": b.slug },
      el("h2", el("a", { href: `${base}/dictionary` }, b.slug), el("span.badge", b.version),
        b.synthetic ? el("span.badge.synthetic", { title: "Generated data, not real patients" }, "synthetic") : null,
        b.access ? el(`span.badge.${b.access}`, b.access) : null),
      el("div.title", b.title),
      el("div.stats",
        el("div.stat", el("b", num(b.loaded_tables)), el("span", `of ${b.tables} tables loaded`)),
        el("div.stat", el("b", num(b.rows)), el("span", "rows")),
        el("div.stat", el("b", b.modules.join(", ")), el("span", "modules"))),
      el("div.muted.small", `Built ${when(b.built_at)}${b.seconds ? ` in ${b.seconds.toFixed(1)} s` : ""} · data digest ${b.digest}`),
      notLoaded,
      el("div.links",
        [["dictionary", "Dictionary"], ["tables", "Tables"], ["patients", "Patients"], ["population", "Population"],
        ["cohort", "Cohorts"], ["sql", "SQL"]].map(([p, label]) => el("a.button.secondary", { href: `${base}/${p}` }, label))));
  }

  function availRow(d) {
    const access = el("div", el(`span.badge.${d.access}`, d.access));
    if (d.access === "open") access.append(el("div.small.muted", "No account needed."));
    else {
      access.append(el("ol.steps", d.steps.map((s) => el("li", s.text.split(" (")[0], " ", el("a", { href: s.link, rel: "noreferrer", target: "_blank" }, "link")))));
      access.append(el("div.small.muted", "Then: mimiclab login"));
    }
    const check = el("button.button.secondary.small", { type: "button" }, "Check access");
    const out = el("div.small");
    check.addEventListener("click", async () => {
      check.disabled = true; out.textContent = "asking physionet.org…";
      try {
        const r = await api(`/api/access/${encodeURIComponent(d.slug)}`, { method: "POST" });
        out.replaceChildren(el(`span.badge.${r.ok ? "ok" : "failed"}`, r.state), " ", r.message);
      } catch (e) { out.replaceChildren(el("span.badge.failed", "error"), " ", e.message); }
      check.disabled = false;
    });
    return el("tr",
      el("td", el("b", d.slug), el("div.small.muted", d.title), d.demo_of ? el("div.small.muted", `demo of ${d.demo_of}`) : null),
      el("td", d.default_version, el("div.small.muted", d.versions.length > 1 ? `also ${d.versions.filter((v) => v !== d.default_version).join(", ")}` : "")),
      el("td.num", bytes(d.size_bytes)),
      el("td.wrap", access),
      el("td.wrap", cmd(d.commands), check, out));
  }

  async function load() {
    try {
      const data = await api("/api/datasets");
      if (!data.built.length) {
        put("built", el("div.state.info",
          el("b", "No dataset is built yet. "), "The quickest start is the open 100-patient MIMIC-IV demo:",
          cmd(["mimiclab demo"]), el("div.small", "or: mimiclab download mimic-iv-demo && mimiclab build mimic-iv-demo")));
      } else {
        put("built", ...data.built.map(builtCard));
      }
      const rows = data.available.map(availRow);
      put("available", el("div.card", el("table.grid.avail",
        el("thead", el("tr", ["Dataset", "Version", "Size", "Access", "Get it"].map((h) => el("th", h)))),
        el("tbody", rows))));
    } catch (e) {
      put("built", ML.errorBox(e.message));
    }
  }
  load();
})();
