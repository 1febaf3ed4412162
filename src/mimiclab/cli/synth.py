"""`mimiclab synth`: generate the synthetic MIMIC-IV-shaped dataset (offline demo, benchmarks)."""

from __future__ import annotations

from pathlib import Path

import typer

from mimiclab.cli import app
from mimiclab.cli._common import console, friendly_errors


@app.command("synth")
def synth_cmd(
    patients: int | None = typer.Option(None, "--patients", "-n", min=1,
                                        help="Number of synthetic patients (default: 100; with --scale full, MIMIC-IV 3.1's 364,627)."),
    seed: int = typer.Option(0, "--seed", help="Same patients + seed give byte-identical files."),
    dest: Path | None = typer.Option(None, "--dest", help="Output folder (default: $MIMICLAB_HOME/raw/mimic-iv-synthetic/2.2)."),
    version: str = typer.Option("2.2", "--version", help="MIMIC-IV version whose schema to follow."),
    scale: str = typer.Option("demo", "--scale",
                              help="Rates per patient: 'demo' (ICU-heavy, like the open demo) or 'full' "
                                   "(MIMIC-IV 3.1's published table sizes: ~896M rows, 13 GB)."),
    fraction: float | None = typer.Option(None, "--fraction", min=0.0, max=1.0,
                                          help="With --scale full: this share of MIMIC-IV 3.1's patients (e.g. 0.01)."),
    order: str = typer.Option("patient", "--order",
                              help="Row order: 'patient' (as generated) or 'physionet' (every table with patients in "
                                   "runs scattered over the file, as PhysioNet's files are: realistic lookups)."),
) -> None:
    """Write a synthetic MIMIC-IV (hosp + icu) in PhysioNet's layout. No real patient data."""
    from mimiclab import config, synth
    from mimiclab.errors import MimiclabError

    with friendly_errors():
        if fraction is not None and scale != "full":
            raise MimiclabError("--fraction goes with --scale full (use --patients otherwise)")
        out = dest or config.raw_dir(synth.SLUG, version)
        n, _ = synth.resolve(patients, scale, fraction)
        console.print(f"Generating {n:,} synthetic patients ({scale} scale, seed {seed}) into [bold]{out}[/]")
        with console.status("generating...") as status:
            res = synth.generate(out, patients=n, seed=seed, version=version, scale=scale, order=order,
                                 progress=lambda t, n: status.update(f"wrote {t} ({n:,} rows)"))
        from rich.table import Table

        table = Table("file", "rows", "seconds")
        for key, rows in res.rows.items():
            table.add_row(f"{key}.csv.gz", f"{rows:,}", f"{res.seconds[key]:.1f}")
        console.print(table)
        console.print(f"Done in {res.seconds['_total']:.1f} s: {len(res.rows)} tables, "
                      f"{sum(res.rows.values()):,} rows, plus SHA256SUMS.txt, LICENSE.txt, SYNTHETIC.json.")
