"""Spec -> one SQL statement: a CTE per step, so the SQL reads like the attrition table it produces.

    WITH units AS (...),                  -- every unit in the dataset (step 0)
         step_0 AS (SELECT ... FROM units),
         step_1 AS MATERIALIZED (SELECT * FROM step_0 WHERE key IN (<criterion 1>)),
         step_2 AS (SELECT * FROM step_1 WHERE key NOT IN (<exclusion>)), ...
    SELECT * FROM step_N

The same text is the cohort's `.sql`, what `mimiclab cohort sql` prints, and what the report cites.
"""

from __future__ import annotations

from dataclasses import dataclass

from mimiclab.cohort import criteria as C
from mimiclab.cohort.spec import CohortSpec, SpecError


@dataclass(frozen=True)
class Compiled:
    spec: CohortSpec
    ctx: C.Context
    ctes: list[str]  # "name AS (...)" in order: units, step_0 .. step_N
    fragments: list[str]  # criterion SELECTs, one per step 1..N

    @property
    def last(self) -> str:
        return f"step_{len(self.fragments)}"

    def with_clause(self) -> str:
        return "WITH " + ",\n".join(self.ctes)

    @property
    def ids_sql(self) -> str:
        cols = ", ".join(self.ctx.unit_columns)
        return f"{self.with_clause()}\nSELECT {cols} FROM {self.last} ORDER BY {self.ctx.key}"

    @property
    def attrition_sql(self) -> str:
        counts = "\nUNION ALL ".join(f"SELECT {i} AS step, COUNT(*) AS n FROM step_{i}"
                                     for i in range(len(self.fragments) + 1))
        return f"{self.with_clause()}\n{counts}\nORDER BY step"


def compile_spec(spec: CohortSpec, family: str | None) -> Compiled:
    ctx = C.Context(C.family_names(family), spec.unit, family or "")
    key = ctx.key
    ctes = [f"units AS (\n  {ctx.units_sql()}\n)", "step_0 AS (SELECT * FROM units)"]
    if spec.unit == "stay":
        ctx.need("icustays", "stay unit")
    frags = []
    for i, (kind, c) in enumerate(spec.steps(), start=1):
        try:
            frag = C.fragment(c, ctx)
        except SpecError as exc:
            raise SpecError(f"{spec.where(c)}: {exc}") from None
        frags.append(frag)
        op = "IN" if kind == "include" else "NOT IN"
        title = comment_text(c.title)
        ctes.append(f"-- {i}. {kind}: {title}\nstep_{i} AS MATERIALIZED (\n  SELECT * FROM step_{i - 1} WHERE {key} {op} (\n"
                    f"    {frag}\n  )\n)")
    return Compiled(spec, ctx, ctes, frags)


def comment_text(text: str) -> str:
    """User text made safe for a `-- ` comment: SQL parsers end a comment at any line break (DuckDB at \r as
    well as \n), so every non-printable character becomes a space; what is left cannot leave the comment."""
    return "".join(ch if ch.isprintable() else " " for ch in text).replace("*/", "* /")


def transpile(sql: str, dialect: str) -> str:
    """The compiled DuckDB-spelled SQL in another dialect (postgres, bigquery, ...): the stores' own rendering
    (mimiclab.store.render), so what `Cohort.sql_for` prints is what a store of that dialect runs, laid out
    one clause per line for reading."""
    from mimiclab.store import render

    out = render(sql, dialect)
    if dialect == "duckdb":
        return out
    import sqlglot

    return ";\n".join(sqlglot.transpile(out, read=dialect, write=dialect, pretty=True))
