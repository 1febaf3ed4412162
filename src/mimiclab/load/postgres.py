"""Publishing a finished build to another store (PostgreSQL), with the catalog's column types."""

from __future__ import annotations

from collections.abc import Callable

from mimiclab import catalog
from mimiclab.store import TableRef


def to_postgres(b, dsn: str, progress: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Copy every table of a finished build (`mimiclab.sources.registry.find(slug)`) into PostgreSQL (same
    schema and table names).

    Tables that were not loaded (no source file) are created empty, as in the DuckDB build, so SQL that
    mentions them still runs.
    """
    from mimiclab.store.postgres_store import publish_postgres

    tables = {(t.module, t.name): t for t in catalog.get(b.slug).tables(b.version)}
    items = []
    for e in b.manifest.tables.values():
        t = tables[(e.module, e.table)]
        cols = [(c.name, c.type) for c in t.columns_for(b.version)]
        items.append((TableRef(e.db_schema, e.table, str(b.build_dir / e.parquet)), cols))
    return publish_postgres(dsn, items, progress)
