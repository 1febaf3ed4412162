"""`mimiclab cohort run | validate | sql` and `mimiclab subset`: the CLI face of mimiclab.cohort."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from mimiclab.cli import app
from mimiclab.cli._common import console, err_console, friendly_errors
from mimiclab.errors import MimiclabError

cohort_app = typer.Typer(help="Cohorts from a definition file: ids, attrition, flow diagram, Table 1, report.",
                         no_args_is_help=True)
app.add_typer(cohort_app, name="cohort")

SPEC_ARG = typer.Argument(..., help="Cohort definition (YAML or JSON).", exists=True, dir_okay=False)
DATASET_OPT = typer.Option(None, "--dataset", "-d", help="Dataset slug (default: `dataset:` in the spec).")


def _run(spec: Path, dataset: str | None):
    from mimiclab.cohort import Cohort, EmptyCohortError, load_spec

    s = load_spec(spec)
    try:
        with console.status(f"running {escape(s.name)}", spinner="dots"):
            c = Cohort.run(dataset, s)
    except EmptyCohortError as exc:
        _show_attrition(exc.cohort)
        raise
    for w in c.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
    return c


def _show_attrition(c) -> None:
    t = Table("step", "criterion", "N before", "excluded", "N after", title=escape(c.spec.name), title_justify="left")
    for r in c.attrition.itertuples():
        t.add_row(str(r.step), escape(r.label), f"{r.n_before:,}", f"{r.n_excluded:,}", f"{r.n_after:,}")
    console.print(t)


@cohort_app.command("run")
def run_cmd(
    spec: Path = SPEC_ARG,
    out: Path = typer.Option(..., "--out", "-o", help="Folder for ids, attrition, flow diagram, Table 1, report."),
    dataset: str = DATASET_OPT,
) -> None:
    """Run a cohort definition and write its report folder."""
    with friendly_errors():
        if out.exists() and not out.is_dir():  # say so before the cohort runs
            raise MimiclabError(f"--out {out} is a file; give a folder for the cohort's report.")
        c = _run(spec, dataset)
        _show_attrition(c)
        c.report(out)
        m = c.manifest
        console.print(f"{len(c):,} {c.spec.unit_label} from {m.dataset} {m.version} (manifest {m.digest()})"
                      + (" [magenta](synthetic data)[/]" if m.synthetic else ""), highlight=False)
        console.print(f"report: {escape(str(out / 'report.html'))}", highlight=False)


@cohort_app.command("validate")
def validate_cmd(
    spec: Path = SPEC_ARG,
    dataset: str = typer.Option(None, "--dataset", "-d",
                                help="Also check itemids and labels against this built dataset."),
) -> None:
    """Check a cohort definition: fields and types, and (with a dataset) itemids, labels and values."""
    from mimiclab.cohort import Cohort, EmptyCohortError, load_spec

    with friendly_errors():
        s = load_spec(spec)
        for i, (kind, c) in enumerate(s.steps(), start=1):
            console.print(f"  {i}. {kind}: {escape(c.title)}", highlight=False)
        if dataset or s.dataset:
            try:
                cohort = Cohort.run(dataset, s)
                for w in cohort.warnings:
                    err_console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
            except EmptyCohortError as exc:
                err_console.print(f"[yellow]warning:[/] {escape(str(exc))}", highlight=False)
        console.print(f"[green]ok[/]: {escape(str(spec))} ({s.unit_label}, {len(s.include)} include, "
                      f"{len(s.exclude)} exclude)", highlight=False)


@cohort_app.command("sql")
def sql_cmd(
    spec: Path = SPEC_ARG,
    dataset: str = DATASET_OPT,
    dialect: str = typer.Option("duckdb", "--dialect", help="duckdb, postgres or bigquery (via sqlglot)."),
) -> None:
    """Print the SQL a cohort definition compiles to (one CTE per step)."""
    from mimiclab import catalog
    from mimiclab.cohort import load_spec
    from mimiclab.cohort.compile import compile_spec, transpile

    with friendly_errors():
        s = load_spec(spec)
        slug = dataset or s.dataset or "mimiciv"
        comp = compile_spec(s, catalog.get(slug).family)
        typer.echo(transpile(comp.ids_sql, dialect).rstrip() + ";")


@app.command("subset")
def subset_cmd(
    spec: Path = SPEC_ARG,
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the subset in PhysioNet's layout."),
    dataset: str = DATASET_OPT,
    force: bool = typer.Option(False, "--force", help="Replace --out if it is not empty."),
    whole_patients: bool = typer.Option(
        False, "--whole-patients",
        help="Every row of the cohort's patients, not only of its stays/admissions: then the same spec selects "
             "the same units on the subset (criteria link events by patient and time, across admissions)."),
) -> None:
    """Export a cohort's rows in PhysioNet's layout (csv.gz per table) with its report and SHA256SUMS.txt."""
    with friendly_errors():
        from mimiclab.cohort.subset import check_out

        check_out(out, force)  # before the cohort runs: say at once what is wrong with --out
        c = _run(spec, dataset)
        _show_attrition(c)
        with console.status("writing tables", spinner="dots"):
            c.subset(out, force=force, whole_patients=whole_patients)
        console.print(f"subset of {len(c):,} {c.spec.unit_label} written to {escape(str(out))}", highlight=False)
        # the plain `mimiclab build <slug> --source <subset>` would replace the user's full build of <slug>
        home = escape(str(Path(str(out).rstrip("/\\") + ".home")))
        console.print(f"explore it apart from your full {c.manifest.dataset} build: in Python "
                      f"mimiclab.open({escape(repr(str(out)))}); on the command line "
                      f"MIMICLAB_HOME={home} mimiclab build {c.manifest.dataset} --source {escape(str(out))} "
                      f"(without MIMICLAB_HOME it would replace your {c.manifest.dataset} build)",
                      highlight=False, soft_wrap=True)
