"""Where mimiclab keeps things, and that nobody else can read them. One place, so every layer agrees.

    $MIMICLAB_HOME/raw/<slug>/<version>/<path>     PhysioNet's own layout (downloads)
    $MIMICLAB_HOME/db/<slug>/<version>/            build output: parquet/, <db>.duckdb, manifest.json

Credentialed MIMIC data is under a data use agreement: on a shared server other accounts must not read it.
So what mimiclab writes is private to the user (folders 0700, files 0600), whatever the user's umask:
`private_files()` sets umask 077 while mimiclab writes (the CLI for its whole run, the download and build
entry points for theirs), which also covers files made by DuckDB and pyarrow, whose open() we do not control.
Folders that already exist and that others can enter get a PrivacyWarning with the command that fixes them;
they are not changed behind the user's back.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import stat
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import platformdirs

PRIVATE_UMASK = 0o077
_OTHERS = stat.S_IRWXG | stat.S_IRWXO


class PrivacyWarning(UserWarning):
    """A folder mimiclab writes data into can be read or entered by other accounts."""


def home() -> Path:
    """$MIMICLAB_HOME, else the platform's user data dir (read each call so tests can override)."""
    env = os.environ.get("MIMICLAB_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("mimiclab", appauthor=False))


# DuckDB's memory for a store opened by the Python API (mimiclab.open, the MIMICDataset drop-in). DuckDB's
# own default is 80% of RAM, and it keeps every block a query read until then: looking up patients one by
# one through a full-scale build took the API process to 1,156 MB after a few hundred lookups, and a
# DataLoader worker going over every patient would hold most of the 15 GB database, in each worker. With
# 512 MB the same lookups peaked at 850 MB (times within the spread between runs; at 25% scale a 128 MB
# cap: 445 against 760 MB, same times); a query that needs more (a large join or sort) spills to a private
# temporary folder instead of failing.
DEFAULT_MEMORY_LIMIT = "512MB"


def memory_limit() -> str:
    """The API's DuckDB memory limit: $MIMICLAB_MEMORY_LIMIT (e.g. "4GB"), else DEFAULT_MEMORY_LIMIT."""
    return os.environ.get("MIMICLAB_MEMORY_LIMIT", "").strip() or DEFAULT_MEMORY_LIMIT


def raw_dir(slug: str, version: str) -> Path:
    return home() / "raw" / slug / version


def build_dir(slug: str, version: str) -> Path:
    return home() / "db" / slug / version


# The umask is per process: nested and concurrent users (threads of the web server) share one setting,
# restored when the last leaves, so one finishing early cannot reopen the window for another.
_umask_lock = threading.Lock()
_umask_users = 0
_umask_saved = 0o022
_warned: set[Path] = set()


@contextlib.contextmanager
def private_files(*dirs: str | os.PathLike) -> Iterator[None]:
    """While inside, everything created is private to the user (umask 077); `dirs` are created 0700
    (with missing parents) and checked for existing folders that others can read."""
    global _umask_users, _umask_saved
    with _umask_lock:
        previous = os.umask(PRIVATE_UMASK)
        if _umask_users == 0:
            _umask_saved = previous
        _umask_users += 1
    try:
        for d in dirs:
            private_dir(d)
        yield
    finally:
        with _umask_lock:
            _umask_users -= 1
            if _umask_users == 0:
                os.umask(_umask_saved)


def private_process() -> None:
    """For the `mimiclab` command: private files for the whole run (the process only writes mimiclab's)."""
    global _umask_saved, _umask_users
    with _umask_lock:
        if _umask_users == 0:
            _umask_saved = os.umask(PRIVATE_UMASK)
        _umask_users += 1  # never released: the process ends with the command
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, PrivacyWarning):  # a sentence for the user, not a source location
            import sys

            print(f"warning: {message}", file=sys.stderr)
        else:
            previous(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def private_dir(path: str | os.PathLike) -> Path:
    """Create `path` and its missing parents as 0700 folders; warn about an existing one others can enter."""
    path = Path(path).expanduser()
    missing: list[Path] = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    top = home().expanduser().absolute()
    if not missing:
        check_private(path)
    elif p.absolute() == top or top in p.absolute().parents:
        check_private(p)  # the part of the chain that exists already; what we create below it is private
    for m in reversed(missing):
        try:
            m.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made meanwhile by another process or thread: theirs to have checked
        os.chmod(m, 0o700)  # mkdir's mode is filtered by the umask; this is exact
    return path


def check_private(path: str | os.PathLike) -> bool:
    """True if no existing folder from $MIMICLAB_HOME down to `path` (or `path` alone, outside it) is open to
    others; else one PrivacyWarning per folder and process, naming the command that closes it."""
    path = Path(path).expanduser().absolute()
    top = home().expanduser().absolute()
    chain = [path]
    if path == top or top in path.parents:
        chain = [top] + [q for q in reversed(path.parents) if top in q.parents] + ([path] if path != top else [])
    for folder in chain:
        try:
            st = folder.stat()
        except OSError:
            return True
        if not stat.S_ISDIR(st.st_mode):
            return True
        if st.st_mode & _OTHERS == 0:
            return True  # private: nothing below it is reachable by others
        if st.st_mode & (stat.S_IROTH | stat.S_IXOTH | stat.S_IRGRP | stat.S_IXGRP):
            if folder not in _warned:
                _warned.add(folder)
                warnings.warn(
                    f"{folder} can be read by other accounts on this machine (mode {stat.filemode(st.st_mode)}); "
                    f"MIMIC data is under a data use agreement. Make it private: chmod -R go-rwx "
                    f"{shlex.quote(str(folder))}", PrivacyWarning, stacklevel=_caller_level())
            return False
    return True


def _caller_level() -> int:
    """warnings.warn stacklevel of the first frame outside this module and contextlib: the user's call."""
    import sys
    from types import FrameType

    level = 1
    f: FrameType | None = sys._getframe(1)
    while f is not None and f.f_code.co_filename in (__file__, contextlib.__file__):
        level, f = level + 1, f.f_back
    return level
