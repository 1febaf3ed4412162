"""PhysioNet credentials: where they come from, where `mimiclab login` keeps them.

Lookup order: environment (PHYSIONET_USERNAME / PHYSIONET_PASSWORD), ~/.netrc (or $NETRC), the system
keyring, then mimiclab's own 0600 file (used only when no keyring backend works). The password lives in a
private attribute and never appears in repr/str, so it cannot leak through logs or tracebacks that print
objects.
"""

from __future__ import annotations

import json
import netrc
import os
from dataclasses import dataclass, field
from pathlib import Path

from mimiclab import config
from mimiclab.physionet.errors import CredentialsError

SERVICE = "mimiclab-physionet"
_USER_KEY = "__username__"  # the keyring entry that remembers which username was stored
DEFAULT_HOST = "physionet.org"


@dataclass(frozen=True)
class Credentials:
    username: str
    _password: str = field(repr=False)
    source: str = "given"  # env | netrc | keyring | file | prompt | given | mirror URL

    @property
    def password(self) -> str:
        return self._password

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<hidden>, source={self.source!r})"

    __str__ = __repr__

    def __reduce__(self):  # pickling would write the password somewhere; refuse
        raise TypeError("Credentials are not picklable")


def credentials_file() -> Path:
    """Fallback store when no keyring backend works (0600, in $MIMICLAB_HOME)."""
    return config.home() / "physionet-credentials.json"


def _netrc_path() -> Path:
    return Path(os.environ.get("NETRC") or Path.home() / ".netrc").expanduser()


def from_env() -> Credentials | None:
    user, pw = os.environ.get("PHYSIONET_USERNAME"), os.environ.get("PHYSIONET_PASSWORD")
    if user and pw:
        return Credentials(user, pw, "env")
    return None


def from_netrc(host: str = DEFAULT_HOST, path: Path | None = None) -> Credentials | None:
    path = path or _netrc_path()
    if not path.is_file():
        return None
    try:
        entry = netrc.netrc(str(path)).authenticators(host)
    except (netrc.NetrcParseError, OSError) as exc:
        # The parse error text can quote the offending line (a password); report only where.
        lineno = getattr(exc, "lineno", None)
        where = f" line {lineno}" if lineno else ""
        raise CredentialsError(f"cannot parse {path}{where}; fix or remove the entry for {host}.") from None
    if entry and entry[0] and entry[2]:
        return Credentials(entry[0], entry[2], "netrc")
    return None


def _keyring():
    """The keyring module if a usable backend exists, else None (the fail backend has priority 0)."""
    try:
        import keyring
        from keyring.backends import fail

        kr = keyring.get_keyring()
        if isinstance(kr, fail.Keyring):
            return None
        # a chainer with no usable backends behaves like fail
        backends = getattr(kr, "backends", None)
        if backends is not None and not backends:
            return None
        return keyring
    except Exception:
        return None


def from_keyring() -> Credentials | None:
    kr = _keyring()
    if kr is None:
        return None
    try:
        user = kr.get_password(SERVICE, _USER_KEY)
        pw = kr.get_password(SERVICE, user) if user else None
    except Exception:
        return None
    return Credentials(user, pw, "keyring") if user and pw else None


def from_file() -> Credentials | None:
    path = credentials_file()
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        return Credentials(raw["username"], raw["password"], "file")
    except (OSError, ValueError, KeyError, TypeError):
        raise CredentialsError(f"{path} is unreadable; run `mimiclab logout` then `mimiclab login`.") from None


def load(host: str = DEFAULT_HOST) -> Credentials | None:
    """The first credentials found, or None. `host` picks the ~/.netrc machine entry."""
    for get in (from_env, lambda: from_netrc(host), from_keyring, from_file):
        c = get()
        if c is not None:
            return c
    if host != DEFAULT_HOST:
        return from_netrc(DEFAULT_HOST)
    return None


def store(creds: Credentials) -> str:
    """Keep credentials for later runs: the keyring if one works, else a 0600 file. Returns where."""
    if not creds.username or not creds.password:
        raise CredentialsError("username and password must not be empty.")
    kr = _keyring()
    if kr is not None:
        try:
            old = kr.get_password(SERVICE, _USER_KEY)
            kr.set_password(SERVICE, creds.username, creds.password)
            kr.set_password(SERVICE, _USER_KEY, creds.username)
            if old and old != creds.username:
                _try_delete(kr, old)
            _remove_file()
            return "the system keyring"
        except Exception:
            pass  # a backend that exists but fails (locked, headless): fall back to the file
    path = credentials_file()
    config.private_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, json.dumps({"username": creds.username, "password": creds.password}).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return str(path)


def _try_delete(kr, key: str) -> bool:
    try:
        kr.delete_password(SERVICE, key)
        return True
    except Exception:
        return False


def _remove_file() -> bool:
    try:
        credentials_file().unlink()
        return True
    except FileNotFoundError:
        return False


def delete() -> list[str]:
    """Forget stored credentials (keyring and file). Env and ~/.netrc are the user's own; left alone."""
    removed = []
    kr = _keyring()
    if kr is not None:
        try:
            user = kr.get_password(SERVICE, _USER_KEY)
        except Exception:
            user = None
        if user and _try_delete(kr, user):
            removed.append("the system keyring")
        _try_delete(kr, _USER_KEY)
    if _remove_file():
        removed.append(str(credentials_file()))
    return removed
