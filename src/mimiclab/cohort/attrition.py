"""Attrition: how many units each step removed. Rows add up by construction (n_after = n_before - n_excluded)."""

from __future__ import annotations

import pandas as pd

from mimiclab.cohort.spec import CohortSpec

COLUMNS = ["step", "label", "n_before", "n_excluded", "n_after"]


def base_label(spec: CohortSpec, dataset: str, version: str) -> str:
    return f"All {spec.unit_label} in {dataset} {version}"


def table(spec: CohortSpec, counts: list[int], dataset: str, version: str) -> pd.DataFrame:
    """counts[i] = units left after step i (counts[0]: all units)."""
    rows = [(0, base_label(spec, dataset, version), counts[0], 0, counts[0])]
    for i, (kind, c) in enumerate(spec.steps(), start=1):
        prefix = "Include: " if kind == "include" else "Exclude: "
        rows.append((i, prefix + c.title, counts[i - 1], counts[i - 1] - counts[i], counts[i]))
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in COLUMNS[2:]:
        df[col] = df[col].astype("int64")
    return df


def kinds(spec: CohortSpec) -> list[str]:
    """'base', then include/exclude per row of the attrition table."""
    return ["base"] + [k for k, _ in spec.steps()]
