"""Where files come from: PhysioNet itself, a URL mirror laid out like it, or a local folder.

Both kinds offer the same three operations (read a small file, size of a file, stream from an offset),
so the transfer code has one path for all of them, resume and verification included.
"""

from __future__ import annotations

import contextlib
import email.utils
import os
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from mimiclab import redact
from mimiclab.physionet.credentials import Credentials
from mimiclab.physionet.errors import (
    AccessDeniedError,
    AuthError,
    NotFoundError,
    PhysioNetError,
)

DEFAULT_URL = "https://physionet.org"
CHUNK = 1 << 20
# read() is for small text files (SHA256SUMS.txt: ~100 bytes a file, MIMIC-CXR's 377k files ~40 MB); a larger
# answer is a wrong or hostile file, refused before it fills memory
MAX_SMALL = 256 << 20


class TransientError(PhysioNetError):
    """A failure worth retrying (timeout, dropped connection, 5xx, 429); may carry Retry-After seconds."""

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status  # the HTTP status, when the server answered (429/503: it refuses for now)


class RangeNotSatisfiable(PhysioNetError):
    """416: the offset is at or past the end; the partial file is complete (or too long)."""

    def __init__(self, total: int | None):
        super().__init__("range not satisfiable")
        self.total = total


@dataclass
class Stream:
    start: int  # offset the data begins at (0 if the server ignored Range)
    total: int | None  # full file size, when known
    chunks: Iterator[bytes]
    ranged: bool = False  # the answer is the range asked for (206), not the whole file from byte 0 (200)


def resolve(mirror: str | os.PathLike | None = None) -> str | Path:
    """The source to use: argument, else $MIMICLAB_PHYSIONET_URL, else https://physionet.org.
    A URL comes back without any `user:password@` (see resolve_with_login)."""
    return resolve_with_login(mirror)[0]


def resolve_with_login(mirror: str | os.PathLike | None = None) -> tuple[str | Path, Credentials | None]:
    """The source, and the login a mirror URL carried as `https://user:password@host/` (percent-decoded).

    The login is taken out of the URL here, once: the URL that plans, errors and traces print never holds it,
    and the password goes the way of every other PhysioNet password (Basic auth over HTTPS or loopback only)."""
    value = mirror if mirror not in (None, "") else os.environ.get("MIMICLAB_PHYSIONET_URL") or DEFAULT_URL
    if isinstance(value, Path):
        return value, None
    value = str(value)
    if value.startswith(("http://", "https://")):
        return _split_login(value)
    if value.startswith("file://"):
        value = value[len("file://"):]
    path = Path(value).expanduser()
    if not path.is_dir():
        raise PhysioNetError(
            f"mirror {redact.url(value)!r} is neither an http(s) URL nor an existing folder; give a URL standing in for "
            "https://physionet.org or a folder laid out as <slug>/<version>/<path>."
        )
    return path.resolve(), None


def _split_login(value: str) -> tuple[str, Credentials | None]:
    scheme, authority, tail = redact.split_url(value) or ("", "", value)
    if "@" not in authority:
        if "@" in tail:
            raise PhysioNetError(
                f"mirror URL {redact.url(value)!r} cannot be read: if its password holds / ? # or @, write them "
                "percent-encoded (%2F %3F %23 %40), or leave the login out of the URL and use `mimiclab login`.")
        return value.rstrip("/"), None
    userinfo, _, hostport = authority.rpartition("@")
    user, sep, password = userinfo.partition(":")
    base = f"{scheme}//{hostport}{tail}".rstrip("/")
    if not sep or not user:
        return base, None
    return base, Credentials(urllib.parse.unquote(user), urllib.parse.unquote(password), "mirror URL")


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _too_big(where: str) -> str:
    return f"{where} is larger than {MAX_SMALL >> 20} MB: not a checksum list; is the mirror serving the right file?"


class LocalSource:
    """A folder laid out as <root>/<slug>/<version>/<path> (like ../shared/data)."""

    remote = False

    def __init__(self, root: Path, slug: str, version: str):
        self.root = Path(root)
        self.base = self.root / slug / version
        self.slug, self.version = slug, version

    @property
    def label(self) -> str:
        return str(self.base)

    def _path(self, rel: str) -> Path:
        p = (self.base / rel).resolve()
        if not p.is_relative_to(self.base.resolve()):
            raise PhysioNetError(f"refusing path outside the mirror: {rel!r}")
        return p

    def url(self, rel: str) -> str:
        return str(self._path(rel))

    def read(self, rel: str) -> bytes:
        p = self._path(rel)
        if not p.is_file():
            raise NotFoundError(f"{p} not found in the local mirror {self.root}.")
        if p.stat().st_size > MAX_SMALL:
            raise PhysioNetError(_too_big(str(p)))
        return p.read_bytes()

    def size(self, rel: str) -> int | None:
        p = self._path(rel)
        return p.stat().st_size if p.is_file() else None

    @contextlib.contextmanager
    def stream(self, rel: str, offset: int, chunk: int = CHUNK, end: int | None = None) -> Iterator[Stream]:
        """Bytes from `offset` to the end of the file, or to `end` (exclusive) when given."""
        p = self._path(rel)
        if not p.is_file():
            raise NotFoundError(f"{rel} is listed in SHA256SUMS.txt but missing from the local mirror {self.base}.")
        total = p.stat().st_size
        if offset >= total and (offset > 0 or end is not None):
            raise RangeNotSatisfiable(total)
        stop = total if end is None else min(end, total)
        with open(p, "rb") as fh:
            fh.seek(offset)

            def chunks() -> Iterator[bytes]:
                left = stop - offset
                while left > 0:
                    b = fh.read(min(chunk, left))
                    if not b:
                        return
                    left -= len(b)
                    yield b

            yield Stream(offset, total, chunks(), ranged=end is not None)


