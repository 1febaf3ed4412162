"""The workbench in a real browser (headless Chromium via Playwright) on the demo build.

Counts shown on the pages are compared with plain DuckDB over the raw csv.gz, and every request the
browser makes is recorded: none may leave 127.0.0.1. Screenshots go to docs/screenshots/ for review.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import pytest

pytestmark = pytest.mark.browser

SLUG = "mimic-iv-demo"
REPO = Path(__file__).resolve().parents[1]
# docs/screenshots/ (README) is refreshed with MIMICLAB_SCREENSHOTS=1; otherwise shots go to a temp folder so a
# test run leaves the work tree clean.
SHOTS = REPO / "docs" / "screenshots" if os.environ.get("MIMICLAB_SCREENSHOTS") else \
    Path(tempfile.gettempdir()) / "mimiclab-screenshots"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@contextlib.contextmanager
def serving(home: Path, builds):
    """Builds made into `home` (a list of (slug, source)), the workbench served by uvicorn in a thread."""
    import uvicorn

    from mimiclab.load import build
    from mimiclab.web import create_app

    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed") if os.environ.get("CI") != "true" else pytest.fail("no chromium")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIMICLAB_HOME", str(home))
        for slug, src in builds:
            build(slug, source=src)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        srv = uvicorn.Server(uvicorn.Config(create_app(dataset=SLUG, token=None), host="127.0.0.1", port=port, log_level="warning"))
        t = threading.Thread(target=srv.run, daemon=True)
        t.start()
        for _ in range(200):
            if srv.started:
                break
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            srv.should_exit = True
            t.join(10)


@pytest.fixture(scope="module")
def server(demo_dir, tmp_path_factory):
    """Demo built into a private home, workbench served on a free port."""
    with serving(tmp_path_factory.mktemp("webhome"), [(SLUG, demo_dir)]) as url:
        yield url


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    requests: list[str] = []
    problems: list[str] = []
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1400, "height": 900}, accept_downloads=True)
        ctx.on("request", lambda r: requests.append(r.url))
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        yield page, requests, problems
        ctx.close()


@pytest.fixture(scope="module")
def raw(demo_dir):
    con = duckdb.connect()
    for mod in ("hosp", "icu"):
        for f in (demo_dir / mod).glob("*.csv.gz"):
            con.execute(f"CREATE VIEW {mod}_{f.name.removesuffix('.csv.gz')} AS "
                        f"SELECT * FROM read_csv_auto('{f}', header=true, sample_size=-1)")
    return con


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def wait_js(page, expr: str, timeout: float = 15.0) -> None:
    """Poll a JS expression with page.evaluate: wait_for_function would eval() in the page, which the CSP
    (rightly) forbids."""
    end = time.monotonic() + timeout
    while not page.evaluate(f"() => !!({expr})"):
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for: {expr}")
        time.sleep(0.05)


def go(page, server, path):
    page.goto(server + path)
    page.wait_for_load_state("networkidle")


def test_home_lists_demo_and_available(browser, server):
    page, _, problems = browser
    go(page, server, "/")
    card = page.locator(f'article.ds[data-slug="{SLUG}"]')
    card.wait_for()
    assert "mimiciv_icu.chartevents" in card.inner_text()  # the not-loaded table is flagged
    avail = page.inner_text("#available")
    assert avail.count("mimiclab download") >= 5
    # built datasets lead; synthetic data is never offered as a PhysioNet download
    assert card.bounding_box()["y"] < page.locator("#available").bounding_box()["y"]
    assert "mimic-iv-synthetic" not in avail and "mimic-iv-synthetic" in page.inner_text("#local")
    # the credentialing steps every credentialed dataset shares are written once, not once per row
    text = page.eval_on_selector("#available", "e => e.textContent")
    assert text.count("CITI") == 1 and page.locator("#available tr[data-slug]").count() >= 10
    assert page.evaluate("document.getElementById('available').getBoundingClientRect().height") < 1500
    shot(page, "home")
    assert not problems, problems


def test_dictionary_and_lookup(browser, server, raw):
    page, _, problems = browser
    go(page, server, f"/d/{SLUG}/dictionary")
    page.locator('section.dtable[data-table="mimiciv_hosp.admissions"]').wait_for()
    assert page.locator("section.dtable").count() == 31
    page.select_option("#lookup-table", "mimiciv_hosp.d_labitems")
    page.fill("#lookup-q", "lactate")
    wait_js(page, "document.querySelector('#lookup-results').innerText.includes('Lactate')")
    want = raw.execute("SELECT count(*) FROM hosp_d_labitems WHERE label ILIKE '%lactate%' OR fluid ILIKE '%lactate%' "
                       "OR category ILIKE '%lactate%'").fetchone()[0]
    wait_js(page, f"document.querySelectorAll('#lookup-results tbody tr').length === {want}")
    page.fill("#lookup-q", "")
    page.fill("#dict-filter", "admittime")
    page.wait_for_timeout(300)
    shot(page, "dictionary")
    page.fill("#dict-filter", "")
    assert not problems, problems


def test_table_browser_filter_and_sort(browser, server, raw):
    page, _, problems = browser
    go(page, server, f"/d/{SLUG}/tables/mimiciv_hosp.admissions")
    page.locator("#table-grid table").wait_for()
    page.select_option("#filter-col", "admission_type")
    page.select_option("#filter-op", "eq")
    page.fill("#filter-value", "URGENT")
    page.click("#filter-add")
    n = raw.execute("SELECT count(*) FROM hosp_admissions WHERE admission_type = 'URGENT'").fetchone()[0]
    wait_js(page, f"document.querySelector('#pager').innerText.includes('of {n} rows')")
    assert page.locator("#table-grid tbody tr").count() == min(n, 50)
    page.locator("#table-grid th", has_text="admittime").first.click()
    wait_js(page, "document.querySelector('#table-grid th.sortable').parentElement.innerText.includes('▲')")
    assert "admission_type%3Aeq%3AURGENT" in page.get_attribute("#export-csv", "href")
    shot(page, "tables")
    assert not problems, problems


def test_patient_explorer_find_and_switch_chart_item(browser, server, raw):
    page, _, problems = browser
    hadm, sid = raw.execute("SELECT hadm_id, subject_id FROM hosp_admissions WHERE subject_id = 10000032 LIMIT 1").fetchone()
    go(page, server, f"/d/{SLUG}/patients")
    page.fill("#find-hadm", str(hadm))
    page.click("#find-form button[type=submit]")
    page.wait_for_selector('#item-chart[data-drawn="1"]')
    assert page.input_value("#find-subject") == str(sid)
    assert f"#{sid}" in page.inner_text("#demographics")
    assert "mimiciv_icu.chartevents" in page.inner_text("#items-note")  # why no vitals: not in this copy
    page.wait_for_selector('#timeline[data-drawn="1"]')
    wait_js(page, "document.querySelectorAll('#diagnoses tbody tr').length > 0")
    n_dx = raw.execute("SELECT count(*) FROM hosp_diagnoses_icd WHERE subject_id = ?", [sid]).fetchone()[0]
    assert page.locator("#diagnoses tbody tr").count() == n_dx
    # switch the chart to creatinine; the plotted points must be the patient's creatinine values
    page.select_option("#item-select", "50912")
    page.wait_for_selector('#item-chart[data-item="50912"][data-drawn="1"]')
    ys = page.evaluate("document.getElementById('item-chart')._chart.data.slice(1).flat().filter(v => v != null)")
    rows = raw.execute("SELECT strftime(charttime, '%Y-%m-%d %H:%M'), valuenum FROM hosp_labevents WHERE subject_id = ? "
                       "AND itemid = 50912 AND valuenum IS NOT NULL ORDER BY charttime", [sid]).fetchall()
    want = [r[1] for r in rows]
    assert sorted(ys) == sorted(want) and len(want) > 3
    # the line breaks (a null row) wherever more than 7 days pass between two values, and nowhere else
    breaks = page.evaluate("document.getElementById('item-chart')._chart.data[1].filter(v => v === null).length")
    gaps = raw.execute("SELECT count(*) FROM (SELECT charttime - lag(charttime) OVER (ORDER BY charttime) AS d "
                       "FROM hosp_labevents WHERE subject_id = ? AND itemid = 50912 AND valuenum IS NOT NULL) "
                       "WHERE d > INTERVAL 7 DAY", [sid]).fetchone()[0]
    assert breaks == gaps and gaps > 0
    # drawn, not just data: hover the highest point; the chart's legend shows that value and its time
    top = max(range(len(rows)), key=lambda i: rows[i][1])
    page.locator("#item-chart").scroll_into_view_if_needed()
    x, y = page.evaluate("""(v) => { const u = document.getElementById('item-chart')._chart;
        const i = u.data[1].indexOf(v); const r = u.over.getBoundingClientRect();
        const x = r.left + u.valToPos(u.data[0][i], 'x');  // an edge point sits on the border: step inside
        return [Math.min(Math.max(x, r.left + 2), r.right - 2), r.top + u.valToPos(v, 'y')]; }""", rows[top][1])
    page.mouse.move(x - 40, y)
    page.mouse.move(x, y, steps=4)
    wait_js(page, "!document.querySelector('#item-chart .u-legend').innerText.includes('time–')")
    legend = page.inner_text("#item-chart .u-legend")
    assert rows[top][0] in legend and f"{rows[top][1]:g} mg/dL" in legend, legend
    # in a gap the legend shows the nearest real value and its own time, never an empty "–"
    gx, gy = page.evaluate("""() => { const u = document.getElementById('item-chart')._chart;
        const i = u.data[1].indexOf(null); const r = u.over.getBoundingClientRect();
        return [r.left + u.valToPos(u.data[0][i], 'x'), r.top + r.height / 2]; }""")
    page.mouse.move(gx, gy, steps=4)
    wait_js(page, f"document.querySelector('#item-chart .u-legend').innerText !== {legend!r}")
    legend = page.inner_text("#item-chart .u-legend")
    assert "–" not in legend and any(t in legend and f"{v:g} mg/dL" in legend for t, v in rows), legend
    page.set_viewport_size({"width": 1400, "height": 1250})
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "patients")
    page.set_viewport_size({"width": 1400, "height": 900})
    assert not problems, problems


def chart_state(page) -> dict:
    """What the item menu says and what the chart draws."""
    return page.evaluate("""() => { const s = document.getElementById('item-select'), box = document.getElementById('item-chart');
        const o = s.options[s.selectedIndex]; const u = box._chart;
        return {menu: s.value, menuText: o ? o.text : null, options: [...s.options].map((x) => x.text),
                item: box.dataset.item, drawn: box.dataset.drawn, label: u ? u.series[1].label : null,
                ys: u ? u.data.slice(1).flat().filter((v) => v != null) : []}; }""")


def test_item_filter_charts_what_the_menu_says(browser, server, raw):
    """Typing in the item filter picks the best match (exact, then prefix) and the chart follows the menu;
    the chart opens on a common clinical item (creatinine: this copy has no chartevents, so no heart rate)."""
    page, _, problems = browser
    sid = raw.execute("SELECT subject_id FROM hosp_labevents GROUP BY 1 HAVING count(*) FILTER (WHERE itemid = 50813) >= 3 "
                      "AND count(*) FILTER (WHERE itemid = 50954) > count(*) FILTER (WHERE itemid = 50813) "
                      "AND count(*) FILTER (WHERE itemid = 50912) > 0 ORDER BY 1 LIMIT 1").fetchone()[0]
    go(page, server, f"/d/{SLUG}/patients?subject_id={sid}")
    page.wait_for_selector('#item-chart[data-drawn="1"]')
    st = chart_state(page)
    assert st["menu"] == st["item"] == "50912" and st["label"] == "Creatinine", st  # not the most frequent item

    def values(itemid):
        return sorted(r[0] for r in raw.execute("SELECT valuenum FROM hosp_labevents WHERE subject_id = ? AND itemid = ? "
                                                "AND valuenum IS NOT NULL", [sid, itemid]).fetchall())

    # this patient has more Lactate Dehydrogenase than Lactate values: the exact match still comes first
    page.fill("#item-filter", "lactate")
    wait_js(page, "document.getElementById('item-chart').dataset.item === '50813' && "
                  "document.getElementById('item-chart').dataset.drawn === '1'")
    st = chart_state(page)
    assert st["menu"] == "50813" and st["options"][0].startswith("Lactate (") and st["label"] == "Lactate", st
    assert any(o.startswith("Lactate Dehydrogenase") for o in st["options"][1:]), st
    assert sorted(st["ys"]) == values(50813)
    # pick another item, then type: the chart follows the menu, never keeps the previous item
    page.fill("#item-filter", "")
    page.select_option("#item-select", "50954")
    page.wait_for_selector('#item-chart[data-item="50954"][data-drawn="1"]')
    page.fill("#item-filter", "creatinine")
    wait_js(page, "document.getElementById('item-select').value !== '50954'")
    wait_js(page, "document.getElementById('item-chart').dataset.item === document.getElementById('item-select').value "
                  "&& document.getElementById('item-chart').dataset.drawn === '1'")
    st = chart_state(page)
    assert st["menu"] == "50912" and st["menuText"].startswith("Creatinine (") and st["label"] == "Creatinine", st
    assert sorted(st["ys"]) == values(50912)
    # nothing matches: the menu says so and the chart shows no stale item
    page.fill("#item-filter", "zzzz")
    page.wait_for_selector('#item-chart[data-drawn="empty"]')
    st = chart_state(page)
    assert st["menu"] == "" and "no item matches" in st["menuText"] and "zzzz" in page.inner_text("#item-chart"), st
    page.fill("#item-filter", "")  # the full list again, on the item charted before the filter matched nothing
    page.wait_for_selector('#item-chart[data-item="50912"][data-drawn="1"]')
    assert chart_state(page)["menu"] == "50912"
    page.wait_for_selector("#microbiology table.grid")  # the record has arrived: no ED build, so no ED card
    assert page.is_hidden("#ed-card")
    assert not problems, problems


def test_patient_notes_when_the_note_module_is_built(browser, demo_dir, tmp_path):
    """Notes of a mimic-iv-note build (made-up texts: the real ones are credentialed) appear in the patient
    explorer in time order, their line breaks and quotes intact."""
    from conftest import write_notes

    page, _, problems = browser
    notes = write_notes(tmp_path / "note-src")
    with serving(tmp_path / "home", [(SLUG, demo_dir), ("mimic-iv-note", tmp_path / "note-src")]) as url:
        go(page, url, f"/d/{SLUG}/patients?subject_id=10000032")
        page.wait_for_selector("#notes details.note")
        shown = page.eval_on_selector_all(
            "#notes details.note", "ds => ds.map(d => [d.querySelector('summary').innerText, d.querySelector('pre').textContent])")
    want = sorted((n for n in notes if n["subject_id"] == 10000032), key=lambda n: n["time"])
    assert [t for _, t in shown] == [n["text"] for n in want]
    assert all(n["title"] in s and n["subtitle"] in s for (s, _), n in zip(shown, want, strict=True))
    assert not problems, problems


def test_patient_ed_stays_when_the_ed_module_is_linked(browser, demo_dir, data_root, tmp_path):
    """With a MIMIC-IV-ED build beside the hospital data (one workspace), the patient explorer shows the
    patient's ED stays with triage acuity and chief complaint, and the stay chart an "ED stay" row; the
    rows are those of the raw edstays file joined to triage."""
    page, _, problems = browser
    ed = data_root.joinpath(*ED) / "ed"
    raw = duckdb.connect()
    sid, n = raw.execute(f"SELECT subject_id, count(*) FROM read_csv('{ed}/edstays.csv.gz') GROUP BY 1 "
                         "ORDER BY 2 DESC, 1 LIMIT 1").fetchone()
    want = raw.execute(f"SELECT e.stay_id, t.chiefcomplaint FROM read_csv('{ed}/edstays.csv.gz') e LEFT JOIN "
                       f"read_csv('{ed}/triage.csv.gz') t USING (stay_id) WHERE e.subject_id = ? "
                       "ORDER BY e.intime, e.stay_id", [sid]).fetchall()
    assert n >= 2
    with serving(tmp_path / "home", [(SLUG, demo_dir), (ED[0], data_root.joinpath(*ED))]) as url:
        go(page, url, f"/d/{SLUG}/patients?subject_id={sid}")
        page.wait_for_selector("#ed-card:not([hidden]) #ed_stays table.grid")
        cols = page.eval_on_selector_all("#ed_stays thead th", "ts => ts.map(t => t.innerText.trim())")
        rows = page.eval_on_selector_all("#ed_stays tbody tr", "trs => trs.map(tr => [...tr.children].map(td => td.innerText))")
        shot(page, "patient-ed-stays")
        page.locator("#ed-card").scroll_into_view_if_needed()
        page.locator("#ed-card").screenshot(path=str(SHOTS / "patient-ed-card.png"))
        traces = page.evaluate("() => document.getElementById('timeline').data.map(t => [t.name, t.x.length])")
    assert cols[:2] == ["stay_id", "hadm_id"] and "acuity" in cols and "chiefcomplaint" in cols
    got = [(int(r[0].replace(",", "")), r[cols.index("chiefcomplaint")] or None) for r in rows]
    assert got == [(s, c) for s, c in want]
    assert ["ED stay", n] in traces, traces
    assert not problems, problems


def test_find_form_speaks_the_datasets_id_names(browser, data_root, tmp_path):
    """MIMIC-III calls the ICU stay icustay_id: the form says so, and finds a patient by it."""
    page, _, problems = browser
    src = data_root / "mimiciii-demo" / "1.4"
    sid, icustay = duckdb.execute(f"SELECT subject_id, icustay_id FROM read_csv_auto('{src}/ICUSTAYS.csv') "
                                  "ORDER BY icustay_id LIMIT 1").fetchone()
    with serving(tmp_path / "home", [("mimiciii-demo", src)]) as url:
        go(page, url, "/d/mimiciii-demo/patients")
        labels = page.eval_on_selector_all("#find-form label", "ls => ls.map(l => l.firstChild.textContent.trim())")
        assert labels == ["subject_id", "hadm_id", "icustay_id"]
        assert "icustay_id" in page.inner_text("#patient-state")
        page.fill("#find-stay", str(icustay))
        page.click("#find-form button[type=submit]")
        page.wait_for_selector("#demographics .who")
        assert page.inner_text("#demographics .who") == f"#{sid}"
    assert not problems, problems


ED = ("mimic-iv-ed-demo", "2.2")
OMOP = ("mimic-iv-demo-omop", "0.9")


def test_dataset_without_patients_keeps_the_chosen_dataset(browser, demo_dir, data_root, tmp_path):
    """ED has no patient mapping: its Patients page stays on ED (menu, links, selector), says why, and links
    to the builds where patients can be explored; choosing one opens the same page there."""
    page, _, problems = browser
    ed = ED[0]
    with serving(tmp_path / "home", [(SLUG, demo_dir), (ed, data_root.joinpath(*ED))]) as url:
        go(page, url, f"/d/{ed}/patients")
        assert page.input_value("#dataset-select") == ed
        hrefs = page.eval_on_selector_all(".mainnav a[data-nav]", "as => as.map((a) => a.getAttribute('href'))")
        assert len(hrefs) == 6 and all(h.startswith(f"/d/{ed}/") for h in hrefs), hrefs
        nav = page.locator('.mainnav a[data-nav="patients"]')
        assert "na" in nav.get_attribute("class").split() and "no patient mapping" in nav.get_attribute("title")
        assert "no patient mapping for mimic-iv-ed-demo" in page.inner_text("#error-state")
        assert page.locator(f'#elsewhere a[href="/d/{SLUG}/patients"]').count() == 1
        shot(page, "no-patients")
        # the dataset's other pages keep it too, and their menu says where Patients will not work
        go(page, url, f"/d/{ed}/dictionary")
        assert page.input_value("#dataset-select") == ed
        assert "na" in page.get_attribute('.mainnav a[data-nav="patients"]', "class").split()
        assert "na" not in page.get_attribute('.mainnav a[data-nav="dictionary"]', "class").split()
        # choosing another dataset from the explanation opens the same page there
        go(page, url, f"/d/{ed}/patients")
        page.select_option("#dataset-select", SLUG)
        page.wait_for_url(f"**/d/{SLUG}/patients")
        page.wait_for_selector("#find-form")
        assert "na" not in page.get_attribute('.mainnav a[data-nav="patients"]', "class").split()
    assert not [p for p in problems if p.startswith("page error")], problems
    problems.clear()  # the explanation answers 404: the browser logs it as a failed resource


def test_cohort_page_says_up_front_where_cohorts_cannot_run(browser, demo_dir, data_root, tmp_path):
    """On ED every cohort run fails: the page says so before any form, and where it works. OMOP has cohorts."""
    page, _, problems = browser
    with serving(tmp_path / "home", [(SLUG, demo_dir), (ED[0], data_root.joinpath(*ED)),
                                     (OMOP[0], data_root.joinpath(*OMOP))]) as url:
        for slug, family in ((ED[0], "mimiciv_ed"),):
            # the premise: running any spec there fails
            r = page.request.post(f"{url}/api/datasets/{slug}/cohort/run", data={"spec": {"name": "x", "unit": "patient"}})
            assert r.status == 400 and "not supported" in r.json()["error"]
            go(page, url, f"/d/{slug}/cohort")
            note = page.inner_text("#cohort-unsupported")
            assert f"Cohorts cannot be built on {slug} (schema family {family})" in note, note
            assert page.locator("#crit-type, #crit-include").count() == 0  # no form whose every run fails
            assert page.locator(f'#cohort-unsupported a[href="/d/{SLUG}/cohort"]').count() == 1
            assert page.input_value("#dataset-select") == slug
            assert "na" in page.get_attribute('.mainnav a[data-nav="cohort"]', "class").split()
            shot(page, "cohort-unsupported")
        for slug in (SLUG, OMOP[0]):
            go(page, url, f"/d/{slug}/cohort")
            page.wait_for_selector("#crit-type option", state="attached")
            assert page.locator("#cohort-unsupported").count() == 0
        assert "na" not in page.get_attribute('.mainnav a[data-nav="cohort"]', "class").split()
    assert not problems, problems


def test_patient_not_found_state(browser, server):
    page, _, problems = browser
    go(page, server, f"/d/{SLUG}/patients?subject_id=1")
    page.wait_for_selector("#patient-state .state.error")
    assert "Nearest existing" in page.inner_text("#patient-state")
    problems.clear()  # the 400 answer is logged by the browser as a failed resource: expected here


def test_population_chart(browser, server, raw):
    page, _, problems = browser
    go(page, server, f"/d/{SLUG}/population?table=mimiciv_hosp.admissions&column=admission_type&by=insurance")
    page.wait_for_selector('#pop-chart[data-drawn="1"]')
    total = page.evaluate("document.getElementById('pop-chart').data.reduce((a, t) => a + t.y.reduce((x, y) => x + y, 0), 0)")
    assert total == raw.execute("SELECT count(*) FROM hosp_admissions").fetchone()[0]
    go(page, server, f"/d/{SLUG}/population?table=mimiciv_icu.icustays&column=los&bins=25")
    page.wait_for_selector('#pop-chart[data-drawn="1"]')
    shot(page, "population")
    assert not problems, problems


def fresh_cohort_builder(page, server, unit: str) -> None:
    """The builder with no saved spec (it keeps the last one in localStorage), on the given unit."""
    go(page, server, f"/d/{SLUG}/cohort")
    page.evaluate("localStorage.clear()")
    go(page, server, f"/d/{SLUG}/cohort")
    wait_js(page, "document.querySelector('#cohort-n').dataset.n !== undefined")
    page.select_option("#cohort-unit", unit)


def test_cohort_builder_two_criteria_match_raw(browser, server, raw):
    page, _, problems = browser
    fresh_cohort_builder(page, server, unit="admission")
    page.select_option("#crit-type", "age")
    page.fill("#p-min", "65")
    page.click("#crit-include")
    page.select_option("#crit-type", "has_icu_stay")
    page.click("#crit-include")
    wait_js(page, "document.querySelectorAll('#attrition-grid [data-n-after]').length === 3")
    shown = [int(x) for x in page.eval_on_selector_all("#attrition-grid [data-n-after]", "els => els.map(e => e.dataset.nAfter)")]
    age = "p.anchor_age + year(a.admittime) - p.anchor_year"
    want = [
        raw.execute("SELECT count(*) FROM hosp_admissions").fetchone()[0],
        raw.execute(f"SELECT count(*) FROM hosp_admissions a JOIN hosp_patients p USING (subject_id) WHERE {age} >= 65").fetchone()[0],
        raw.execute(f"SELECT count(*) FROM hosp_admissions a JOIN hosp_patients p USING (subject_id) WHERE {age} >= 65 "
                    "AND a.hadm_id IN (SELECT hadm_id FROM icu_icustays)").fetchone()[0],
    ]
    assert shown == want
    assert page.get_attribute("#cohort-n", "data-n") == str(want[-1])
    wait_js(page, "document.querySelector('#table1').innerText.includes('N (admissions)')")
    with page.expect_download() as dl:
        page.click("#spec-save")
    assert dl.value.suggested_filename == "my-cohort.yaml"
    shot(page, "cohort")
    # the subset with "whole patients": every admission of the cohort's patients, not only the cohort's
    page.check("#dl-whole")
    with page.expect_download(timeout=60_000) as dl:
        page.click("#dl-subset")
    import gzip
    import zipfile

    z = zipfile.ZipFile(dl.value.path())
    adm = next(n for n in z.namelist() if n.endswith("hosp/admissions.csv.gz"))
    got = gzip.decompress(z.read(adm)).decode().count("\n") - 1
    whole = raw.execute(f"SELECT count(*) FROM hosp_admissions WHERE subject_id IN (SELECT a.subject_id FROM hosp_admissions a "
                        f"JOIN hosp_patients p USING (subject_id) WHERE {age} >= 65 AND a.hadm_id IN "
                        "(SELECT hadm_id FROM icu_icustays))").fetchone()[0]
    assert got == whole > want[-1]
    assert not problems, problems


def test_cohort_builder_code_picked_from_the_list(browser, server, raw):
    """Point and click: type words, pick the ICD-10 code from the list the data offers, include it."""
    page, _, problems = browser
    fresh_cohort_builder(page, server, unit="admission")
    page.select_option("#crit-type", "diagnosis")
    page.click("#p-icd10")
    page.keyboard.type("hypertens")
    code = raw.execute("SELECT d.icd_code FROM hosp_diagnoses_icd d JOIN hosp_d_icd_diagnoses t USING (icd_code, icd_version) "
                       "WHERE d.icd_version = 10 AND t.long_title ILIKE '%hypertens%' "
                       "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1").fetchone()[0]
    option = page.locator(f'.suggest button[data-value="{code}"]')
    option.wait_for()
    assert "hypertens" in option.inner_text().lower()
    shot(page, "cohort-picker")
    option.click()
    assert page.input_value("#p-icd10") == f"{code}, "
    page.click("#crit-include")
    wait_js(page, "document.querySelectorAll('#attrition-grid [data-n-after]').length === 2")
    shown = page.eval_on_selector_all("#attrition-grid [data-n-after]", "els => els.map(e => +e.dataset.nAfter)")
    want = raw.execute("SELECT count(DISTINCT hadm_id) FROM hosp_diagnoses_icd WHERE icd_version = 10 AND icd_code = ?",
                       [code]).fetchone()[0]
    assert shown[-1] == want and want > 0
    assert not problems, problems


def test_sql_query_and_error_state(browser, server, raw):
    page, _, problems = browser
    go(page, server, f"/d/{SLUG}/sql")
    page.fill("#sql-editor", "SELECT gender, count(*) AS n FROM mimiciv_hosp.patients GROUP BY gender ORDER BY gender")
    page.click("#sql-run")
    page.wait_for_selector("#sql-status[data-rows]")
    got = page.eval_on_selector_all("#sql-results tbody tr", "rs => rs.map(r => [...r.cells].map(c => c.innerText))")
    want = raw.execute("SELECT gender, count(*) FROM hosp_patients GROUP BY gender ORDER BY gender").fetchall()
    assert [(g, int(n)) for g, n in got] == [tuple(x) for x in want]
    page.fill("#sql-editor", "COPY (SELECT 1) TO '/tmp/x.csv'")
    page.click("#sql-run")
    page.wait_for_selector("#sql-error:not([hidden])")
    assert "not allowed" in page.inner_text("#sql-error")
    problems.clear()  # the refused query's 400 is expected
    page.click("#sql-examples a >> nth=1")
    wait_js(page, "document.querySelectorAll('#sql-results tbody tr').length > 0")
    shot(page, "sql")
    assert not problems, problems


def test_not_built_and_api_pages(browser, server):
    page, _, problems = browser
    go(page, server, "/d/mimiciv/patients")
    assert page.input_value("#dataset-select") == "mimiciv"  # the menu stays on the dataset asked for
    assert page.locator('.mainnav a[data-nav="patients"].active').get_attribute("href") == "/d/mimiciv/patients"
    assert "Not built yet" in page.inner_text("#error-state")
    assert "mimiclab build mimiciv" in page.inner_text("#error-state")
    shot(page, "not-built")
    problems.clear()  # the page itself answers 404
    go(page, server, "/apidocs")
    assert page.locator("table.grid tbody tr").count() > 15
    shot(page, "api")
    assert not problems, problems


def test_no_request_left_localhost(browser):
    """Runs last in this module: every request made by every page above went to the local server."""
    _, requests, _ = browser
    assert len(requests) > 30
    hosts = {urlsplit(u).hostname for u in requests if not u.startswith(("data:", "blob:"))}
    assert hosts == {"127.0.0.1"}, hosts


def test_narrow_pages_scroll_their_tables_not_the_page(browser, server):
    """At a phone's width every page fits: a wide table scrolls inside its box. A one-column layout of `1fr`
    took the widest table's width, so the whole tables page scrolled sideways (1,738 px at 420)."""
    page, _, problems = browser
    page.set_viewport_size({"width": 420, "height": 900})
    try:
        for path, ready in [(f"/d/{SLUG}/tables/mimiciv_hosp.labevents?f=itemid%3Aeq%3A50912", "#table-grid table"),
                            (f"/d/{SLUG}/patients", "#find-form"), (f"/d/{SLUG}/dictionary", "section.dtable"),
                            (f"/d/{SLUG}/cohort", "body"), (f"/d/{SLUG}/sql", "body"), (f"/d/{SLUG}/population", "body"), ("/", "body")]:
            go(page, server, path)
            page.locator(ready).first.wait_for()
            page.wait_for_timeout(300)
            width = page.evaluate("document.documentElement.scrollWidth")
            if path.endswith("/cohort"):
                shot(page, "cohort-narrow")
            assert width <= 421, (path, width)
        go(page, server, f"/d/{SLUG}/tables/mimiciv_hosp.labevents")
        page.locator("#table-grid table").wait_for()
        wait_js(page, "document.querySelector('#pager').innerText.includes('rows')")
        shot(page, "tables-narrow")
        box = page.evaluate("(() => { const g = document.getElementById('table-grid'); return [g.scrollWidth, g.clientWidth]; })()")
        assert box[0] > box[1], box  # the grid itself scrolls
    finally:
        page.set_viewport_size({"width": 1400, "height": 900})
    assert not problems, problems
