"""The read side: what the user opened, whatever holds it.

A *source* is what the layers above (api, cohort, web) receive: an identity (dataset, version), a manifest
(the status and row count of each table: from manifest.json for a local build, from the server for
PostgreSQL and BigQuery) and `open()`, which gives a `Store` (sandboxed on request). The family's concept
mapping and the catalog follow from the dataset. Local DuckDB builds are `registry.Build`; servers are
`RemoteSource`. The loading that makes local builds lives apart, in mimiclab.load.

    open_source("mimic-iv-demo")                          a built slug (newest version)
    open_source("/path/to/build-or-physionet-folder")     handled by mimiclab.api.open (folders build on use)
    open_source("postgresql://user@host/mimic")           what `mimiclab publish` put there
    open_source("bigquery://my-billing-project/mimiciv-3.1")   PhysioNet's BigQuery, no download
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mimiclab import __version__, catalog
from mimiclab.errors import MimiclabError
from mimiclab.load import manifest as mf
from mimiclab.store import Store


class Source(Protocol):
    """What `mimiclab.open`, cohorts and the workbench need of a dataset, whatever backend holds it."""

    @property
    def slug(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def manifest(self) -> mf.Manifest: ...

    def open(self, *, sandbox: bool = False, max_seconds: float | None = None,
             memory_limit: str | None = None) -> Store: ...

    def linked_manifests(self) -> list[mf.Manifest]:
        """The other datasets of this one's population that its store resolves beside it (one workspace)."""
        ...


def is_url(target: object) -> bool:
    return isinstance(target, str) and target.split("://", 1)[0].lower() in ("postgresql", "postgres", "bigquery")


@dataclass
class RemoteSource:
    """A dataset on a server (PostgreSQL, BigQuery): a manifest made from the server's own catalog."""

    slug: str
    version: str
    manifest: mf.Manifest
    opener: Callable[..., Store]
    where: str  # for messages, secrets masked
    backend: str
    build_dir: Path | None = None  # no local folder
    linked: tuple[mf.Manifest, ...] = ()  # the population's other datasets in the same database

    def linked_manifests(self) -> list[mf.Manifest]:
        return list(self.linked)

    def open(self, *, sandbox: bool = False, max_seconds: float | None = None,
             memory_limit: str | None = None) -> Store:
        return self.opener(sandbox=sandbox, max_seconds=max_seconds)

    def size_bytes(self) -> int:
        return 0

    @property
    def database(self) -> str:
        return self.where

    def __repr__(self) -> str:
        return f"<RemoteSource {self.slug} {self.version} on {self.where}>"


def manifest_from_tables(slug: str, version: str, rows: Mapping[str, int | None], backend: str, where: str,
                         title: str | None = None) -> mf.Manifest:
    """A manifest for a server's copy of a dataset: every catalog table, loaded when the server has it."""
    ds = catalog.get(slug)
    ver = ds.version(version).version
    tables: dict[str, mf.TableEntry] = {}
    for t in ds.tables(ver):
        schema = ds.db_schema(t.module)
        key = f"{schema}.{t.name}"
        n = rows.get(key)
        tables[key] = mf.TableEntry(module=t.module, table=t.name, db_schema=schema, parquet="",
                                    status="loaded" if key in rows else "not_loaded", rows=int(n or 0))
    return mf.Manifest(mimiclab_version=__version__, dataset=ds.slug, version=ver, title=title or ds.title,
                       family=ds.family, source=where, database=where, backend=backend, storage=backend,
                       built_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), tables=tables)


