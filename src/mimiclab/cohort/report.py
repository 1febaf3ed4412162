"""The cohort report folder: ids, attrition, Table 1, flow diagram, report.md/.html, the spec and its SQL.

No timestamps or absolute paths go into any file, so the same cohort on the same build gives
byte-identical files (subsets checksum them). Every file is written to a temporary name, then renamed.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2

from mimiclab import __version__
from mimiclab.cohort import flow
from mimiclab.cohort.attrition import kinds
from mimiclab.errors import MimiclabError

if TYPE_CHECKING:
    from mimiclab.cohort import Cohort

TEMPLATES = Path(__file__).parent / "templates"

FILES = ("ids.csv", "ids.parquet", "attrition.csv", "table1.csv", "flow.svg", "flow.png", "report.md",
         "report.html", "spec.yaml", "cohort.sql")


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), keep_trailing_newline=True,
                              autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",),
                                                                  default_for_string=False))


def context(cohort: Cohort) -> dict:
    m = cohort.manifest
    return {
        "spec": cohort.spec, "spec_text": cohort.spec.to_yaml().rstrip("\n"), "sql": cohort.sql,
        "dataset": m.dataset, "version": m.version, "title": m.title or m.dataset, "digest": m.digest(),
        "synthetic": m.synthetic, "mimiclab_version": __version__,
        "n_final": len(cohort.ids), "n_patients": int(cohort.ids[cohort.compiled.ctx.pid].nunique()),
        "attrition": cohort.attrition.to_dict("records"), "table1": cohort.table1.to_dict("records"),
        "table1_note": cohort.table1_note, "warnings": cohort.warnings,
    }


def write(cohort: Cohort, out: Path | str) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MimiclabError(f"--out {out} is a file; give a folder for the cohort's report.")
    out.mkdir(parents=True, exist_ok=True)
    ctx = context(cohort)
    write_atomic(out / "ids.csv", cohort.ids.to_csv(index=False, lineterminator="\n").encode())
    buf = io.BytesIO()
    cohort.ids.to_parquet(buf, index=False)
    write_atomic(out / "ids.parquet", buf.getvalue())
    write_atomic(out / "attrition.csv", cohort.attrition.to_csv(index=False, lineterminator="\n").encode())
    write_atomic(out / "table1.csv", cohort.table1.to_csv(index=False, lineterminator="\n").encode())
    svg, png = flow.render(cohort.attrition, kinds(cohort.spec), cohort.spec.unit_label)
    write_atomic(out / "flow.svg", svg)
    write_atomic(out / "flow.png", png)
    env = _env()
    write_atomic(out / "report.md", env.get_template("report.md.j2").render(**ctx).encode())
    write_atomic(out / "report.html", env.get_template("report.html.j2").render(**ctx).encode())
    write_atomic(out / "spec.yaml", (cohort.spec.to_yaml().rstrip("\n") + "\n").encode())
    write_atomic(out / "cohort.sql", (cohort.sql.rstrip() + ";\n").encode())
    return out
