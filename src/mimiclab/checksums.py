"""File checksums, as PhysioNet publishes them (SHA256SUMS.txt). One implementation for every layer."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20


def sha256_file(path: str | Path, chunk: int = CHUNK) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (hashlib releases the GIL: safe to run on a thread)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
