"""Which datasets form one population: module datasets (ED, notes, ECG, CXR, echo) and the core they link to.

Data, not code (links.yaml); the read side uses it to open the builds of one population as one workspace.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict

HERE = Path(__file__).parent


class Link(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str  # the module dataset (mimic-iv-ed)
    core: str  # the dataset whose patients it describes (mimiciv)
    keys: tuple[str, ...]  # columns the two share (subject_id, hadm_id)


@lru_cache(maxsize=1)
def links() -> tuple[Link, ...]:
    data = yaml.safe_load((HERE / "links.yaml").read_text(encoding="utf-8"))
    return tuple(Link.model_validate(x) for x in data["links"])


def core_of(slug: str) -> str:
    """The core dataset of `slug`'s population (itself for a core or an unlinked dataset)."""
    for link in links():
        if link.dataset == slug:
            return link.core
    return slug


def population(slug: str) -> list[str]:
    """Every dataset of `slug`'s population, the core first."""
    core = core_of(slug)
    return [core] + [link.dataset for link in links() if link.core == core]
