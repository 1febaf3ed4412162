"""`mimiclab patient`: one patient's summary or timeline from the terminal."""

from __future__ import annotations

import enum
import sys

import typer

from mimiclab.cli import app
from mimiclab.cli._common import console, friendly_errors


class Format(str, enum.Enum):
    table = "table"
    csv = "csv"
    json = "json"


@app.command("patient")
def patient_cmd(
    dataset: str = typer.Argument(..., help="Built dataset (slug, e.g. mimic-iv-demo) or a folder."),
    subject_id: int = typer.Argument(..., help="Patient id (subject_id; person_id for OMOP)."),
    timeline: bool = typer.Option(False, "--timeline", help="Print every event in time order."),
    fmt: Format = typer.Option(Format.table, "--format", "-f", help="table, csv or json."),
    version: str = typer.Option(None, "--version", help="Dataset version (default: newest built)."),
    limit: int = typer.Option(0, "--limit", help="At most this many timeline rows in table format (0 = all)."),
    published: str = typer.Option(None, "--published", help="A postgresql:// database holding several published "
                                                            "datasets: which one."),
) -> None:
    """Show a patient: demographics, admissions, ICU stays and diagnoses, or the full --timeline."""
    with friendly_errors():
        import mimiclab

        ds = mimiclab.open(dataset, version=version, **({"dataset": published} if published else {}))
        p = ds.patient(subject_id)
        if timeline:
            tl = p.timeline()
            if fmt is Format.table:  # the terminal is narrow: the columns a reader scans
                tl = tl[["time", "source", "label", "value", "unit", "hadm_id", "stay_id"]]
            _emit(tl, fmt, f"Timeline of patient {p.subject_id}", limit)
            return
        if fmt is Format.json:
            import json

            out = {"dataset": ds.slug, "version": ds.version, "demographics": p.demographics,
                   "admissions": _records(p.admissions), "icustays": _records(p.icustays),
                   "diagnoses": _records(p.diagnoses)}
            sys.stdout.write(json.dumps(out, default=str, indent=2) + "\n")
            return
        if fmt is Format.csv:
            import pandas as pd

            frames = [(name, getattr(p, name)) for name in ("admissions", "icustays", "diagnoses")]
            demo = pd.DataFrame([p.demographics])
            sys.stdout.write("# demographics\n" + demo.to_csv(index=False))
            for name, df in frames:
                sys.stdout.write(f"# {name}\n" + df.to_csv(index=False))
            return
        from rich.table import Table

        t = Table(title=f"Patient {p.subject_id} ({ds.slug} {ds.version})", show_header=False)
        for k, v in p.demographics.items():
            t.add_row(k, "" if v is None else str(v))
        console.print(t)
        for name in ("admissions", "icustays", "diagnoses"):
            _emit(getattr(p, name), fmt, name, 0)


def _records(df) -> list[dict]:
    return [{k: (None if _isna(v) else v) for k, v in r.items()} for r in df.to_dict(orient="records")]


def _isna(v) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _emit(df, fmt: Format, title: str, limit: int) -> None:
    if fmt is Format.csv:
        sys.stdout.write(df.to_csv(index=False))
        return
    if fmt is Format.json:
        import json

        sys.stdout.write(json.dumps(_records(df), default=str) + "\n")
        return
    from rich.table import Table

    shown = df.head(limit) if limit else df
    t = Table(title=f"{title} ({len(df):,} rows)" + (f", first {limit}" if limit and len(df) > limit else ""))
    for c in shown.columns:
        t.add_column(str(c), overflow="fold")
    for r in shown.itertuples(index=False):
        t.add_row(*["" if _isna(v) else str(v) for v in r])
    console.print(t)