class RemoteSource:
    """PhysioNet or a URL mirror: files at <base>/files/<slug>/<version>/<path>."""

    remote = True

    def __init__(self, base_url: str, slug: str, version: str, client: httpx.Client, dataset_page: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.slug, self.version = slug, version
        self.client = client
        self.page = dataset_page or f"https://physionet.org/content/{slug}/{version}/"

    @property
    def label(self) -> str:
        return f"{self.base_url}/files/{self.slug}/{self.version}/"

    def url(self, rel: str) -> str:
        return f"{self.base_url}/files/{self.slug}/{self.version}/{rel}"

    def _check(self, response: httpx.Response, rel: str) -> None:
        code = response.status_code
        if code < 400:
            return
        from mimiclab.physionet.access import auth_message, forbidden_message

        if code == 401:
            raise AuthError(auth_message(self.slug, self.client))
        if code == 403:
            raise AccessDeniedError(forbidden_message(self.slug, self.version, self.client))
        if code == 404:
            raise NotFoundError(f"{self.url(rel)} not found (404): "
                                f"is {self.slug} {self.version} published there, and is {rel} part of it?")
        if code == 416:
            cr = response.headers.get("content-range", "")
            total = int(cr.rsplit("/", 1)[1]) if "/" in cr and cr.rsplit("/", 1)[1].isdigit() else None
            raise RangeNotSatisfiable(total)
        if code == 429 or code >= 500:
            raise TransientError(f"HTTP {code} for {rel}", parse_retry_after(response.headers.get("retry-after")), code)
        raise PhysioNetError(f"HTTP {code} for {self.url(rel)}")

    @contextlib.contextmanager
    def _send(self, method: str, rel: str, headers: dict[str, str] | None = None) -> Iterator[httpx.Response]:
        try:
            with self.client.stream(method, self.url(rel), headers=headers) as response:
                self._check(response, rel)
                yield response
        except httpx.TimeoutException as exc:
            raise TransientError(f"timed out fetching {rel} ({type(exc).__name__})") from None
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise TransientError(f"connection problem fetching {rel}: {type(exc).__name__}: {exc}") from None

    def read(self, rel: str) -> bytes:
        with self._send("GET", rel) as r:
            buf = bytearray()
            try:
                for b in r.iter_raw():
                    buf += b
                    if len(buf) > MAX_SMALL:
                        raise PhysioNetError(_too_big(self.url(rel)))
            except httpx.HTTPError as exc:
                raise TransientError(f"connection problem fetching {rel}: {type(exc).__name__}") from None
            return bytes(buf)

    def size(self, rel: str) -> int | None:
        with self._send("HEAD", rel) as r:
            n = r.headers.get("content-length")
            return int(n) if n and n.isdigit() else None

    @contextlib.contextmanager
    def stream(self, rel: str, offset: int, chunk: int = CHUNK, end: int | None = None) -> Iterator[Stream]:
        """Bytes from `offset` (or, `end` given, `bytes=offset-(end-1)`, asked even from byte 0 to learn whether
        the server honours ranges); `ranged` says whether it did."""
        if end is not None:
            headers: dict[str, str] | None = {"Range": f"bytes={offset}-{end - 1}"}
        else:
            headers = {"Range": f"bytes={offset}-"} if offset > 0 else None
        with self._send("GET", rel, headers) as r:
            start, total = 0, None
            if r.status_code == 206:
                cr = r.headers.get("content-range", "")  # bytes a-b/total
                try:
                    span, tot = cr.split(" ", 1)[1].split("/")
                    start = int(span.split("-")[0])
                    total = int(tot) if tot.isdigit() else None
                except (IndexError, ValueError):
                    raise TransientError(f"bad Content-Range {cr!r} for {rel}") from None
            else:
                n = r.headers.get("content-length")
                total = int(n) if n and n.isdigit() else None

            def chunks() -> Iterator[bytes]:
                try:
                    # no re-chunking: every byte that arrived is handed over (and written) before a drop
                    yield from r.iter_raw()
                except httpx.TimeoutException:
                    raise TransientError(f"timed out reading {rel}") from None
                except (httpx.TransportError, httpx.StreamError) as exc:
                    raise TransientError(f"connection dropped reading {rel}: {type(exc).__name__}") from None

            yield Stream(start, total, chunks(), ranged=r.status_code == 206)
