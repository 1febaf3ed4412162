"""`mimiclab synth`: generate the synthetic MIMIC-IV-shaped dataset (offline demo, benchmarks)."""

from __future__ import annotations

from pathlib import Path

import typer

from mimiclab.cli import app
from mimiclab.cli._common import console, friendly_errors


@app.command("synth")
def synth_cmd(
    patients: int = typer.Option(100, "--patients", "-n", min=1, help="Number of synthetic patients."),
    seed: int = typer.Option(0, "--seed", help="Same patients + seed give byte-identical files."),
    dest: Path | None = typer.Option(None, "--dest", help="Output folder (default: $MIMICLAB_HOME/raw/mimic-iv-synthetic/2.2)."),
    version: str = typer.Option("2.2", "--version", help="MIMIC-IV version whose schema to follow."),
) -> None:
    """Write a synthetic MIMIC-IV (hosp + icu) in PhysioNet's layout. No real patient data."""
    from mimiclab import config, synth

    with friendly_errors():
        out = dest or config.raw_dir(synth.SLUG, version)
        console.print(f"Generating {patients:,} synthetic patients (seed {seed}) into [bold]{out}[/]")
        with console.status("generating...") as status:
            res = synth.generate(out, patients=patients, seed=seed, version=version,
                                 progress=lambda t, n: status.update(f"wrote {t} ({n:,} rows)"))
        from rich.table import Table

        table = Table("file", "rows", "seconds")
        for key, n in res.rows.items():
            table.add_row(f"{key}.csv.gz", f"{n:,}", f"{res.seconds[key]:.1f}")
        console.print(table)
        console.print(f"Done in {res.seconds['_total']:.1f} s: {len(res.rows)} tables, "
                      f"{sum(res.rows.values()):,} rows, plus SHA256SUMS.txt, LICENSE.txt, SYNTHETIC.json.")
