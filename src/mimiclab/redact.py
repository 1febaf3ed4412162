"""Masking secrets for display: the one helper every message, trace and repr goes through.

Passwords reach mimiclab inside mirror URLs (`https://user:pass@mirror/`) and PostgreSQL connection strings
(`postgresql://u:p@host/db`, `host=x password='a b'`). Regular expressions over such strings miss quoting,
spaces, `@` and percent-encoding, so both are masked by parsing them by their own rules: URLs split at the
last `@` of the authority (as WHATWG and libpq do), conninfo strings by libpq itself (psycopg.conninfo).
Whatever cannot be parsed is not shown at all. Imports nothing from mimiclab: every layer may use it.
"""

from __future__ import annotations

import re
import urllib.parse

MASK = "***"
SECRET_KEYS = frozenset({"password", "sslpassword"})  # libpq keywords whose values are secrets
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*:)//(.*)$", re.S)
_QUERY_SECRET = re.compile(r"((?:^|[?&])(?:ssl)?password=)(.*?)(?=&[A-Za-z_]+=|#|$)", re.S | re.I)
HIDDEN_DSN = "<connection string not shown: it could not be parsed and may hold a password>"


def split_url(value: str) -> tuple[str, str, str] | None:
    """(`scheme:`, authority, rest) of a URL, the authority ending at the first / ? # or \\ (as WHATWG and libpq
    read it); None if `value` is not `scheme://...`. Shared by masking and by mimiclab's own URL handling."""
    m = _URL.match(value)
    if not m:
        return None
    scheme, rest = m.groups()
    end = min((i for i in (rest.find(c) for c in "/?#\\") if i >= 0), default=len(rest))
    return scheme, rest[:end], rest[end:]


def url(value: str) -> str:
    """`value` with the password of its userinfo (and any password= query parameter) replaced by ***.

    Anything between `//` and the last `@` of the authority is userinfo. An `@` that only comes after a `/`,
    `?` or `#` may end a password holding that character (not a valid URL, but typed by someone), so then
    everything up to the last `@` is hidden: a confusing message is better than a leaked password."""
    parts = split_url(value)
    if parts is None:
        return value
    scheme, authority, tail = parts
    if "@" in authority:
        userinfo, _, hostport = authority.rpartition("@")
        user, sep, _ = userinfo.partition(":")
        authority = f"{user}{sep and ':' + MASK}@{hostport}"
    elif "@" in tail:
        return f"{scheme}//{MASK}@{tail.rpartition('@')[2]}"
    query_at = tail.find("?")
    if query_at >= 0:
        tail = tail[:query_at] + _QUERY_SECRET.sub(lambda q: q.group(1) + MASK, tail[query_at:])
    return f"{scheme}//{authority}{tail}"


def dsn(value: str) -> str:
    """A PostgreSQL connection string (URL or libpq key=value) without its password, for messages."""
    if _URL.match(value.strip()):
        return url(value.strip())
    parsed = conninfo(value)
    if parsed is None:
        return HIDDEN_DSN
    from psycopg.conninfo import make_conninfo

    return make_conninfo("", **{k: (MASK if k in SECRET_KEYS else v) for k, v in parsed.items()})


def conninfo(value: str) -> dict[str, str] | None:
    """libpq's own reading of a connection string, or None (unparseable, or psycopg not installed)."""
    try:
        from psycopg import ProgrammingError
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        return None
    try:
        return {k: str(v) for k, v in conninfo_to_dict(value).items()}
    except ProgrammingError:
        return None


def dsn_secrets(value: str) -> list[str]:
    """The passwords a connection string holds (URL userinfo, query or key=value), to scrub from messages."""
    out: list[str] = []
    parts = split_url(value.strip())
    if parts:
        _, authority, tail = parts
        if "@" in authority:
            userinfo = authority.rpartition("@")[0]
            if ":" in userinfo:
                out.append(userinfo.split(":", 1)[1])
        elif "@" in tail:
            out.append(authority + tail.rpartition("@")[0])  # malformed: all of it may be secret (see url())
        out += [v for k, v in urllib.parse.parse_qsl(urllib.parse.urlsplit(value.strip()).query)
                if k.lower() in SECRET_KEYS]
    parsed = conninfo(value)
    if parsed:
        out += [v for k, v in parsed.items() if k in SECRET_KEYS]
    return [s for s in out if s]


def variants(secret: str) -> set[str]:
    """Every spelling a secret may take in a message: as is, percent-encoded or decoded, libpq- or
    Python-quoted, and (for passwords with spaces) each longer word of it."""
    forms = {secret, urllib.parse.unquote(secret), urllib.parse.quote(secret, safe=""),
             urllib.parse.quote(secret), urllib.parse.quote_plus(secret),
             secret.replace("\\", "\\\\").replace("'", "\\'"), repr(secret)[1:-1]}
    forms |= {f.lower() for f in list(forms) if "%" in f}
    forms |= {w for w in re.split(r"\s+", secret) if len(w) >= 3}
    return {f for f in forms if f}


def scrub(text: str, *secrets: str | None) -> str:
    """`text` with every spelling of each secret replaced by ***; longest first, so no fragment survives."""
    forms: set[str] = set()
    for s in secrets:
        if s:
            forms |= variants(s)
    for f in sorted(forms, key=len, reverse=True):
        text = text.replace(f, MASK)
    return text


class Secret:
    """A string that never shows itself in repr/str/format (objects holding a DSN keep it in one of these)."""

    __slots__ = ("_shown", "_value")

    def __init__(self, value: str, shown: str = MASK):
        self._value = value
        self._shown = shown

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self._shown!r})"

    def __str__(self) -> str:
        return self._shown

    def __reduce__(self):
        raise TypeError("Secret values are not picklable")
