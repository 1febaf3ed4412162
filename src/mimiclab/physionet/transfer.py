"""Parallel, resumable, verified transfer.

Invariants, whatever happens (Ctrl-C, kill -9, dropped connections, corrupt bytes):
* bytes arrive in `<name>.part`; a file reaches its final path only by os.replace after its sha256 matched;
* a `.part` is only ever appended to from its current length (HTTP Range), so any interruption resumes;
* `.mimiclab-verified.json` remembers (size, mtime, sha256) of verified files so a re-run need not re-hash
  gigabytes; a file whose size or mtime changed is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from mimiclab import checksums
from mimiclab.physionet.errors import (
    AccessDeniedError,
    AuthError,
    ChecksumError,
    DownloadError,
    InsecureAuthError,
    NotFoundError,
    PhysioNetError,
    UnreachableError,
)
from mimiclab.physionet.mirror import CHUNK, RangeNotSatisfiable, TransientError
from mimiclab.physionet.plan import PlannedFile

STATE = ".mimiclab-verified.json"
PART = ".part"
_FATAL = (AuthError, AccessDeniedError, InsecureAuthError)  # stop everything: no file can succeed


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff doubles from `backoff` up to `max_backoff`; `attempts` counts consecutive tries that got the
    partial file no further than before (progress resets it, so a flaky but moving connection is never
    abandoned, and a server that re-sends the same first bytes forever is)."""

    attempts: int = 6
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 120.0

    def delay(self, n: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        d = min(self.backoff * (2 ** (n - 1)), self.max_backoff)
        return d * (0.75 + 0.5 * random.random())


@dataclass(frozen=True)
class Event:
    """Progress report. kind: start | advance | done | skip | retry | fail."""

    kind: str
    path: str
    nbytes: int = 0  # advance: new bytes; start: bytes already present (resumed)
    total: int | None = None
    message: str = ""


Progress = Callable[[Event], None]


def sha256_file(path: Path, chunk: int = CHUNK) -> str:
    return checksums.sha256_file(path, chunk)  # module-level name: tests count the hashing done here


class VerifiedState:
    """Small JSON record of verified files (path -> size, mtime_ns, sha256), rewritten atomically."""

    def __init__(self, dest: Path):
        self.path = dest / STATE
        self._lock = threading.Lock()
        try:
            self.data: dict[str, dict] = json.loads(self.path.read_text()).get("files", {})
        except (OSError, ValueError, AttributeError):
            self.data = {}

    def is_verified(self, rel: str, final: Path, sha: str) -> bool:
        rec = self.data.get(rel)
        if not rec or rec.get("sha256") != sha:
            return False
        try:
            st = final.stat()
        except OSError:
            return False
        return st.st_size == rec.get("size") and st.st_mtime_ns == rec.get("mtime_ns")

    def mark(self, rel: str, final: Path, sha: str) -> None:
        st = final.stat()
        with self._lock:
            self.data[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}
            self._save()

    def forget(self, rel: str) -> None:
        with self._lock:
            if self.data.pop(rel, None) is not None:
                self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{STATE}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps({"files": self.data}, indent=0, sort_keys=True))
        os.replace(tmp, self.path)


@dataclass
class Outcome:
    path: str
    status: str  # fetched | skipped | failed
    bytes: int = 0
    error: str = ""


