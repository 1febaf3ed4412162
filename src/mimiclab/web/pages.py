"""Server-rendered page shells. Each page is a small HTML frame; its script fetches /api JSON to fill it.

A page for a dataset that is not built renders the build instructions instead (status 404), so a bookmark
to a dataset deleted since still explains itself.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from mimiclab import __version__, catalog
from mimiclab.catalog import CatalogError
from mimiclab.catalog import workbench as wbcat
from mimiclab.errors import NotBuiltError

HERE = Path(__file__).parent
env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                  trim_blocks=True, lstrip_blocks=True)
router = APIRouter(include_in_schema=False)

NAV = [
    ("dictionary", "Dictionary"),
    ("tables", "Tables"),
    ("patients", "Patients"),
    ("population", "Population"),
    ("cohort", "Cohorts"),
    ("sql", "SQL"),
]
PLOTLY_PAGES = {"population"}  # plotly.js as a deferred tag; the patient explorer loads it after its first chart


def _wb(request: Request):
    return request.app.state.workbench


FAMILY_ORDER = ("mimiciv", "mimiciii", "omop")  # how the families are listed in "works on a ... build"


def unsupported(w, slug: str | None) -> dict[str, str]:
    """Pages of the menu that cannot work on this build (no patient mapping, no cohort names for its schema
    family), each with the reason: the menu marks them and the page says so instead of failing later."""
    from mimiclab.catalog import concepts
    from mimiclab.cohort.criteria import families as cohort_families

    try:
        family = w.build(slug).manifest.family if slug else None
    except (NotBuiltError, CatalogError):
        return {}
    def names(fams: list[str]) -> str:
        known = [wbcat.name(f) for f in sorted(fams, key=lambda f: (list(FAMILY_ORDER) + [f]).index(f))]
        return ", ".join(known[:-1]) + " or " + known[-1] if len(known) > 1 else "".join(known)

    out = {}
    if family not in concepts.families():
        out["patients"] = (f"The patient explorer has no patient mapping for {slug} (schema family {family}): it "
                           f"works on a {names(concepts.families())} build.")
    if family not in cohort_families():
        out["cohort"] = (f"Cohorts cannot be built on {slug} (schema family {family}): the cohort builder works on "
                         f"a {names(cohort_families())} build.")
    return out


def elsewhere(w, page: str) -> list[str]:
    """Built datasets where `page` works (offered as links when it does not work on this one)."""
    return [b.slug for b in w.builds() if page not in unsupported(w, b.slug)]


def render(request: Request, template: str, page: str, slug: str | None = None, status: int = 200,
           **ctx) -> HTMLResponse:
    w = _wb(request)
    built = [{"slug": b.slug, "version": b.version, "synthetic": b.manifest.synthetic} for b in w.builds()]
    current = w.current(slug)
    build = next((b for b in built if b["slug"] == current), None)
    html = env.get_template(template).render(
        page=page, slug=current, build=build, built=built, nav=NAV, version=__version__,
        plotly=page in PLOTLY_PAGES, na=unsupported(w, current) if build else {}, **ctx)
    return HTMLResponse(html, status_code=status)


def error_page(request: Request, status: int, message: str, exc: Exception | None = None,
               title: str | None = None, page: str = "error", **ctx) -> HTMLResponse:
    """The error explained, inside the dataset the user chose: its menu and dataset selector stay on it (and
    `page` keeps the menu entry, so choosing another dataset opens the same page there)."""
    commands = []
    slug = request.path_params.get("slug") if hasattr(request, "path_params") else None
    if isinstance(exc, NotBuiltError) and slug:
        try:
            ds = catalog.get(slug)
            commands = (["mimiclab demo"] if ds.is_demo else []) + [f"mimiclab download {slug}", f"mimiclab build {slug}"]
        except CatalogError:
            pass
    parts = request.url.path.strip("/").split("/") if hasattr(request, "url") else []
    if page == "error" and len(parts) >= 3 and parts[0] == "d" and parts[2] in dict(NAV):
        page = parts[2]
    title = title or ("Not built yet" if isinstance(exc, NotBuiltError)
                      else ("Not found" if status == 404 else "Something went wrong"))
    return render(request, "error.html", page, slug=slug, status=status, title=title, message=message,
                  commands=commands, code=status, **ctx)


@router.get("/", response_class=HTMLResponse)
def home(request: Request):
    return render(request, "home.html", "home")


@router.get("/apidocs", response_class=HTMLResponse)
def apidocs(request: Request):
    schema = request.app.openapi()
    routes = []
    for path, methods in schema.get("paths", {}).items():
        for method, op in methods.items():
            params = [p["name"] for p in op.get("parameters", [])]
            routes.append({"method": method.upper(), "path": path, "summary": op.get("summary", ""), "params": params})
    return render(request, "apidocs.html", "apidocs", routes=routes)


def _dataset_page(request: Request, slug: str, page: str, **ctx):
    w = _wb(request)
    w.build(slug)  # NotBuiltError / CatalogError -> explained error page
    return render(request, f"{page}.html", page, slug=slug, **ctx)


@router.get("/d/{slug}", response_class=HTMLResponse)
def dataset_root(slug: str):
    return RedirectResponse(f"/d/{slug}/dictionary", status_code=307)


@router.get("/d/{slug}/dictionary", response_class=HTMLResponse)
def dictionary_page(request: Request, slug: str):
    return _dataset_page(request, slug, "dictionary")


@router.get("/d/{slug}/tables", response_class=HTMLResponse)
def tables_page(request: Request, slug: str):
    return _dataset_page(request, slug, "tables", table="")


@router.get("/d/{slug}/tables/{table}", response_class=HTMLResponse)
def table_page(request: Request, slug: str, table: str):
    _wb(request).table(slug, table)  # an unknown table is the explained 404 page
    return _dataset_page(request, slug, "tables", table=table)


@router.get("/d/{slug}/patients", response_class=HTMLResponse)
def patients_page(request: Request, slug: str):
    """The find form labels its fields with this dataset's own id names (icustay_id in MIMIC-III, person_id
    and visit ids in OMOP); the query parameters keep the API's names."""
    from mimiclab.catalog import concepts

    w = _wb(request)
    family = w.build(slug).manifest.family
    why = unsupported(w, slug).get("patients")
    if why:
        return error_page(request, 404, why + " Its tables are in Dictionary, Tables, Population and SQL.",
                          title="No patient explorer for this dataset", page="patients",
                          elsewhere=elsewhere(w, "patients"))
    m = concepts.load(family)
    ids = {"subject_id": m.patient_id, "hadm_id": m.hadm_id, "stay_id": m.stay_id}
    return _dataset_page(request, slug, "patients", ids=ids)


