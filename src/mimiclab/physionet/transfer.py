"""Parallel, resumable, verified transfer under one connection cap shared by all files.

Invariants, whatever happens (Ctrl-C, kill -9, dropped connections, corrupt bytes, 429/503):
* bytes arrive in `<name>.part`; a file reaches its final path only by os.replace after its sha256 matched;
* a one-stream `.part` is only ever appended to from its current length (HTTP Range); a ranged `.part` is
  written in place and its `.part.ranges` sidecar lists only bytes already written, so any interruption resumes;
* never more than `connections` requests at once; a 429/503's Retry-After holds back every request;
* `.mimiclab-verified.json` remembers (size, mtime, sha256) of verified files so a re-run need not re-hash
  gigabytes; a file whose size or mtime changed is hashed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable
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
from mimiclab.physionet.ranges import CONNECTIONS, Gate, Ranges, Split, merge, sidecar_of

STATE = ".mimiclab-verified.json"
PART = ".part"
_FATAL = (AuthError, AccessDeniedError, InsecureAuthError)  # stop everything: no file can succeed
DEFAULT_SPLIT = Split()


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
    """Progress report. kind: start | advance | done | skip | retry | wait | fail.

    retry: the file starts again (its bytes so far no longer count; a new start follows, or resumes from
    nbytes); wait: one range of a ranged file failed and waits for its retry, the bytes written still count."""

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


UNKNOWN = 1 << 62  # end of a file whose size the first answer tells
SAVE_EVERY = 0.25  # seconds between sidecar rewrites of one file (a kill loses at most this much progress)


@dataclass(eq=False)
class _Seg:
    """Bytes [pos, end) one connection is fetching. Another connection may take over the part from
    max(req_end, middle) on (end shrinks); bytes below req_end are asked for already and stay here."""

    pos: int
    end: int
    req_end: int = 0
    asked_at: float = 0.0


class _Ranged:
    """A file fetched as byte ranges: its sidecar, the ranges nobody fetches, the segments in flight."""

    def __init__(self, f: PlannedFile, part: Path):
        self.f = f
        self.part = part
        self.ranges: Ranges | None = None  # known once the size is (sidecar or first answer)
        self.pending: list[tuple[int, int]] = []
        self.active: set[_Seg] = set()
        self.ranges_ok: bool | None = None  # did the server answer a Range request with 206?
        self.ready = False
        self.closed = False  # verifying, verified, failed or stopped: no new requests
        self.over = False  # verified or failed: the sidecar is not rewritten any more
        self.not_before = 0.0
        self.failed_at = 0.0
        self.idle = 0
        self.best = 0
        self.moved = 0
        self.mismatches = 0
        self.saved_at = 0.0
        self.fresh_hash()

    def fresh_hash(self) -> None:
        """sha256 of the file's first `hashed` bytes, fed as they arrive when they extend that prefix, else read
        back from the part by one worker at a time (`catching`); the rest at the end. `gen` tells a reader that
        the file was started again meanwhile."""
        self.h = hashlib.sha256()
        self.hashed = 0
        self.catching = False
        self.gen = getattr(self, "gen", 0) + 1

    def prefix(self) -> int:
        """Length of the written prefix [0, n)."""
        done = self.ranges.done if self.ranges else []
        return done[0][1] if done and done[0][0] == 0 else 0

    @property
    def size(self) -> int | None:
        return self.ranges.size if self.ranges else self.f.size


class _Fallback(Exception):
    """The server answered a Range request with the whole file: fetch this file as one stream."""


class _Restart(Exception):
    """The partial file does not fit the file the server has (another size): start it again."""


class Transfer:
    """Files fetched over at most `connections` requests at once, one cap shared by all files.

    Small files (and any file from a local folder) are one stream each, appended to `.part` from its length.
    A large file from a server is fetched as byte ranges on several connections, each written into its place
    of a preallocated `.part`, with the `.part.ranges` sidecar recording what is written; an idle connection
    takes over half of the bytes another one has not asked for yet, so all connections stay busy to the end.
    Files go largest first, so the small ones fill the connections at the end. `jobs` is the former name of
    `connections`."""

    def __init__(self, source, dest: Path, *, connections: int = CONNECTIONS, jobs: int | None = None,
                 progress: Progress | None = None, retry: RetryPolicy | None = None, chunk: int = CHUNK,
                 split: Split | None = DEFAULT_SPLIT):
        self.source = source
        self.dest = Path(dest)
        self.connections = max(1, int(jobs if jobs is not None else connections))
        self.jobs = self.connections
        self.progress = progress or (lambda e: None)
        self.retry = retry or RetryPolicy()
        self.chunk = chunk
        self.split = split
        self.stop = threading.Event()
        self.state = VerifiedState(self.dest)
        self.gate = Gate(self.connections)
        self._cond = threading.Condition()
        self._queue: deque[PlannedFile] = deque()
        self._ranged: list[_Ranged] = []
        self._busy = 0
        self._outcomes: list[Outcome] = []
        self._reported: set[str] = set()
        self._fatal: BaseException | None = None
        self._crash: BaseException | None = None
        self._no_ranges = False  # the server ignored a Range request: no more ranged files

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
        ok = (f.size is None or f.approx or final.stat().st_size == f.size) and sha256_file(final) == f.sha256
        if ok:
            self.state.mark(f.path, final, f.sha256)
            return True
        # A wrong file at a final path (not written by us, or damaged since): remove it, fetch afresh.
        final.unlink()
        self.state.forget(f.path)
        return False

    def ranged(self, f: PlannedFile) -> bool:
        """Will this file be fetched as byte ranges (else as one stream)?"""
        if self.split is None or f.size is None or self._no_ranges:
            return False
        final = self.dest / f.path
        if sidecar_of(final.with_name(final.name + PART)).exists():
            return True  # resume the way it was started
        return bool(getattr(self.source, "remote", False)) and f.size >= self.split.min_file

    def run(self, files: list[PlannedFile]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        todo: list[PlannedFile] = []
        for f in files:
            if self.already_verified(f):
                outcomes.append(Outcome(f.path, "skipped"))
                final = self.dest / f.path
                sidecar_of(final.with_name(final.name + PART)).unlink(missing_ok=True)  # left by a kill at the end
                self.progress(Event("skip", f.path, 0, f.size))
            else:
                todo.append(f)
        if not todo:
            return outcomes
        # largest first: the small files fill the connections at the end, so they all end together
        self._queue = deque(sorted(todo, key=lambda f: -(f.size or 0)))
        workers = [threading.Thread(target=self._worker, name=f"mimiclab-dl-{i}", daemon=True)
                   for i in range(self.connections)]
        for w in workers:
            w.start()
        try:
            for w in workers:
                while w.is_alive():
                    w.join(0.2)  # a timeout keeps the main thread responsive to Ctrl-C
        except BaseException:
            self.stop.set()  # workers see it at the next chunk and leave their .part files resumable
            for w in workers:
                w.join()
            raise
        finally:
            self._save_all()
        if self._crash is not None:
            raise self._crash
        if self._fatal is not None:
            raise self._fatal
        for f in todo:
            if f.path not in self._reported:
                self._outcomes.append(Outcome(f.path, "failed", error="stopped"))
        outcomes += self._outcomes
        failed = {o.path: o.error for o in outcomes if o.status == "failed"}
        if failed:
            lines = "\n".join(f"  {p}: {e}" for p, e in failed.items())
            raise DownloadError(
                f"{len(failed)} of {len(files)} files failed:\n{lines}\n"
                "Files already verified are in place and partial files are kept; run the same command again to resume.",
                failed,
            )
        return outcomes

    # --- scheduling ---------------------------------------------------------------------------------
    def _worker(self) -> None:
        try:
            while True:
                task = self._next()
                if task is None:
                    return
                kind, obj, seg = task
                try:
                    if kind == "file":
                        assert isinstance(obj, PlannedFile)
                        self._whole(obj)
                    elif kind == "init":
                        assert isinstance(obj, _Ranged)
                        self._init(obj)
                    else:
                        assert isinstance(obj, _Ranged) and seg is not None
                        self._piece(obj, seg)
                finally:
                    with self._cond:
                        self._busy -= 1
                        self._cond.notify_all()
        except BaseException as exc:  # KeyboardInterrupt raised by a progress sink, a bug: stop everything
            with self._cond:
                self._crash = self._crash or exc
            self.stop.set()

    def _next(self) -> tuple[str, PlannedFile | _Ranged, _Seg | None] | None:
        with self._cond:
            while not self.stop.is_set():
                task = self._pick(time.monotonic())
                if task is not None:
                    self._busy += 1
                    return task
                if self._busy == 0 and not any(rf.pending for rf in self._ranged if not rf.closed):
                    return None
                self._cond.wait(0.1)  # in flight: a retry or a range to take over may come
            return None

    def _pick(self, now: float) -> tuple[str, PlannedFile | _Ranged, _Seg | None] | None:
        # 1. ranges of started files that nobody fetches (resumed gaps, retries after their backoff)
        for rf in self._ranged:
            if rf.closed or not rf.ready or not rf.pending or rf.not_before > now:
                continue
            if rf.ranges_ok is not True and rf.active:
                continue  # one request until the server has shown that it honours ranges
            a, b = rf.pending.pop(0)
            seg = _Seg(a, b)
            rf.active.add(seg)
            return "piece", rf, seg
        # 2. the next file
        if self._queue:
            f = self._queue.popleft()
            if self.ranged(f):
                final = self.dest / f.path
                rf = _Ranged(f, final.with_name(final.name + PART))
                self._ranged.append(rf)
                return "init", rf, None
            return "file", f, None
        # 3. take over half of the largest share not yet asked for
        if self.split is None:
            return None
        best: tuple[int, _Ranged, _Seg, int] | None = None
        for rf in self._ranged:
            if rf.closed or rf.ranges_ok is not True or rf.ranges is None:
                continue  # the size is known (every segment's end is real) and the server honours ranges
            for seg in rf.active:
                cut = max(seg.req_end, seg.pos, (seg.pos + seg.end) // 2)
                take = seg.end - cut
                if take >= self.split.min_steal and (best is None or take > best[0]):
                    best = (take, rf, seg, cut)
        if best is None:
            return None
        _, rf, seg, cut = best
        new = _Seg(cut, seg.end)
        seg.end = cut
        rf.active.add(new)
        return "piece", rf, new

    def _report(self, out: Outcome) -> None:
        with self._cond:
            if out.path in self._reported:
                return
            self._reported.add(out.path)
            self._outcomes.append(out)

    def _save_all(self) -> None:
        with self._cond:
            for rf in self._ranged:
                if rf.ranges is not None and not rf.over:
                    with contextlib.suppress(OSError):
                        rf.ranges.save()

    # --- a file as one stream -----------------------------------------------------------------------
    def _whole(self, f: PlannedFile) -> None:
        try:
            out = self._one(f)
        except _FATAL as exc:
            self._fatal = self._fatal or exc
            self.stop.set()
            return
        except _Stopped:
            out = Outcome(f.path, "failed", error="stopped")
        except (PhysioNetError, OSError) as exc:
            msg = str(exc) if isinstance(exc, PhysioNetError) else _os_message(exc)
            out = Outcome(f.path, "failed", error=msg)
            self.progress(Event("fail", f.path, message=msg))
        self._report(out)

    # --- a file as byte ranges ----------------------------------------------------------------------
    def _init(self, rf: _Ranged) -> None:
        """Resume from a trusted sidecar, adopt a part appended by the one-stream path, or start afresh."""
        f = rf.f
        try:
            rf.part.parent.mkdir(parents=True, exist_ok=True)
            r = Ranges.load(rf.part, f.sha256)
            side = sidecar_of(rf.part)
            if r is None and side.exists():  # does not parse or does not match its part: never trusted
                side.unlink()
                rf.part.unlink(missing_ok=True)
            elif r is None and rf.part.exists():
                n = rf.part.stat().st_size  # an appended part holds the file's first n bytes
                if f.size is not None and not f.approx and 0 < n < f.size:
                    r = Ranges(rf.part, f.size, f.sha256, [(0, n)])
                    r.save()
                    os.truncate(rf.part, f.size)
                else:
                    rf.part.unlink()
        except OSError as exc:
            with self._cond:
                rf.closed = rf.over = rf.ready = True
            msg = _os_message(exc)
            self._report(Outcome(f.path, "failed", error=msg))
            self.progress(Event("fail", f.path, message=msg))
            return
        self.progress(Event("start", f.path, r.covered if r else 0, r.size if r else f.size))
        with self._cond:
            rf.ranges = r
            rf.pending = r.missing() if r else [(0, UNKNOWN)]
            rf.best = r.covered if r else 0
            rf.ready = True
            complete = not rf.pending
            rf.closed = complete
            self._cond.notify_all()
        if complete:
            self._finish(rf)

    def _piece(self, rf: _Ranged, seg: _Seg) -> None:
        piece = (self.split or DEFAULT_SPLIT).piece
        try:
            while True:
                with self._cond:
                    if rf.closed or self.stop.is_set():
                        raise _Stopped()
                    if seg.pos >= seg.end:
                        break
                    req_end = seg.end if rf.ranges_ok is False else min(seg.end, seg.pos + piece)
                    seg.req_end = req_end
                if not self.gate.acquire(self.stop):
                    raise _Stopped()
                try:
                    seg.asked_at = time.monotonic()
                    self._request(rf, seg, req_end)
                except TransientError as exc:
                    self._refused(exc, rf.idle, rf.f.path)  # before this connection is free for another request
                    raise
                finally:
                    self.gate.release()
                self.gate.ok()
        except TransientError as exc:
            self._piece_failed(rf, seg, exc)
            return
        except _Stopped:
            with self._cond:
                rf.active.discard(seg)
                if seg.pos < seg.end and not rf.closed:
                    rf.pending = merge([*rf.pending, (seg.pos, seg.end)])
            return
        except _Fallback:
            self._fall_back(rf)
            return
        except _Restart as exc:
            self._restart(rf, str(exc), mismatch=False)
            return
        except NotFoundError as exc:
            self._file_failed(rf, NotFoundError(f"{rf.f.path}: listed in SHA256SUMS.txt but not available: {exc}"))
            return
        except _FATAL as exc:
            self._fatal = self._fatal or exc
            self.stop.set()
            return
        except (PhysioNetError, OSError) as exc:
            self._file_failed(rf, exc)
            return
        with self._cond:
            rf.active.discard(seg)
            last = (not rf.closed and not rf.active and not rf.pending and rf.ranges is not None
                    and not rf.ranges.missing())
            if last:
                rf.closed = True
        if last:
            self._finish(rf)

    def _request(self, rf: _Ranged, seg: _Seg, req_end: int) -> None:
        """One ranged GET for [seg.pos, req_end), written into place; advances seg.pos and the sidecar."""
        f = rf.f
        with self.source.stream(f.path, seg.pos, self.chunk, end=req_end) as s:
            if not s.ranged:
                if rf.ranges_ok:
                    raise TransientError(f"the server answered a request for bytes={seg.pos}-{req_end - 1} with "
                                         "the whole file; nothing of that answer was written")
                raise _Fallback()
            if s.start != seg.pos:
                raise TransientError(f"asked the server for bytes={seg.pos}-{req_end - 1} and it answered with "
                                     f"bytes {s.start}-; nothing of that answer was written")
            if s.total is None:
                raise TransientError(f"the answer for bytes={seg.pos}-{req_end - 1} did not say the file's size")
            if rf.ranges is None:  # the first answer: now the exact size is known (the catalog's may be rounded)
                r = Ranges(rf.part, s.total, f.sha256)
                r.save()  # sidecar first: a part without its sidecar is never mistaken for a good prefix
                with open(rf.part, "wb") as fh:
                    fh.truncate(s.total)  # sparse: each range is written into its place
                with self._cond:
                    rf.ranges = r
                    seg.end = min(seg.end, s.total)
                    req_end = seg.req_end = min(req_end, s.total)
                if s.total != f.size and f.size is not None:
                    self.progress(Event("start", f.path, 0, s.total))  # the exact size for the progress bar
            elif s.total != rf.ranges.size:
                msg = (f"the server says {f.path} has {s.total} bytes; the partial download was for "
                       f"{rf.ranges.size}")
                if rf.ranges_ok:
                    raise TransientError(msg)
                raise _Restart(msg + ": starting it again")
            if rf.ranges_ok is None:
                with self._cond:
                    rf.ranges_ok = True
                    self._cond.notify_all()  # idle connections may now take over parts of this file
            fd = os.open(rf.part, os.O_WRONLY)
            try:
                for b in s.chunks:
                    n = min(len(b), req_end - seg.pos)
                    if n > 0:
                        _pwrite_all(fd, b, n, seg.pos)
                        self._advance(rf, seg, b, n)
                    if seg.pos >= req_end:
                        break
                    if self.stop.is_set() or rf.closed:
                        raise _Stopped()
            finally:
                os.close(fd)
        if seg.pos < req_end:
            raise TransientError(f"connection closed at byte {seg.pos} (asked for up to byte {req_end - 1})")

    def _advance(self, rf: _Ranged, seg: _Seg, data: bytes, n: int) -> None:
        assert rf.ranges is not None
        with self._cond:
            a = seg.pos
            rf.ranges.add(a, a + n)
            seg.pos += n
            rf.moved += n
            # `catching` is the token for feeding rf.h: hashing runs outside the lock, so connections writing
            # other files (or other parts of this one) never wait for it
            mine = a == rf.hashed and not rf.catching
            claim = mine or (not rf.catching and rf.hashed < rf.prefix())
            rf.catching = rf.catching or claim
            gen, h = rf.gen, rf.h
            now = time.monotonic()
            if now - rf.saved_at >= SAVE_EVERY:
                rf.ranges.save()
                rf.saved_at = now
        self.progress(Event("advance", rf.f.path, n, rf.ranges.size))
        if mine:
            h.update(memoryview(data)[:n])
            with self._cond:
                if rf.gen != gen:
                    return
                rf.hashed = a + n
                if rf.hashed >= rf.prefix():  # nothing written beyond: hand the token back
                    rf.catching = claim = False
        if claim:
            self._catch_up(rf, gen)

    def _catch_up(self, rf: _Ranged, gen: int) -> None:
        """Holding the token: hash, from the part, what other connections wrote that now extends the hashed
        prefix; then hand the token back."""
        h = rf.h
        try:
            # pread on an unbuffered fd: a buffered reader reads ahead past `stop` into bytes not written yet
            # (zeros of the sparse part) and a later seek inside its buffer would hash those stale zeros
            fd = os.open(rf.part, os.O_RDONLY)
            try:
                while True:
                    with self._cond:
                        start, stop = rf.hashed, rf.prefix()
                        if rf.gen != gen or start >= stop or rf.closed:
                            return
                    b = os.pread(fd, min(self.chunk, stop - start), start)
                    if not b:
                        return
                    h.update(b)
                    with self._cond:
                        if rf.gen != gen:
                            return
                        rf.hashed += len(b)
            finally:
                os.close(fd)
        except OSError:
            pass  # the rest is hashed at the end
        finally:
            with self._cond:
                if rf.gen == gen:
                    rf.catching = False

    def _digest(self, rf: _Ranged) -> str:
        """sha256 of the whole part: the prefix hashed on the way, the rest read back now."""
        h, n = rf.h.copy(), rf.hashed
        with open(rf.part, "rb") as fh:
            fh.seek(n)
            for b in iter(lambda: fh.read(CHUNK), b""):
                h.update(b)
        return h.hexdigest()

    def _refused(self, exc: TransientError, idle: int, path: str) -> None:
        """A 429/503 holds back every request, for its Retry-After or else the backoff."""
        if exc.status in (429, 503) and self.gate.refused(self.retry.delay(max(idle, 1), exc.retry_after)):
            self.progress(Event("wait", path, message=f"the server keeps refusing (HTTP {exc.status}): "
                                                      f"{self.gate.limit} connection(s) at once from now on"))

    def _piece_failed(self, rf: _Ranged, seg: _Seg, exc: TransientError) -> None:
        with self._cond:
            rf.active.discard(seg)
            if seg.pos < seg.end:
                rf.pending = merge([*rf.pending, (seg.pos, seg.end)])
            covered = rf.ranges.covered if rf.ranges else 0
            if covered > rf.best:
                rf.best, rf.idle = covered, 0
            elif seg.asked_at >= rf.failed_at:  # asked after the last failure: a retry that got nowhere
                rf.idle += 1
            rf.failed_at = time.monotonic()
            delay = self.retry.delay(max(rf.idle, 1), exc.retry_after)
            rf.not_before = max(rf.not_before, rf.failed_at + delay)
            give_up = rf.idle >= self.retry.attempts
            if rf.ranges is not None:
                with contextlib.suppress(OSError):
                    rf.ranges.save()
            self._cond.notify_all()
        if give_up:
            self._file_failed(rf, UnreachableError(
                f"gave up after {rf.idle} attempts without progress ({covered} of {rf.size} bytes): {exc}"))
        else:
            self.progress(Event("wait", rf.f.path, message=f"{exc}; retrying in {delay:.1f} s"))

    def _file_failed(self, rf: _Ranged, exc: BaseException) -> None:
        with self._cond:
            rf.closed = True
            rf.pending = []
            if rf.ranges is not None and not rf.over:
                with contextlib.suppress(OSError):
                    rf.ranges.save()  # resumable next run
            rf.over = True
        msg = str(exc) if isinstance(exc, PhysioNetError) else _os_message(exc)  # type: ignore[arg-type]
        self._report(Outcome(rf.f.path, "failed", rf.moved, msg))
        self.progress(Event("fail", rf.f.path, message=msg))

    def _fall_back(self, rf: _Ranged) -> None:
        """No ranges from this server: this file (and the next ones) as one stream, from byte 0."""
        with self._cond:
            self._no_ranges = True
            rf.closed = rf.over = True
            rf.pending = []
        with contextlib.suppress(OSError):
            sidecar_of(rf.part).unlink(missing_ok=True)
            rf.part.unlink(missing_ok=True)
        self.progress(Event("retry", rf.f.path, message="the server does not answer byte ranges; one stream"))
        self._whole(rf.f)

    def _restart(self, rf: _Ranged, why: str, mismatch: bool) -> None:
        """Discard the part and fetch the file again from nothing (the server's file differs from the part)."""
        with self._cond:
            rf.active.clear()
            rf.pending = []
            rf.closed = True
            if mismatch:
                rf.mismatches += 1
            else:
                rf.idle += 1
            fail = rf.mismatches >= 2 or rf.idle >= self.retry.attempts
        sidecar_of(rf.part).unlink(missing_ok=True)
        rf.part.unlink(missing_ok=True)
        if fail:
            rf.over = True
            self._file_failed(rf, ChecksumError(why) if mismatch else UnreachableError(why))
            return
        self.progress(Event("retry", rf.f.path, message=why))
        self.progress(Event("start", rf.f.path, 0, rf.f.size))
        with self._cond:
            rf.ranges = None
            rf.pending = [(0, UNKNOWN)]
            rf.best = 0
            rf.fresh_hash()
            rf.closed = False
            self._cond.notify_all()

    def _finish(self, rf: _Ranged) -> None:
        """All ranges written: the file reaches its final name only if its sha256 matches."""
        f = rf.f
        try:
            digest = self._digest(rf)
            if digest == f.sha256:
                final = self.dest / f.path
                os.replace(rf.part, final)
                rf.over = True
                sidecar_of(rf.part).unlink(missing_ok=True)
                self.state.mark(f.path, final, f.sha256)
                self.progress(Event("done", f.path, 0, rf.size))
                self._report(Outcome(f.path, "fetched", rf.moved))
                return
        except OSError as exc:
            self._file_failed(rf, exc)
            return
        # wrong bytes: never at the final path; all of it again once (which range was wrong is unknowable)
        self._restart(rf, f"{f.path}: checksum mismatch twice (expected {f.sha256[:12]}…, got {digest[:12]}…); "
                          "the source may be damaged or a proxy alters the file. Partial data removed."
                      if rf.mismatches >= 1 else "checksum mismatch; downloading the file again", mismatch=True)

    # --- one file -----------------------------------------------------------------------------------
    def _one(self, f: PlannedFile) -> Outcome:
        final = self.dest / f.path
        part = final.with_name(final.name + PART)
        final.parent.mkdir(parents=True, exist_ok=True)
        moved = 0
        mismatches = 0
        # Progress is a new high-water mark of the part file, not bytes moved: a server that ignores Range and
        # drops at the same byte moves bytes on every attempt without ever getting further.
        if sidecar_of(part).exists():  # a ranged part (sparse): not a prefix to append to
            sidecar_of(part).unlink()
            part.unlink(missing_ok=True)
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
        if f.size is not None and not f.approx and offset > f.size:
            part.unlink()
            offset = 0
        asked = offset
        moved = 0
        h = hashlib.sha256()
        hashed = False  # h covers the whole part (prefix included)
        ignored = False
        total = None
        if not self.gate.acquire(self.stop):
            raise _Stopped()
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
            self._refused(exc, 0, f.path)
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
        finally:
            self.gate.release()
        self.gate.ok()
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


def _pwrite_all(fd: int, data: bytes, n: int, pos: int) -> None:
    view = memoryview(data)[:n]
    while view:
        w = os.pwrite(fd, view, pos)
        view, pos = view[w:], pos + w


def _os_message(exc: OSError) -> str:
    """A disk-side failure (no space, a file where a folder must go, permissions) as one line naming the path."""
    where = f" at {exc.filename}" if exc.filename else ""
    return f"cannot write{where}: {exc.strerror or exc}"


class _Stopped(Exception):
    """The transfer was asked to stop (Ctrl-C or a fatal error in another worker)."""
