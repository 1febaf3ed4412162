"""Deterministic gzip assembled from independently compressed batches.

DuckDB's own ``COMPRESSION gzip`` is deterministic (mtime 0) but single-threaded and slow (~13 MB/s).
Like pigz, each batch is cut into fixed-size chunks compressed as raw-deflate pieces (each ending in a
sync flush), so batches compress on whichever thread produced them; the pieces are concatenated in batch
order into ONE standard gzip member whose CRC is combined from the batches' CRCs. Output depends only on
the batch bytes, the chunk size and the level rule, never on thread timing.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

from isal import isal_zlib

CHUNK = 8 << 20
SMALL = 16 << 20  # a batch under this compresses at level 6 (small files, better ratio); larger ones at 1
# 10-byte gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS "unknown" (as DuckDB writes).
_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def _deflate(data: bytes, level: int) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, -15, 9)
    return c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)


@dataclass
class Compressed:
    """One batch: its raw-deflate pieces, with the CRC-32 and length of its plain bytes."""
    pieces: list[bytes] = field(default_factory=list)
    crc: int = 0
    size: int = 0


def compress_stream(src: BinaryIO, level: int | None = None) -> Compressed:
    """Read ``src`` to its end and compress it in CHUNK pieces; without ``level``, level 6 for a batch
    under SMALL bytes and 1 otherwise (decided once SMALL bytes were read, so only the bytes decide)."""
    out = Compressed()
    held: list[bytes] = []  # chunks read before the level is known
    held_size = 0
    lvl = level
    buf = bytearray()

    def emit(chunk: bytes, lv: int) -> None:
        out.crc = zlib.crc32(chunk, out.crc)
        out.size += len(chunk)
        out.pieces.append(_deflate(chunk, lv))

    while block := src.read(CHUNK):
        buf += block
        while len(buf) >= CHUNK:
            chunk = bytes(buf[:CHUNK])
            del buf[:CHUNK]
            if lvl is None:
                held.append(chunk)
                held_size += len(chunk)
                if held_size >= SMALL:
                    lvl = 1
                    for h in held:
                        emit(h, lvl)
                    held.clear()
            else:
                emit(chunk, lvl)
    if lvl is None:
        lvl = 6
        for h in held:
            emit(h, lvl)
    if buf:
        emit(bytes(buf), lvl)
    return out


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of A + B from crc(A), crc(B) and len(B) (Python's zlib lacks it; ISA-L's binding has it)."""
    return isal_zlib.crc32_combine(crc1, crc2, len2)


class GzipMember:
    """One gzip member written from Compressed batches, in the order they are appended."""

    def __init__(self, out: BinaryIO):
        self.out = out
        self.crc = 0
        self.size = 0
        out.write(_HEADER)

    def append(self, batch: Compressed) -> None:
        for piece in batch.pieces:
            self.out.write(piece)
        self.crc = crc32_combine(self.crc, batch.crc, batch.size)
        self.size += batch.size

    def close(self) -> None:
        self.out.write(zlib.compressobj(1, zlib.DEFLATED, -15).flush(zlib.Z_FINISH))  # empty final block
        self.out.write(self.crc.to_bytes(4, "little") + (self.size & 0xFFFFFFFF).to_bytes(4, "little"))