def open_postgres(url: str, slug: str | None = None, version: str | None = None,
                  max_seconds: float | None = None) -> RemoteSource:
    """The dataset `mimiclab publish` put into this PostgreSQL database (`slug`: needed when it holds several;
    of one dataset's versions, the newest published unless `version` says)."""
    from mimiclab.store.postgres_store import PostgresStore, redact

    probe = PostgresStore(url)
    try:
        published = probe.manifests()
        others = list(published)
        names = sorted({str(m.get("dataset")) for m in published})
        if slug is None and len(names) > 1:
            # the newest had been opened silently: with ED beside hospital data, `mimiclab.open(url)` gave
            # the ED dataset and its tables only
            raise MimiclabError(f"{redact(url)} holds {len(names)} datasets published by mimiclab ({', '.join(names)}): "
                                f"name one: mimiclab.open(url, dataset={names[0]!r}); `mimiclab sql` and `mimiclab "
                                f"patient`: --published {names[0]}; `mimiclab serve --dataset {names[0]} <url>`; a "
                                f"cohort spec: `dataset: {names[0]}`. The others' schemas resolve beside it.")
        if slug is not None:
            published = [m for m in published if m.get("dataset") == slug]
        if version is not None:
            published = [m for m in published if m.get("version") == version]
        if published:
            man = mf.Manifest.model_validate(published[0]["manifest"])
        else:
            if slug is None:
                raise MimiclabError(f"{redact(url)} holds no dataset published by mimiclab: run `mimiclab publish "
                                    "<dataset> --postgres <url>`, or name the dataset: "
                                    "mimiclab.open(url, dataset='mimiciv', version='3.1').")
            counts = probe.tables()
            man = manifest_from_tables(slug, version or catalog.get(slug).version().version, counts, "postgres",
                                       redact(url))
    finally:
        probe.close()

    all_published = [mf.Manifest.model_validate(m["manifest"]) for m in others]
    path = search_path(man, all_published) + ["public"]

    def opener(*, sandbox: bool = False, max_seconds: float | None = max_seconds) -> Store:
        return PostgresStore(url, sandboxed=sandbox, max_seconds=max_seconds, search_path=path)

    return RemoteSource(man.dataset, man.version, man, opener, redact(url), "postgres",
                        linked=tuple(linked_of(man, all_published)))


def linked_of(man: mf.Manifest, published: Sequence[mf.Manifest]) -> list[mf.Manifest]:
    """Of the manifests beside `man` in one database, the other datasets of its population, one per dataset
    (the first listed: manifests() gives the newest first), whose schemas are not `man`'s own."""
    from mimiclab.catalog.links import population

    members, own = population(man.dataset), {e.db_schema for e in man.tables.values()}
    out: dict[str, mf.Manifest] = {}
    for other in published:
        if other.dataset != man.dataset and other.dataset in members and other.dataset not in out \
                and not own & {e.db_schema for e in other.tables.values()}:
            out[other.dataset] = other
    return list(out.values())


def search_path(man: mf.Manifest, published: Sequence[mf.Manifest] = ()) -> list[str]:
    """Schemas for unqualified names (`FROM admissions`), as on a local build: this dataset's in the catalog's
    module order, then those of the rest of its population in the same database (`FROM edstays`)."""
    from mimiclab.catalog.links import population

    def schemas(m: mf.Manifest) -> list[str]:
        found = list(dict.fromkeys(e.db_schema for e in m.tables.values()))
        if m.family:
            order = {mod.db_schema: i for i, mod in enumerate(catalog.family(m.family).modules)}
            found.sort(key=lambda x: order.get(x, len(order)))
        return found

    out = schemas(man)
    members = population(man.dataset)
    for other in published:
        if other.dataset != man.dataset and other.dataset in members:
            out += [x for x in schemas(other) if x not in out]
    return out


def open_bigquery(url: str, max_seconds: float | None = None, **kw: Any) -> RemoteSource:
    """PhysioNet's BigQuery copy of a dataset version, billed to the user's project."""
    try:
        from mimiclab.store import bigquery_store
    except ImportError:
        raise MimiclabError("BigQuery support is not available in this mimiclab version.") from None
    store = bigquery_store.open_bigquery(url, **kw)
    try:
        counts = store.tables()
        man = manifest_from_tables(store.slug, store.version, counts, "bigquery", url)
    finally:
        store.close()
    from mimiclab.catalog.links import population

    linked = []  # the modules the store reaches beside it (ED, notes), where the user can see them
    for other in population(man.dataset):
        if other != man.dataset and catalog.get(other).bigquery:
            m = manifest_from_tables(other, catalog.get(other).version().version, counts, "bigquery", url)
            if any(e.status == "loaded" for e in m.tables.values()):
                linked.append(m)

    def opener(*, sandbox: bool = False, max_seconds: float | None = max_seconds) -> Store:
        return bigquery_store.open_bigquery(url, max_seconds=max_seconds, **kw)

    return RemoteSource(man.dataset, man.version, man, opener, url, "bigquery", linked=tuple(linked))


def open_source(target: str, version: str | None = None, **kw: Any) -> Source:
    """A source by slug or server URL (folders: see mimiclab.api.open)."""
    if isinstance(target, str) and target.lower().startswith(("postgresql://", "postgres://")):
        return open_postgres(target, kw.pop("dataset", None), version, **kw)
    if isinstance(target, str) and target.lower().startswith("bigquery://"):
        return open_bigquery(target, **kw)
    from mimiclab.sources.registry import find

    return find(str(target), version)