@router.get("/d/{slug}/population", response_class=HTMLResponse)
def population_page(request: Request, slug: str):
    return _dataset_page(request, slug, "population")


@router.get("/d/{slug}/cohort", response_class=HTMLResponse)
def cohort_page(request: Request, slug: str):
    """On a dataset the cohort compiler has no names for (OMOP, ED) the page says so up front, with the
    builds where it works, instead of a form whose every run fails."""
    w = _wb(request)
    w.build(slug)
    why = unsupported(w, slug).get("cohort")
    return _dataset_page(request, slug, "cohort", why=why, elsewhere=elsewhere(w, "cohort") if why else [])


DIALECT_NAMES = {"duckdb": "DuckDB", "postgres": "PostgreSQL", "bigquery": "BigQuery"}


@router.get("/d/{slug}/sql", response_class=HTMLResponse)
def sql_page(request: Request, slug: str):
    """Statements run as typed, in the dataset's own dialect: the page names it."""
    from mimiclab.web.api_sql import dialect_of

    w = _wb(request)
    dialect = dialect_of(w.build(slug))
    return _dataset_page(request, slug, "sql", limits=w.limits, dialect=dialect,
                         dialect_name=DIALECT_NAMES.get(dialect, dialect))


# Short links without a dataset: open the default dataset's page.
for _page, _ in NAV:
    def _short(request: Request, _p=_page):
        slug = _wb(request).current()
        if not slug:
            return RedirectResponse("/", status_code=307)
        return RedirectResponse(f"/d/{slug}/{_p}", status_code=307)

    router.add_api_route(f"/{_page}", _short, methods=["GET"], include_in_schema=False)
