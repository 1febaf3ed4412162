/* Home: built datasets first, then what else PhysioNet publishes (open, then credentialed) with the commands
   to get it, then what can be generated locally (synthetic: never offered as a PhysioNet download). */
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
        ["cohort", "Cohorts"], ["sql", "SQL"]].map(([p, label]) => {
          const why = (b.unsupported || {})[p];  // a page that cannot work on this dataset: marked, and says why
          return el(`a.button.secondary${why ? ".na" : ""}`, { href: `${base}/${p}`, title: why || null }, label);
        })));
  }

  /** One row per dataset: what it is, its size and the commands; credentialed ones link their own data use
      agreement (the steps every credentialed dataset shares are listed once, above the table). */
  function availRow(d) {
    const dua = (d.steps || []).find((s) => s.link.includes("/sign-dua/"));
    const access = el("td", el(`span.badge.${d.access}`, d.access),
      d.access === "open" ? el("div.small.muted", "no account needed")
        : el("div.small", dua ? el("a", { href: dua.link, rel: "noreferrer", target: "_blank" }, "sign its data use agreement") : null));
    const cells = [
      el("td", el("a", { href: d.page, rel: "noreferrer", target: "_blank" }, el("b", d.slug)), el("div.small.muted", d.title),
        d.demo_of ? el("div.small.muted", `demo of ${d.demo_of}`) : null),
      el("td", d.default_version, d.versions.length > 1 ? el("div.small.muted", `also ${d.versions.filter((v) => v !== d.default_version).join(", ")}`) : null),
      el("td.num", bytes(d.size_bytes)),
      access,
    ];
    const get = el("td.wrap", cmd(d.commands));
    if (d.access !== "open") {
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
      get.firstChild.append(check);
      get.append(out);
    }
    return el("tr", { "data-slug": d.slug }, ...cells, get);
  }

  function availTable(rows, cls) {
    return el(`table.grid.avail.${cls}`,
      el("thead", el("tr", ["Dataset", "Version", "Size", "Access", "Get it"].map((h) => el("th", h)))),
      el("tbody", rows.map(availRow)));
  }

  /** The credentialing steps every credentialed dataset shares, listed once. */
  function sharedSteps(creds) {
    const steps = (creds[0] && creds[0].steps || []).filter((s) => !s.link.includes("/sign-dua/"));
    if (!steps.length) return null;
    return el("details.steps-once",
      el("summary", "How to get credentialed access (once per person, for all of them)"),
      el("ol.steps", steps.map((s) => el("li", s.text.split(" (")[0].replace(/;.*$/, ""), " ",
        el("a", { href: s.link, rel: "noreferrer", target: "_blank" }, "link"))),
        el("li", "Sign the data use agreement of each dataset you need (link in its row)."),
        el("li", "Then, in a terminal: ", el("code", "mimiclab login"))));
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
      const open = data.available.filter((d) => d.access === "open");
      const creds = data.available.filter((d) => d.access !== "open");
      put("available",
        open.length ? el("div.card", el("h3", "Open: download without an account"), availTable(open, "open")) : null,
        creds.length ? el("div.card", el("h3", "Credentialed: PhysioNet account, training and a data use agreement"),
          sharedSteps(creds), availTable(creds, "credentialed")) : null);
      document.getElementById("available-n").textContent = data.available.length ? `(${data.available.length} not on this machine)` : "";
      const local = data.local || [];
      document.getElementById("local").hidden = !local.length;
      put("local-list", ...local.map((d) => el("div.row", { "data-slug": d.slug },
        el("div", el("b", d.slug), " ", el("span.badge.synthetic", "synthetic"), el("div.small.muted", `${d.title}: generated on this machine, not real patients; nothing to download.`)),
        cmd(d.commands))));
    } catch (e) {
      put("built", ML.errorBox(e.message));
    }
  }
  load();
})();
