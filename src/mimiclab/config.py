"""Where mimiclab keeps things. One place, so every layer agrees on the layout.

    $MIMICLAB_HOME/raw/<slug>/<version>/<path>     PhysioNet's own layout (downloads)
    $MIMICLAB_HOME/db/<slug>/<version>/            build output: parquet/, <db>.duckdb, manifest.json
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def home() -> Path:
    """$MIMICLAB_HOME, else the platform's user data dir (read each call so tests can override)."""
    env = os.environ.get("MIMICLAB_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("mimiclab", appauthor=False))


def raw_dir(slug: str, version: str) -> Path:
    return home() / "raw" / slug / version


def build_dir(slug: str, version: str) -> Path:
    return home() / "db" / slug / version
