"""What to fetch: SHA256SUMS.txt narrowed by modules/tables, with sizes and a free-space check.

The checksum list is the authority on which files a version has; the catalog adds sizes (so a plan needs
no extra requests) and maps table names to files.
"""

from __future__ import annotations

import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from mimiclab import catalog
from mimiclab.physionet.errors import InsufficientSpaceError, PhysioNetError

SUMS = "SHA256SUMS.txt"
LICENSE = "LICENSE.txt"
_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *]?(.+?)\s*$")


@dataclass(frozen=True)
class PlannedFile:
    path: str  # relative, PhysioNet layout, forward slashes
    sha256: str
    size: int | None = None
    approx: bool = False  # size is the catalog's rounded figure, not the exact byte count


@dataclass
class Plan:
    slug: str
    version: str
    dest: Path
    files: list[PlannedFile]
    source: str = ""  # human label of where files come from
    sums_text: bytes = b""
    notes: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(f.size or 0 for f in self.files)

    @property
    def sizes_known(self) -> bool:
        return all(f.size is not None for f in self.files)


# Longest name one folder entry may have on common file systems (bytes), and a bound on the whole relative path
# well under PATH_MAX once joined to a destination: longer ones could only fail later, at write time.
MAX_NAME = 255
MAX_PATH = 1024


def _unsafe(path: str) -> str | None:
    """Why a listed path cannot be written safely under the destination, or None."""
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        return "a control character (NUL, newline, ...)"
    if path.startswith("/") or "\\" in path or ".." in PurePosixPath(path).parts:
        return "a path outside the dataset folder"
    if len(path.encode("utf-8")) > MAX_PATH:
        return f"a path longer than {MAX_PATH} bytes"
    if any(len(part.encode("utf-8")) > MAX_NAME for part in path.split("/")):
        return f"a file or folder name longer than {MAX_NAME} bytes"
    if any(part in ("", ".") for part in path.split("/")):
        return "an empty or '.' path component"
    return None


def parse_sums(text: str | bytes, origin: str = SUMS) -> dict[str, str]:
    """`<sha256>  <path>` per line (sha256sum's text or binary mode) -> {path: sha256}.

    Every path must be writable under the destination as is: a hostile or damaged list fails here, naming
    the line, instead of as an OS error half way through a download."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise PhysioNetError(f"{origin} is not text; is the mirror serving the right file?") from None
    out: dict[str, str] = {}
    # split on newlines only: str.splitlines() would also split on \r, \x1c, \u2028 ... inside a name
    for n, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        m = _LINE.match(line)
        if not m:
            raise PhysioNetError(f"{origin} line {n} is not '<sha256>  <path>': {line[:80]!r}")
        path = m.group(2).removeprefix("./")
        why = _unsafe(path)
        if why:
            shown = path if len(path) <= 80 else path[:77] + "..."
            raise PhysioNetError(f"{origin} line {n} names an unsafe path ({why}): {shown!r}")
        out[path] = m.group(1).lower()
    if not out:
        raise PhysioNetError(f"{origin} lists no files.")
    return out


def lookup(slug: str, version: str | None) -> tuple[catalog.Dataset | None, str]:
    """The catalog entry and the version to use. Unknown slugs are allowed only with an explicit version
    (PhysioNet has many projects the catalog does not describe)."""
    try:
        ds = catalog.get(slug)
    except catalog.CatalogError:
        if version is None:
            raise
        return None, version
    if ds.access not in ("open", "credentialed"):
        raise PhysioNetError(f"{slug} is not published on PhysioNet (access: {ds.access}); "
                             "it is made on this machine, not downloaded.")
    return ds, ds.version(version).version


def _stem(path: str) -> str:
    for ext in (".csv.gz", ".csv"):
        if path.endswith(ext):
            return path[: -len(ext)]
    return path


def select(sums: dict[str, str], ds: catalog.Dataset | None, version: str,
           modules: list[str] | None = None, tables: list[str] | None = None) -> list[str]:
    """Paths to fetch, in SHA256SUMS order. LICENSE.txt always comes along."""
    paths = list(sums)
    if not modules and not tables:
        return paths
    chosen: set[str] = set()
    if modules:
        folders = sorted({p.split("/", 1)[0] for p in paths if "/" in p})
        for m in modules:
            m = m.strip("/")
            hit = [p for p in paths if p.startswith(m + "/")]
            if not hit:
                raise PhysioNetError(
                    f"module {m!r} has no files in {ds.slug if ds else ''} {version}; folders: {', '.join(folders) or 'none'}."
                )
            chosen.update(hit)
    if tables:
        by_stem: dict[str, list[str]] = {}
        for p in paths:
            by_stem.setdefault(_stem(p).lower(), []).append(p)
        for t in tables:
            stems: list[str] = []
            if ds is not None and ds.family:
                stems = [tb.file for tb in ds.tables(version, names=[t])]
            else:
                stems = [s for s in by_stem if s == t.lower() or s.endswith("/" + t.lower())]
            hit = [p for s in stems for p in by_stem.get(s.lower(), [])]
            if not hit:
                raise PhysioNetError(f"table {t!r} has no file in {SUMS} of {ds.slug if ds else ''} {version} "
                                     f"(looked for {', '.join(s + '.csv.gz' for s in stems) or t}).")
            chosen.update(hit)
    if LICENSE in sums:
        chosen.add(LICENSE)
    return [p for p in paths if p in chosen]


def fill_sizes(files: list[PlannedFile], ds: catalog.Dataset | None, version: str, size_of, jobs: int = 4) -> list[PlannedFile]:
    """Sizes from the catalog, the rest from the source (HEAD / stat), looked up in parallel."""
    known = ds.version(version).files if ds is not None else {}
    out = [PlannedFile(f.path, f.sha256, known[f.path].size, known[f.path].approx_size)
           if f.path in known and known[f.path].size else PlannedFile(f.path, f.sha256) for f in files]
    missing = [i for i, f in enumerate(out) if f.size is None]
    if missing:
        def one(i: int) -> int | None:
            try:
                return size_of(out[i].path)
            except PhysioNetError:
                return None  # unknown size: the transfer will learn it, the plan says so
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
            for i, size in zip(missing, ex.map(one, missing), strict=True):
                out[i] = PlannedFile(out[i].path, out[i].sha256, size)
    return out


def free_space(dest: Path) -> int:
    p = Path(dest).resolve()
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def check_space(dest: Path, needed: int, margin: int = 16 << 20) -> None:
    free = free_space(dest)
    if needed + margin > free:
        raise InsufficientSpaceError(
            f"not enough disk space at {dest}: need {human(needed)} more, {human(free)} free. "
            "Free some space or choose another place with --dest (or narrow with --modules/--tables)."
        )


def human(n: int | float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"