class Transfer:
    def __init__(self, source, dest: Path, *, jobs: int = 4, progress: Progress | None = None,
                 retry: RetryPolicy | None = None, chunk: int = CHUNK):
        self.source = source
        self.dest = Path(dest)
        self.jobs = max(1, int(jobs))
        self.progress = progress or (lambda e: None)
        self.retry = retry or RetryPolicy()
        self.chunk = chunk
        self.stop = threading.Event()
        self.state = VerifiedState(self.dest)

    # --- public -------------------------------------------------------------------------------------
    def already_verified(self, f: PlannedFile) -> bool:
        """True if the final file is in place and known good (hashing it only if the record is stale)."""
        final = self.dest / f.path
        if not final.is_file():
            self.state.forget(f.path)
            return False
        if self.state.is_verified(f.path, final, f.sha256):
            return True
        # a size that differs fails without hashing the file
        ok = (f.size is None or final.stat().st_size == f.size) and sha256_file(final) == f.sha256
        if ok:
            self.state.mark(f.path, final, f.sha256)
            return True
        # A wrong file at a final path (not written by us, or damaged since): remove it, fetch afresh.
        final.unlink()
        self.state.forget(f.path)
        return False

    def run(self, files: list[PlannedFile]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        todo: list[PlannedFile] = []
        for f in files:
            if self.already_verified(f):
                outcomes.append(Outcome(f.path, "skipped"))
                self.progress(Event("skip", f.path, 0, f.size))
            else:
                todo.append(f)
        if not todo:
            return outcomes
        fatal: BaseException | None = None
        ex = ThreadPoolExecutor(max_workers=min(self.jobs, len(todo)), thread_name_prefix="mimiclab-dl")
        try:
            pending = {ex.submit(self._one, f): f for f in todo}
            while pending:
                # a timeout keeps the main thread responsive to Ctrl-C
                done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for fut in done:
                    f = pending.pop(fut)
                    try:
                        outcomes.append(fut.result())
                    except _FATAL as exc:
                        fatal = fatal or exc
                        self.stop.set()
                    except _Stopped:
                        outcomes.append(Outcome(f.path, "failed", error="stopped"))
                    except (PhysioNetError, OSError) as exc:
                        msg = str(exc) if isinstance(exc, PhysioNetError) else _os_message(exc)
                        outcomes.append(Outcome(f.path, "failed", error=msg))
                        self.progress(Event("fail", f.path, message=msg))
        except BaseException:
            self.stop.set()  # workers see it at the next chunk and leave their .part files resumable
            ex.shutdown(wait=True, cancel_futures=True)
            raise
        ex.shutdown(wait=True)
        if fatal is not None:
            raise fatal
        failed = {o.path: o.error for o in outcomes if o.status == "failed"}
        if failed:
            lines = "\n".join(f"  {p}: {e}" for p, e in failed.items())
            raise DownloadError(
                f"{len(failed)} of {len(files)} files failed:\n{lines}\n"
                "Files already verified are in place and partial files are kept; run the same command again to resume.",
                failed,
            )
        return outcomes

    # --- one file -----------------------------------------------------------------------------------
    def _one(self, f: PlannedFile) -> Outcome:
        final = self.dest / f.path
        part = final.with_name(final.name + PART)
        final.parent.mkdir(parents=True, exist_ok=True)
        moved = 0
        mismatches = 0
        # Progress is a new high-water mark of the part file, not bytes moved: a server that ignores Range and
        # drops at the same byte moves bytes on every attempt without ever getting further.
        best = part.stat().st_size if part.exists() else 0
        idle = 0  # consecutive attempts that got no further than `best`
        while True:
            if self.stop.is_set():
                raise _Stopped()
            try:
                got, digest = self._fetch(f, part)
                moved += got
            except TransientError as exc:
                moved += getattr(exc, "moved", 0)
                if getattr(exc, "digest", None) == f.sha256:
                    # the server announced more bytes than the file has; what came is the whole, verified file
                    digest = f.sha256
                else:
                    reached = getattr(exc, "reached", 0)
                    idle = 0 if reached > best else idle + 1
                    best = max(best, reached)
                    if idle >= self.retry.attempts:
                        raise UnreachableError(
                            f"gave up after {idle} attempts without progress (stuck at byte {best}): {exc}") from None
                    delay = self.retry.delay(max(idle, 1), exc.retry_after)
                    self.progress(Event("retry", f.path, message=f"{exc}; retrying in {delay:.1f} s"))
                    if self.stop.wait(delay):
                        raise _Stopped() from None
                    continue
            except NotFoundError as exc:
                raise NotFoundError(f"{f.path}: listed in SHA256SUMS.txt but not available: {exc}") from None
            if digest == f.sha256:
                os.replace(part, final)
                self.state.mark(f.path, final, f.sha256)
                self.progress(Event("done", f.path, 0, f.size))
                return Outcome(f.path, "fetched", moved)
            # wrong bytes: never let them reach the final path; start over once
            part.unlink(missing_ok=True)
            best = 0
            mismatches += 1
            if mismatches >= 2:
                raise ChecksumError(
                    f"{f.path}: checksum mismatch twice (expected {f.sha256[:12]}…, got {digest[:12]}…); "
                    "the source may be damaged or a proxy alters the file. Partial data removed."
                )
            self.progress(Event("retry", f.path, message="checksum mismatch; downloading the file again"))

    def _fetch(self, f: PlannedFile, part: Path) -> tuple[int, str]:
        """Append to `part` from its current length; return (bytes moved, sha256 of the whole part).

        A TransientError leaving here carries `moved`, `reached` (the part's length) and, when the whole part
        was hashed, `digest`, and says what the server did (announced length, Range ignored or answered wrong)."""
        offset = part.stat().st_size if part.exists() else 0
        if f.size is not None and offset > f.size:
            part.unlink()
            offset = 0
        asked = offset
        moved = 0
        h = hashlib.sha256()
        hashed = False  # h covers the whole part (prefix included)
        ignored = False
        total = None
        try:
            with self.source.stream(f.path, offset, self.chunk) as s:
                if s.start != offset and s.start != 0:
                    raise TransientError(f"asked the server for bytes={offset}- and it answered with "
                                         f"bytes {s.start}-; nothing of that answer was written")
                if s.start != offset:  # server ignored Range: start over
                    ignored, offset, mode = True, 0, "wb"
                else:
                    mode = "ab"
                    if offset:
                        _hash_prefix(h, part, offset, self.chunk)
                hashed = True
                total = s.total if s.total is not None else f.size
                self.progress(Event("start", f.path, offset, total))
                with open(part, mode, buffering=0) as out:
                    for b in s.chunks:
                        out.write(b)
                        h.update(b)
                        moved += len(b)
                        self.progress(Event("advance", f.path, len(b), total))
                        if self.stop.is_set():
                            raise _Stopped()
            if total is not None and offset + moved < total:  # body ended early without an error
                raise TransientError(f"connection closed at byte {offset + moved} of {total}")
        except RangeNotSatisfiable:
            # the part already holds at least the whole file: judge it by its checksum
            return 0, sha256_file(part)
        except TransientError as exc:
            reached = offset + moved
            if hashed and total is not None and reached < total:
                what = (f"the server announced {total} bytes and the connection ended at byte {reached}"
                        + (f" (it ignored the Range request for bytes={asked}- and sent the file from byte 0)"
                           if ignored else ""))
                err = TransientError(what, exc.retry_after)
            else:
                err = exc
            err.moved = moved  # type: ignore[attr-defined]
            err.reached = reached if hashed else offset  # type: ignore[attr-defined]
            err.digest = h.hexdigest() if hashed else None  # type: ignore[attr-defined]
            raise err from None
        return moved, h.hexdigest()


def _hash_prefix(h, part: Path, n: int, chunk: int) -> None:
    with open(part, "rb") as fh:
        left = n
        while left > 0:
            b = fh.read(min(chunk, left))
            if not b:
                break
            h.update(b)
            left -= len(b)


def _os_message(exc: OSError) -> str:
    """A disk-side failure (no space, a file where a folder must go, permissions) as one line naming the path."""
    where = f" at {exc.filename}" if exc.filename else ""
    return f"cannot write{where}: {exc.strerror or exc}"


class _Stopped(Exception):
    """The transfer was asked to stop (Ctrl-C or a fatal error in another worker)."""
