"""Which datasets are built, and opening one. Shared by the CLI, the Python API and the workbench."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mimiclab import catalog, config
from mimiclab.errors import NotBuiltError
from mimiclab.load import manifest as mf
from mimiclab.store.duckdb_store import DuckDBStore


@dataclass(frozen=True)
class Build:
    build_dir: Path
    manifest: mf.Manifest

    @property
    def slug(self) -> str:
        return self.manifest.dataset

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def database(self) -> Path:
        return self.build_dir / self.manifest.database

    @property
    def parquet_dir(self) -> Path:
        return self.build_dir / "parquet"

    def size_bytes(self) -> int:
        """Bytes of the finished build; temporary files of a running or killed build are not counted."""
        from mimiclab.load import is_leftover

        total = 0
        for p in self.build_dir.rglob("*"):
            if not is_leftover(p):
                with contextlib.suppress(OSError):  # a temp file may vanish while we look
                    if p.is_file():
                        total += p.stat().st_size
        return total

    @property
    def schemas(self) -> list[str]:
        """This build's database schemas, in the catalog's module order (hosp before icu)."""
        found = list(dict.fromkeys(e.db_schema for e in self.manifest.tables.values()))
        if self.manifest.family:
            with contextlib.suppress(Exception):
                order = {m.db_schema: i for i, m in enumerate(catalog.family(self.manifest.family).modules)}
                found.sort(key=lambda s: order.get(s, len(order)))
        return found

    def linked(self, among: Sequence[Build] | None = None) -> list[Build]:
        """The newest builds of the other datasets of this one's population (catalog/links.yaml): the core
        for a module (ED, notes), the modules for a core. `among`: builds already listed (else scanned)."""
        from mimiclab.catalog.links import population

        others = [slug for slug in population(self.slug) if slug != self.slug]
        if not others:
            return []
        newest: dict[str, Build] = {}
        for b in (builds() if among is None else among):
            if b.slug in others and (b.slug not in newest or _vkey(b.version) > _vkey(newest[b.slug].version)):
                newest[b.slug] = b
        return [newest[s] for s in others if s in newest]

    def linked_manifests(self, among: Sequence[Build] | None = None) -> list[mf.Manifest]:
        """What `open()` attaches beside this build: the manifests of the linked builds (their tables are
        part of the workspace the Python API lists and resolves)."""
        return [b.manifest for b in self.linked(among)]

    def open(self, *, sandbox: bool = False, max_seconds: float | None = None,
             memory_limit: str | None = None, link: bool = True) -> DuckDBStore:
        """A read-only store. With `link` (default), the builds of the same population are attached so that
        their tables are queried together under mimic-code's names (one workspace)."""
        linked = self.linked() if link else []
        attach = [("linked_" + b.slug.replace("-", "_"), b.database, b.schemas) for b in linked]
        dirs = [self.parquet_dir] + [b.parquet_dir for b in linked]
        return DuckDBStore(self.database, sandbox_dir=dirs if sandbox else None, max_seconds=max_seconds,
                           memory_limit=memory_limit, linked=attach, schemas=self.schemas + ["main"])


def builds() -> list[Build]:
    """Every completed build under $MIMICLAB_HOME/db, newest version first within a dataset."""
    root = config.home() / "db"
    out = []
    if root.is_dir():
        for man in sorted(root.glob("*/*/" + mf.MANIFEST)):
            m = mf.read(man.parent)
            if m is not None and (man.parent / m.database).exists():
                out.append(Build(man.parent, m))
    return out


def find(slug: str, version: str | None = None) -> Build:
    """The build of `slug` (given version, else the newest built). NotBuiltError says how to build it."""
    candidates = [b for b in builds() if b.slug == slug and (version is None or b.version == version)]
    if candidates:
        return sorted(candidates, key=lambda b: _vkey(b.version))[-1]
    ds = catalog.get(slug)  # unknown slug -> CatalogError with close matches
    ver = ds.version(version).version
    hint = f"mimiclab build {slug}" + (f" --version {ver}" if version else "")
    how = (f"run `mimiclab demo`, or `mimiclab download {slug}` then `{hint}`" if ds.is_demo
           else f"run `mimiclab download {slug}` then `{hint}` (or `{hint} --source DIR` for a local copy)")
    stand_in = [b for b in builds() if b.manifest.synthetic and b.slug != slug]
    if ds.is_demo and stand_in:  # offline, `mimiclab demo` built a synthetic stand-in: say so, not "run demo" again
        how += (f". Offline, `mimiclab demo` built the synthetic {stand_in[0].slug} instead: use that name to explore "
                f"it, or run `mimiclab demo` when PhysioNet can be reached, or `mimiclab demo --mirror DIR` with a local "
                f"copy laid out as DIR/{slug}/{ver}/...")
    raise NotBuiltError(f"{slug} {ver} is not built yet: {how}.")


def _vkey(v: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in v.split("."))
