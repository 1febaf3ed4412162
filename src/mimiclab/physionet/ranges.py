"""Byte ranges on several connections: PhysioNet caps each connection (~50 KB/s), not a client's total.

* `Split` says which files are cut into ranges and how finely;
* `Ranges` is the sidecar `<name>.part.ranges` next to a preallocated `<name>.part`: the byte ranges known to
  be written, rewritten atomically, so a kill -9 resumes exactly the missing ranges. It names the file's size
  and expected sha256, and a sidecar that does not parse, or does not match its part, is never trusted;
* `Gate` is the one connection cap shared by every file, and the place where a 429/503's Retry-After holds
  back every request (the server throttles the client, not one file).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SIDECAR = ".ranges"
# PhysioNet's figures (reported by the MIMIC_IV_MEDS downloader's maintainers): ~50 KB/s per connection and no
# cap on a client's total; 8 connections reached ~400 KB/s (MIMIC-IV 3.1 in 7 h 58 min).
CONNECTIONS = 8
RATE_PER_CONNECTION = 50_000.0


@dataclass(frozen=True)
class Split:
    """When a file is fetched as byte ranges, and how finely.

    min_file: a file at least this large (planned size) from a remote source is fetched in ranges;
    piece: the most bytes one request asks for; an idle connection takes over only bytes not yet asked for,
        so no byte crosses the wire twice, and a smaller piece means a shorter tail;
    min_steal: an idle connection takes over half of another's remaining bytes only if that is this much.
    """

    min_file: int = 16 << 20
    piece: int = 8 << 20
    min_steal: int = 1 << 20

    def __post_init__(self) -> None:
        if self.piece < 1 or self.min_steal < 1 or self.min_file < 1:
            raise ValueError(f"Split sizes must be positive: {self}")


def merge(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-overlapping, non-adjacent [start, end) ranges."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(r for r in ranges if r[1] > r[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def gaps(done: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """The ranges of [0, size) not in `done` (merged)."""
    out, pos = [], 0
    for a, b in done:
        if a > pos:
            out.append((pos, a))
        pos = max(pos, b)
    if pos < size:
        out.append((pos, size))
    return out


class Ranges:
    """The sidecar of one ranged `.part`: size, expected sha256 and the byte ranges written."""

    def __init__(self, part: Path, size: int, sha256: str, done: Iterable[tuple[int, int]] = ()):
        self.part = part
        self.path = sidecar_of(part)
        self.size = size
        self.sha256 = sha256
        self.done = merge(done)

    @property
    def covered(self) -> int:
        return sum(b - a for a, b in self.done)

    def add(self, a: int, b: int) -> None:
        # chunks mostly extend the last range of a segment: merge only around the new one
        self.done = merge([*self.done, (a, b)]) if len(self.done) < 64 else _insert(self.done, a, b)

    def missing(self) -> list[tuple[int, int]]:
        return gaps(self.done, self.size)

    def save(self) -> None:
        """Atomic rewrite: a kill at any moment leaves the old record or the new one, never half of one."""
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps({"format": 1, "size": self.size, "sha256": self.sha256,
                                   "done": [list(r) for r in self.done]}))
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, part: Path, sha256: str) -> Ranges | None:
        """The sidecar if it can be trusted: it parses, names this sha256, its ranges lie inside its size and
        the part is exactly that size. Anything else is None (the caller discards part and sidecar)."""
        path = sidecar_of(part)
        try:
            rec = json.loads(path.read_text())
            size = rec["size"]
            done = [(int(a), int(b)) for a, b in rec["done"]]
            ok = (rec.get("format") == 1 and rec.get("sha256") == sha256 and isinstance(size, int) and size > 0
                  and all(0 <= a < b <= size for a, b in done) and part.stat().st_size == size)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return cls(part, size, sha256, done) if ok else None


def _insert(done: list[tuple[int, int]], a: int, b: int) -> list[tuple[int, int]]:
    import bisect

    i = bisect.bisect_left(done, (a, b))
    lo = i - 1 if i > 0 and done[i - 1][1] >= a else i
    hi = i
    while hi < len(done) and done[hi][0] <= b:
        hi += 1
    return done[:lo] + merge([*done[lo:hi], (a, b)]) + done[hi:]


def sidecar_of(part: Path) -> Path:
    return part.with_name(part.name + SIDECAR)


def present(part: Path, sha256: str) -> int:
    """Bytes of a file already on disk in its `.part`: the sidecar's ranges, or the length of an appended part."""
    if sidecar_of(part).exists():
        r = Ranges.load(part, sha256)
        return r.covered if r else 0
    try:
        return part.stat().st_size
    except OSError:
        return 0


