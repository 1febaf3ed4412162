/* Patient explorer: find by subject_id / hadm_id / stay_id; demographics; stays timeline; item charts;
   diagnoses, procedures, medications, microbiology, notes. */
"use strict";
(() => {
  const { api, ds, el, num, put, grid, qs, slug } = ML;
  const $ = (id) => document.getElementById(id);
  let current = null;
  /** This dataset's own names of the three ids (the form's labels): subject_id / icustay_id / person_id ... */
  const idNames = () => [...document.querySelectorAll("#find-form label")].slice(0, 3).map((l) => l.firstChild.textContent.trim());
  let items = [];
  let lastItem = "";  // the item last charted

  function kv(k, v) { return el("div.kv", el("span", k), el("b", v === null || v === undefined || v === "" ? "–" : String(v))); }

  function demographics(d) {
    const sex = d.gender || d.sex || d.gender_source_value;
    const age = d.anchor_age ?? d.age_at_first_admission ?? (d.year_of_birth ? `born ${d.year_of_birth}` : null);
    return [
      el("div", el("div.muted.small", "Patient"), el("div.who", `#${d.subject_id}`)),
      kv("Sex", sex), kv("Age (anchor)", age), kv("Race", d.race || d.ethnicity),
      kv("Admissions", d.n_admissions), kv("ICU stays", d.n_icustays),
      kv("First admission", d.first_admission), kv("Last discharge", d.last_discharge),
      d.dod ? kv("Date of death", d.dod) : null,
      d.anchor_year_group ? kv("Year group", d.anchor_year_group) : null,
    ];
  }

  async function timeline(stays) {
    const rows = stays.rows.map((r) => Object.fromEntries(stays.columns.map((c, i) => [c, r[i]])));
    if (!rows.length) { ML.emptyChart("timeline", "No admissions recorded for this patient."); return; }
    const kinds = ["edstay", "admission", "transfer", "icustay"];
    const names = { edstay: "ED stay", admission: "Hospital admission", transfer: "Transfer / ward", icustay: "ICU stay" };
    const colors = { edstay: "#7c3aed", admission: "#0f766e", transfer: "#94a3b8", icustay: "#ea580c" };
    const t = (x) => new Date(x.replace(" ", "T")).getTime();
    const timed = rows.filter((r) => r.start);
    // a stay of hours on a chart of years would be thinner than a pixel: drawn at least 0.4% of the range
    // wide (and an hour); the hover gives its real times
    const range = timed.length ? Math.max(...timed.map((r) => t(r.end || r.start))) - Math.min(...timed.map((r) => t(r.start))) : 0;
    const least = Math.max(3600e3, range * 0.004);
    const traces = kinds.filter((k) => rows.some((r) => r.kind === k)).map((k) => {
      const rs = rows.filter((r) => r.kind === k && r.start);
      const ms = (r) => Math.max(t(r.end || r.start) - t(r.start), least);
      return {
        type: "bar", orientation: "h", name: names[k], y: rs.map(() => names[k]), base: rs.map((r) => r.start),
        x: rs.map(ms), marker: { color: colors[k], line: { color: "#fff", width: 1 } },
        text: rs.map((r) => r.label || ""), textposition: "none",
        customdata: rs.map((r) => [r.id, r.label || "", r.start, r.end || "?"]),
        hovertemplate: "%{customdata[1]}<br>id %{customdata[0]}<br>%{customdata[2]} → %{customdata[3]}<extra>" + names[k] + "</extra>",
      };
    });
    await ML.plot("timeline", traces, {
      barmode: "overlay", showlegend: false, margin: { l: 130, r: 20, t: 10, b: 40 },
      xaxis: { type: "date" }, yaxis: { categoryorder: "array", categoryarray: ["ICU stay", "Transfer / ward", "Hospital admission", "ED stay"].filter((n) => traces.some((t) => t.name === n)), automargin: true },
    });
  }

  /** How well an item matches the filter text: 0 exact label or itemid, 1 label starts with it, 2 a word of
      the label starts with it, 3 anywhere in the label, 4 in the itemid or source only; null: no match. */
  function rank(it, f) {
    const label = String(it.label ?? "").toLowerCase();
    const id = String(it.itemid ?? "");
    if (label === f || id === f) return 0;
    if (label.startsWith(f)) return 1;
    if ((" " + label.replace(/[^a-z0-9]+/g, " ")).includes(" " + f.replace(/[^a-z0-9]+/g, " ").trim())) return 2;
    if (label.includes(f)) return 3;
    if (`${id} ${it.source}`.toLowerCase().includes(f)) return 4;
    return null;
  }

  /** Fill the item menu. Without a filter the current choice stays; with one, the best match (exact, then
      prefix: "lactate" -> Lactate before Lactate Dehydrogenase) is chosen. Returns the chosen item ("" if none). */
  function itemOptions(filter) {
    const f = (filter || "").trim().toLowerCase();
    const sel = $("item-select");
    const keep = sel.value || lastItem;  // after "no item matches", clearing the filter brings the last item back
    const shown = !f ? items : items.map((it) => [rank(it, f), it]).filter(([r]) => r !== null)
      .sort((a, b) => a[0] - b[0]).map(([, it]) => it);  // stable: most values first within a rank
    if (!shown.length) {
      sel.replaceChildren(el("option", { value: "" }, `no item matches “${filter.trim()}”`));
      sel.disabled = true;
      return "";
    }
    sel.disabled = false;
    const groups = new Map();  // sources in the order of their best match
    for (const it of shown) {
      if (!groups.has(it.source)) groups.set(it.source, []);
      groups.get(it.source).push(it);
    }
    sel.replaceChildren(...[...groups].map(([src, its]) => el("optgroup", { label: src },
      its.map((it) => el("option", { value: it.itemid ?? it.label }, `${it.label || it.itemid} (${num(it.numeric)}${it.unit ? " · " + it.unit : ""})`)))));
    if (!f && keep && [...sel.options].some((o) => o.value === keep)) sel.value = keep;
    else sel.selectedIndex = 0;
    return sel.value;
  }

  /* Lab and vital series are drawn with uPlot (50 kB, canvas): it is on screen long before plotly.js (1 MB)
     has been parsed, and stays smooth with the tens of thousands of points a long ICU stay charts. */
  const pad = (n) => String(n).padStart(2, "0");
  const secs = (t) => new Date(t.replace(" ", "T")).getTime() / 1000;  // MIMIC times carry no zone: local
  function fmtTime(ts) {
    if (ts === null || ts === undefined) return "–";
    const d = new Date(ts * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }
  const fmtValue = (v, unit) => (v == null ? "–" : `${+v.toFixed(4)}${unit ? " " + unit : ""}`);

  const CHART_HEIGHT = 360;  // canvas and axes; the legend (values under the cursor) goes below
  /** The item chart's uPlot instance lives on its box (`_chart`, which the browser tests read too). */
  function clearChart(box) {
    if (box._chart) box._chart.destroy();
    box._chart = null;
  }
  function emptyItemChart(msg) {
    const box = $("item-chart");
    clearChart(box);
    ML.emptyChart(box, msg);
  }
  /** One x axis for all sources: every point kept, in time order. Where another source has the point a
      series holds `undefined` (uPlot draws across it); a gap of more than GAP_DAYS in a series gets a `null`
      row (uPlot breaks the line there), so separate stays are not joined by a line through weeks of nothing. */
  const GAP_DAYS = 7;
  function aligned(bySource) {
    const names = Object.keys(bySource);
    const pts = names.flatMap((src, k) => bySource[src].map((r) => [secs(r.time), k, r.value]));
    pts.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    const xs = [];
    const ys = names.map(() => []);
    const last = names.map(() => null);
    const row = (x, k, v) => {
      xs.push(x);
      ys.forEach((col, j) => col.push(j === k ? v : undefined));
    };
    for (const [x, k, v] of pts) {
      if (last[k] !== null && x - last[k] > GAP_DAYS * 86400) row((x + last[k]) / 2, k, null);
      row(x, k, v);
      last[k] = x;
    }
    return [xs, ...ys];
  }
  function drawItem(box, s, bySource) {
    clearChart(box);
    box.replaceChildren();
    const names = Object.keys(bySource);
    const data = aligned(bySource);
    const unit = s.unit || "";
    const many = data[0].length > 300;
    const axis = { stroke: "#66727f", grid: { stroke: "#eef1f4", width: 1 }, ticks: { stroke: "#e3e7ec", width: 1 }, font: "12px system-ui, sans-serif" };
    const opts = {
      width: box.clientWidth || 800, height: CHART_HEIGHT,
      scales: { x: { time: true } },
      series: [{ label: "time", value: (u, ts) => {
        const i = (u.cursor.idxs || []).find((j, k) => k > 0 && j !== null && j !== undefined);
        return fmtTime(i === undefined ? ts : u.data[0][i]);
      } },
        ...names.map((src, k) => ({
          label: names.length > 1 ? `${s.label} · ${src}` : s.label, stroke: ML.colors[k % ML.colors.length], width: 1.6,
          spanGaps: false, points: { show: !many, size: 6, fill: "#fff" }, value: (u, v) => fmtValue(v, unit),
        }))],
      axes: [{ ...axis }, { ...axis, label: `${s.label}${unit ? " (" + unit + ")" : ""}`, labelFont: "12px system-ui, sans-serif", size: 60 }],
      // hovering a gap (or another source's point) shows the nearest real value, with that value's own time
      cursor: { drag: { x: true, y: false }, hover: { skip: [null, undefined] } },
      hooks: { draw: [() => {
        if (box.dataset.drawn !== "1") {
          box.dataset.drawn = "1";
          box.dataset.drawnAt = String(Math.round(performance.now()));  // ms since navigation (benchmarks)
        }
      }] },
    };
    box.dataset.drawn = "";
    box._chart = new uPlot(opts, data, box);
  }
  new ResizeObserver(() => {
    const box = $("item-chart");
    if (box._chart && box.clientWidth) box._chart.setSize({ width: box.clientWidth, height: box._chart.height });
  }).observe($("item-chart"));

  let chartSeq = 0;  // only the latest request draws: the chart always shows what the menu says
  async function chart(item, preloaded) {
    if (!current || item === "" || item === undefined) return;
    const box = $("item-chart");
    const seq = ++chartSeq;
    lastItem = String(item);
    box.dataset.want = String(item);
    try {
      const s = preloaded || await api(ds(`/patients/${current}/series`) + qs({ item }));
      if (seq !== chartSeq) return;
      const cols = s.series.columns;
      const rows = s.series.rows.map((r) => Object.fromEntries(cols.map((c, i) => [c, r[i]])));
      const numeric = rows.filter((r) => r.value !== null && r.time);
      box.dataset.item = String(item);
      if (!numeric.length) {
        const text = rows.filter((r) => r.value_text).slice(0, 20).map((r) => `${r.time}: ${r.value_text}`).join(" · ");
        emptyItemChart(`${s.label}: no numeric values${text ? " — " + text : ""}`);
        return;
      }
      const bySource = {};
      for (const r of numeric) (bySource[r.source] = bySource[r.source] || []).push(r);
      drawItem(box, s, bySource);
      box.dataset.label = s.label;
    } catch (e) { if (seq === chartSeq) emptyItemChart(e.message); }
  }

  function table(id, data, empty) {
    put(id, grid(data, { showTypes: false, empty }));
    if (data.total > data.rows.length) $(id).append(el("p.muted.small", `first ${num(data.rows.length)} of ${num(data.total)} rows`));
  }

  function notes(n) {
    if (!n.available) { put("notes", el("p.muted", n.hint)); return; }
    if (!n.notes.length) { put("notes", el("p.muted", "No notes for this patient.")); return; }
    put("notes", ...n.notes.map((x) => el("details.note", el("summary", el("b", x.title || "note"), " ", el("span.muted", `${x.time || ""} ${x.subtitle || ""}`)), el("pre", x.text || ""))));
  }

  async function open(sid, push = true) {
    current = sid;
    $("patient-state").replaceChildren(el("p.muted.loading", `Loading patient ${sid}…`));
    if (push) history.replaceState(null, "", location.pathname + qs({ subject_id: sid }));
    let p;
    try {
      p = await api(ds(`/patients/${sid}`));
    } catch (e) {
      $("patient").hidden = true;
      put("patient-state", el("div.state.error", e.message));
      return;
    }
    $("patient-state").replaceChildren();
    $("patient").hidden = false;
    put("demographics", ...demographics(p.demographics));
    if (!p.has_icu) $("demographics").append(el("span.badge.not_loaded", { id: "no-icu" }, "no ICU stay"));
    items = p.items.rows.map((r) => Object.fromEntries(p.items.columns.map((c, i) => [c, r[i]]))).filter((it) => it.numeric > 0 || it.count > 0);
    items.sort((a, b) => (b.numeric - a.numeric) || String(a.label).localeCompare(String(b.label)));
    $("item-filter").value = "";
    itemOptions("");
    const absent = p.items_not_loaded || [];
    put("items-note", absent.length ? `Not in this build (source file not downloaded): ${absent.join(", ")}` : "");
    const first = p.first_item !== null ? items.find((it) => String(it.itemid ?? it.label) === p.first_item) : items[0];
    const record = api(ds(`/patients/${sid}/record`));  // in flight while the charts draw
    record.catch(() => {});
    if (first) { $("item-select").value = String(first.itemid ?? first.label); await chart($("item-select").value, p.first_series); }
    else emptyItemChart("No lab or charted values for this patient" + (p.has_icu ? "." : " (no ICU stay, and no labs)."));
    try { await timeline(p.stays); } catch (e) { ML.emptyChart("timeline", e.message); }
    try {
      const r = await record;
      table("diagnoses", r.diagnoses, "No diagnoses recorded.");
      table("procedures", r.procedures, "No procedures recorded.");
      table("medications", r.prescriptions, "No prescriptions recorded.");
      table("icustays", r.icustays, "This patient has no ICU stay.");
      table("microbiology", r.microbiology, "No microbiology results.");
      // ED stays come from a linked MIMIC-IV-ED build: no columns means none is linked, so no card
      $("ed-card").hidden = !(r.ed_stays && r.ed_stays.columns.length);
      if (!$("ed-card").hidden) table("ed_stays", r.ed_stays, "No emergency department stays.");
      notes(r.notes);
    } catch (e) { ML.flash(e.message); }
  }

  $("find-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const q = { subject_id: $("find-subject").value.trim(), hadm_id: $("find-hadm").value.trim(), stay_id: $("find-stay").value.trim() };
    const given = Object.entries(q).filter(([, v]) => v);
    if (given.length !== 1) { const [a, b, c] = idNames(); put("patient-state", el("div.state.warn", `Enter exactly one of ${a}, ${b} or ${c}.`)); return; }
    try {
      const r = await api(ds("/patients/find") + qs(Object.fromEntries(given)));
      $("find-subject").value = r.subject_id; $("find-hadm").value = ""; $("find-stay").value = "";
      await open(r.subject_id);
    } catch (err) { $("patient").hidden = true; put("patient-state", el("div.state.error", err.message)); }
  });
  $("item-select").addEventListener("change", () => chart($("item-select").value));
  $("item-filter").addEventListener("input", ML.debounce(() => {
    const text = $("item-filter").value;
    const item = itemOptions(text);
    if (!item) {
      chartSeq++;  // a request still in flight must not draw over this
      $("item-chart").dataset.item = "";
      $("item-chart").dataset.want = "";
      emptyItemChart(`No item of this patient matches “${text.trim()}”. Clear the filter to see them all.`);
    } else if (item !== $("item-chart").dataset.want) chart(item);
  }, 150));
  $("patient-pick").addEventListener("change", () => { const v = $("patient-pick").value; if (v) { $("find-subject").value = v; open(v); } });

  async function load() {
    const want = new URLSearchParams(location.search);
    const sid = want.get("subject_id");
    const listing = () => api(ds("/patients") + qs({ limit: 100 })).then((r) => {
      $("patient-pick").append(...r.patients.map((p) => el("option", { value: p.subject_id }, `${p.subject_id} · ${p.admissions} adm · ${p.icu_stays} ICU`)));
    }).catch(() => { /* the picker is a convenience */ });
    if (!sid) listing();
    if (sid) { $("find-subject").value = sid; await open(sid, false); }  // a string: OMOP ids exceed 2^53
    else if (want.get("hadm_id") || want.get("stay_id")) {
      $("find-hadm").value = want.get("hadm_id") || ""; $("find-stay").value = want.get("stay_id") || "";
      $("find-form").requestSubmit();
    } else {
      const [a, b, c] = idNames();
      put("patient-state", el("div.state.info", `Enter a ${a}, ${b} or ${c} above, or pick a patient from the list.`));
    }
    if (sid) listing();  // after the first chart: the picker is a convenience
  }
  load();
})();
