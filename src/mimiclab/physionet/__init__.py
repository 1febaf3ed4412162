"""PhysioNet access and downloads: the layer between "use MIMIC" and raw files on disk.

Public entry points (the CLI, `mimiclab demo` and the web UI call these):

    download(slug, version=None, modules=None, tables=None, dest=None, jobs=None, mirror=None,
             dry_run=False, progress=True, *, connections=8, split=Split(), on_estimate=None) -> DownloadResult
    reachable(mirror=None, timeout=3.0) -> bool
    check_access(slug, version=None, credentials=None, mirror=None) -> AccessStatus
    guide(slug, version=None) -> str
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from mimiclab import config
from mimiclab.physionet import credentials
from mimiclab.physionet import mirror as mirror_mod
from mimiclab.physionet.access import AccessStatus, check_access, check_all, guide
from mimiclab.physionet.client import make_client, user_agent
from mimiclab.physionet.credentials import Credentials
from mimiclab.physionet.errors import (
    AccessDeniedError,
    AuthError,
    ChecksumError,
    CredentialsError,
    DownloadError,
    InsecureAuthError,
    InsufficientSpaceError,
    NotFoundError,
    PhysioNetError,
    UnreachableError,
)
from mimiclab.physionet.plan import SUMS, Plan, PlannedFile, check_space, fill_sizes, lookup, parse_sums, select
from mimiclab.physionet.ranges import CONNECTIONS, RATE_PER_CONNECTION, Estimate, Split, estimate, present
from mimiclab.physionet.transfer import DEFAULT_SPLIT, PART, Event, RetryPolicy, Transfer

__all__ = [
    "AccessDeniedError", "AccessStatus", "AuthError", "ChecksumError", "Credentials", "CredentialsError",
    "DownloadError", "DownloadResult", "Estimate", "Event", "InsecureAuthError", "InsufficientSpaceError", "NotFoundError",
    "PhysioNetError", "Plan", "PlannedFile", "RetryPolicy", "Split", "UnreachableError", "check_access", "check_all",
    "credentials", "download", "guide", "plan_download", "reachable", "user_agent",
]


@dataclass
class DownloadResult:
    slug: str
    version: str
    dest: Path
    source: str
    planned: list[PlannedFile]
    fetched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_transferred: int = 0
    dry_run: bool = False

    @property
    def total_bytes(self) -> int:
        return sum(f.size or 0 for f in self.planned)

    @property
    def up_to_date(self) -> bool:
        """Everything was already present and verified: nothing was transferred."""
        return not self.dry_run and not self.fetched


def _split(v: list[str] | str | None) -> list[str] | None:
    if v is None:
        return None
    items = v.split(",") if isinstance(v, str) else [x for part in v for x in str(part).split(",")]
    items = [x.strip() for x in items if x.strip()]
    return items or None


@contextlib.contextmanager
def _source(slug: str, version: str, mirror, credentials_: Credentials | None, jobs: int,
            trace: Callable[[str], None] | None, timeout: float, send_auth: bool):
    base, url_login = mirror_mod.resolve_with_login(mirror)
    if not isinstance(base, str):
        yield mirror_mod.LocalSource(base, slug, version)
        return
    c = credentials_ or url_login or credentials.load(httpx.URL(base).host)
    with make_client(c, timeout=timeout, jobs=jobs, trace=trace, preemptive=send_auth) as client:
        yield mirror_mod.RemoteSource(base, slug, version, client)


def _read_sums(src, dest: Path) -> bytes:
    """SHA256SUMS.txt: a published version never changes, so a copy already at dest is used as is."""
    local = dest / SUMS
    if local.is_file():
        data = local.read_bytes()
        try:
            parse_sums(data, str(local))
            return data
        except PhysioNetError:
            pass  # damaged local copy: fetch again
    attempts = 0
    while True:
        try:
            return src.read(SUMS)
        except mirror_mod.TransientError as exc:
            attempts += 1
            if attempts >= 4:
                raise UnreachableError(f"could not fetch {SUMS} from {src.label}: {exc}") from None
            import time

            time.sleep(exc.retry_after if exc.retry_after is not None and exc.retry_after < 30 else 0.5 * 2 ** attempts)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + PART)
    tmp.write_bytes(data)
    os.replace(tmp, path)


def plan_download(slug: str, version: str | None = None, modules=None, tables=None, dest=None, *, mirror=None,
                  jobs: int = 4, credentials_: Credentials | None = None, _src=None) -> Plan:
    """The plan alone (what download(dry_run=True) prints)."""
    ds, version = lookup(slug, version)
    dest = Path(dest).expanduser() if dest else config.raw_dir(slug, version)
    if _src is None:
        with _source(slug, version, mirror, credentials_, jobs, None, 30.0, ds is None or ds.access != "open") as src:
            return plan_download(slug, version, modules, tables, dest, mirror=mirror, jobs=jobs, _src=src)
    src = _src
    sums_bytes = _read_sums(src, dest)
    sums = parse_sums(sums_bytes, f"{src.label}{SUMS}")
    paths = select(sums, ds, version, _split(modules), _split(tables))
    files = fill_sizes([PlannedFile(p, sums[p]) for p in paths], ds, version, src.size, jobs)
    plan = Plan(slug, version, dest, files, src.label, sums_bytes)
    unknown = [f.path for f in files if f.size is None]
    if unknown:
        plan.notes.append(f"size unknown for {len(unknown)} file(s); total is a lower bound")
    return plan


def download(
    slug: str,
    version: str | None = None,
    modules: list[str] | str | None = None,
    tables: list[str] | str | None = None,
    dest: str | os.PathLike | None = None,
    jobs: int | None = None,
    mirror: str | os.PathLike | None = None,
    dry_run: bool = False,
    progress: bool | Callable[[Event], None] = True,
    *,
    connections: int = CONNECTIONS,
    split: Split | None = DEFAULT_SPLIT,
    rate_estimate: float = RATE_PER_CONNECTION,
    on_estimate: Callable[[Estimate], None] | None = None,
    credentials_: Credentials | None = None,
    retry: RetryPolicy | None = None,
    trace: Callable[[str], None] | None = None,
    timeout: float = 30.0,
    on_plan: Callable[[Plan], None] | None = None,
) -> DownloadResult:
    """Fetch a dataset version (or some modules/tables of it) into `dest`, verified against SHA256SUMS.txt.

    Safe to interrupt at any moment and to run again: it resumes partial files and skips verified ones.
    Raises a PhysioNetError subclass with the step to take (login, DUA, disk space, ...).

    connections: requests at once, shared by all files (PhysioNet caps each connection, not a client's
    total); `jobs` is its former name. split: which files go as byte ranges on several connections (None:
    every file one stream). on_estimate gets, before the transfer starts, the bytes to fetch and the time they
    take at `rate_estimate` bytes/s per connection (PhysioNet's ~50 KB/s).
    """
    if jobs is not None:
        connections = jobs
    if connections < 1:
        raise PhysioNetError("--connections (--jobs) must be at least 1.")
    jobs = connections
    ds, version = lookup(slug, version)
    dest = Path(dest).expanduser() if dest else config.raw_dir(slug, version)
    send_auth = ds is None or ds.access != "open"
    # credentialed data: every folder and file made from here on is private to the user (0700/0600)
    with config.private_files(), _source(slug, version, mirror, credentials_, jobs, trace, timeout, send_auth) as src:
        plan = plan_download(slug, version, modules, tables, dest, mirror=mirror, jobs=jobs, _src=src)
        if on_plan:
            on_plan(plan)
        result = DownloadResult(slug, version, dest, src.label, plan.files, dry_run=dry_run)
        needed = 0
        left: list[tuple[PlannedFile, int]] = []
        for f in plan.files:
            final = dest / f.path
            if f.size is not None and not final.is_file():
                n = max(f.size - present(final.with_name(final.name + PART), f.sha256), 0)
                needed += n
                left.append((f, n))
        transfer = Transfer(src, dest, connections=connections, progress=None, retry=retry, split=split)
        if on_estimate is not None and src.remote:  # a dry run says it too
            on_estimate(estimate([(n, transfer.ranged(f)) for f, n in left], connections, rate_estimate, split))
        if dry_run:
            return result
        check_space(dest, max(needed, 0))
        try:
            config.private_dir(dest)
            if not (dest / SUMS).is_file():
                _write_atomic(dest / SUMS, plan.sums_text)
        except OSError as exc:
            raise PhysioNetError(f"cannot write the download to {dest}: {exc.strerror or exc}; "
                                 "choose another place with --dest.") from None

        sink: Callable[[Event], None] | None
        ctx: contextlib.AbstractContextManager
        if progress is True:
            from mimiclab.physionet.progress import RichProgress

            ctx = RichProgress(plan.total_bytes, len(plan.files))
            sink = ctx
        elif callable(progress):
            ctx, sink = contextlib.nullcontext(), progress
        else:
            ctx, sink = contextlib.nullcontext(), None
        transfer.progress = sink or transfer.progress
        with ctx:
            outcomes = transfer.run(plan.files)
    for o in outcomes:
        (result.fetched if o.status == "fetched" else result.skipped).append(o.path)
        result.bytes_transferred += o.bytes
    return result


def reachable(mirror: str | os.PathLike | None = None, timeout: float = 3.0) -> bool:
    """Can we talk to PhysioNet (or the mirror) at all? For offline-friendly choices, e.g. `mimiclab demo`."""
    try:
        base = mirror_mod.resolve(mirror)
    except PhysioNetError:
        return False
    if not isinstance(base, str):
        return True
    with make_client(None, timeout=timeout, jobs=1) as client:
        try:
            client.head(f"{base}/")
            return True
        except httpx.HTTPError:
            return False