class Gate:
    """At most `limit` requests at once across all files, none before `not_before`.

    A 429/503 pushes `not_before` to its Retry-After for every request (the server throttles the client), and
    refusals in a row with no success between them lower the limit by one (never below 1); `recover` seconds
    without a refusal give one back at the next success."""

    def __init__(self, limit: int, recover: float = 60.0):
        self.limit = self.start_limit = max(1, limit)
        self.active = 0
        self.peak = 0
        self.not_before = 0.0
        self.refusals = 0
        self.recover = recover
        self.last_refusal = 0.0
        self._cond = threading.Condition()

    def acquire(self, stop: threading.Event) -> bool:
        """Wait for a free connection; False if `stop` was set meanwhile."""
        with self._cond:
            while True:
                if stop.is_set():
                    return False
                wait = self.not_before - time.monotonic()
                if self.active < self.limit and wait <= 0:
                    self.active += 1
                    self.peak = max(self.peak, self.active)
                    return True
                self._cond.wait(min(0.2, wait) if wait > 0 else 0.2)

    def release(self) -> None:
        with self._cond:
            self.active -= 1
            self._cond.notify_all()

    def refused(self, delay: float) -> bool:
        """Hold back every request for `delay` s; True if this lowered the limit."""
        with self._cond:
            now = time.monotonic()
            self.not_before = max(self.not_before, now + delay)
            self.last_refusal = now
            self.refusals += 1
            if self.refusals >= 2 and self.limit > 1:
                self.limit -= 1
                self.refusals = 0
                return True
            return False

    def ok(self) -> None:
        with self._cond:
            self.refusals = 0
            now = time.monotonic()
            if self.limit < self.start_limit and now - self.last_refusal >= self.recover:
                self.limit += 1
                self.last_refusal = now  # one more connection per quiet period
                self._cond.notify_all()


@dataclass(frozen=True)
class Estimate:
    """How long the transfer should take at PhysioNet's per-connection rate, said before it starts."""

    bytes: int
    files: int
    connections: int
    rate: float  # bytes/s per connection
    seconds: float

    def describe(self) -> str:
        from mimiclab.physionet.plan import human

        if self.bytes <= 0:
            return "nothing to fetch"
        return (f"{human(self.bytes)} to fetch in {self.files} file{'s' if self.files != 1 else ''}; at "
                f"~{human(self.rate)}/s per connection (PhysioNet's cap) with {self.connections} "
                f"connection{'s' if self.connections != 1 else ''} that is about {duration(self.seconds)}")


def estimate(todo: list[tuple[int, bool]], connections: int, rate: float = RATE_PER_CONNECTION,
             split: Split | None = None) -> Estimate:
    """todo: (bytes left, splittable) per file. All connections busy until the end, except that a file that
    cannot be split takes at least its own bytes / rate, and a split file keeps one piece per connection."""
    total = sum(n for n, _ in todo)
    conns = max(1, connections)
    seconds = total / (conns * rate) if total else 0.0
    for n, splittable in todo:
        floor = min(n, split.piece) if splittable and split else n
        seconds = max(seconds, floor / rate)
    return Estimate(total, len(todo), conns, rate, seconds)


def duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{max(s, 1)} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min" if m >= 10 else f"{m} min {s} s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m} min"
    return f"{h // 24} days {h % 24} h"
