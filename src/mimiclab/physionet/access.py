"""How to get access to a PhysioNet dataset, and what this account can do right now.

PhysioNet answers 401 for missing/wrong credentials (or a User-Agent it refuses for password logins) and
403 for a known user who lacks one of the steps below for that exact dataset version. We map each answer to
the step that fixes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from mimiclab import catalog
from mimiclab.physionet import credentials as creds_mod
from mimiclab.physionet import mirror as mirror_mod
from mimiclab.physionet.client import make_client, ua_accepted, user_agent
from mimiclab.physionet.credentials import Credentials
from mimiclab.physionet.errors import InsecureAuthError, PhysioNetError

SITE = "https://physionet.org"
REGISTER = f"{SITE}/register/"
CREDENTIALING = f"{SITE}/settings/credentialing/"
TRAINING = f"{SITE}/settings/training/"
CITI_HELP = f"{SITE}/about/citi-course/"


def page(slug: str, version: str | None = None) -> str:
    return f"{SITE}/content/{slug}/" + (f"{version}/" if version else "")


def dua(slug: str, version: str) -> str:
    return f"{SITE}/sign-dua/{slug}/{version}/"


def _dataset(slug: str) -> catalog.Dataset | None:
    try:
        return catalog.get(slug)
    except catalog.CatalogError:
        return None


def steps(slug: str, version: str) -> list[tuple[str, str]]:
    """The four steps to credentialed access, each with its link."""
    return [
        ("Create a PhysioNet account (use your institutional e-mail).", REGISTER),
        ("Apply to become a credentialed user; the application names a reference (your supervisor "
         "or a senior colleague) who will be contacted.", CREDENTIALING),
        ("Complete the CITI course 'Data or Specimens Only Research' and upload the completion report "
         f"(not the certificate) to PhysioNet; how-to: {CITI_HELP}", TRAINING),
        (f"Sign the data use agreement for {slug} version {version} (each dataset and version has its own).",
         dua(slug, version)),
    ]


def guide(slug: str, version: str | None = None) -> str:
    """Plain text: what it takes to download this dataset."""
    ds = _dataset(slug)
    if ds is not None:
        version = ds.version(version).version
        title = f"{ds.title} ({slug} {version})"
    else:
        version = version or "<version>"
        title = f"{slug} {version} (not in mimiclab's catalog)"
    if ds is not None and ds.access not in ("open", "credentialed"):
        return f"{title}\nNot published on PhysioNet (access: {ds.access}): it is made on this machine."
    lines = [title, f"Page: {page(slug, version if ds else None)}", ""]
    if ds is not None and ds.access == "open":
        lines += ["Open access: no account or login is needed.",
                  f"Download: mimiclab download {slug}" + ("" if version == ds.default_version else f" --version {version}")]
        return "\n".join(lines)
    lines.append("Credentialed access. Steps (each needs the previous one):")
    for i, (text, link) in enumerate(steps(slug, version), 1):
        lines.append(f"  {i}. {text}\n     {link}")
    lines += ["", "Then store your PhysioNet username and password once: mimiclab login",
              f"and check: mimiclab access {slug}", f"and download: mimiclab download {slug}"]
    return "\n".join(lines)


def auth_message(slug: str, client: httpx.Client | None = None) -> str:
    ua = (client.headers.get("user-agent") if client is not None else None) or user_agent()
    return _auth_message(slug, ua, has_auth=client is not None and client.auth is not None)


def _auth_message(slug: str, ua: str, has_auth: bool) -> str:
    if not has_auth:
        msg = f"{slug} needs a PhysioNet login (HTTP 401). Run `mimiclab login` (or set PHYSIONET_USERNAME/PHYSIONET_PASSWORD)."
    else:
        msg = f"PhysioNet refused the login for {slug} (HTTP 401): wrong username/password: run `mimiclab login`."
    if not ua_accepted(ua):
        msg += (f" Note: PhysioNet accepts password logins only from a User-Agent starting with 'Wget/' or "
                f"'libwfdb/'; MIMICLAB_USER_AGENT is set to {ua!r}.")
    return msg


def forbidden_message(slug: str, version: str, client: httpx.Client | None = None) -> str:
    missing = "\n".join(f"  - {text} {link}" for text, link in steps(slug, version)[1:])
    return (f"your PhysioNet account has no access to {slug} {version} (HTTP 403). One of these steps is "
            f"missing or not yet approved:\n{missing}\nDataset page: {page(slug, version)}")


@dataclass(frozen=True)
class AccessStatus:
    """state: open | allowed | no-credentials | bad-credentials | forbidden | not-found | unreachable | insecure."""

    slug: str
    version: str
    state: str
    message: str

    @property
    def ok(self) -> bool:
        return self.state in ("open", "allowed")


def check_access(slug: str, version: str | None = None, *, credentials: Credentials | None = None,
                 mirror: str | None = None, timeout: float = 10.0, use_stored: bool = True) -> AccessStatus:
    """What this account can do with `slug` right now. Asks for SHA256SUMS.txt: small, and protected exactly
    like the data. Tries anonymously first, so an open dataset is reported as open, not 'allowed'."""
    from mimiclab.physionet.plan import lookup

    _, version = lookup(slug, version)  # CatalogError with suggestions for unknown slugs
    base, url_login = mirror_mod.resolve_with_login(mirror)
    if not isinstance(base, str):
        src = mirror_mod.LocalSource(base, slug, version)
        if src.size("SHA256SUMS.txt") is None:
            return AccessStatus(slug, version, "not-found", f"{src.label} has no SHA256SUMS.txt.")
        return AccessStatus(slug, version, "open", f"local folder {src.label}")
    credentials = credentials or url_login
    if credentials is None and use_stored:
        credentials = creds_mod.load(httpx.URL(base).host)

    def ask(c: Credentials | None) -> int | str:
        with make_client(c, timeout=timeout, jobs=1) as client:
            try:
                r = client.get(f"{base}/files/{slug}/{version}/SHA256SUMS.txt", headers={"Range": "bytes=0-0"})
                return r.status_code
            except InsecureAuthError as exc:
                return f"insecure: {exc}"
            except httpx.HTTPError as exc:
                return f"unreachable: {type(exc).__name__}"

    code = ask(None)
    if isinstance(code, int) and code in (200, 206):
        return AccessStatus(slug, version, "open", "open access: no login needed")
    if isinstance(code, int) and code in (401, 403) and credentials is not None:
        code = ask(credentials)
        if isinstance(code, int) and code in (200, 206):
            return AccessStatus(slug, version, "allowed", f"{credentials.username} can download {slug} {version}")
    if isinstance(code, str):
        state, _, detail = code.partition(": ")
        if state == "insecure":
            return AccessStatus(slug, version, "insecure", detail)
        return AccessStatus(slug, version, "unreachable", f"{base} not reachable ({detail}); check your network or --mirror.")
    if code == 401:
        if credentials is None:
            return AccessStatus(slug, version, "no-credentials",
                                "needs a PhysioNet login: run `mimiclab login` after completing the steps in "
                                f"`mimiclab access {slug}`.")
        return AccessStatus(slug, version, "bad-credentials", _auth_message(slug, user_agent(), has_auth=True))
    if code == 403:
        return AccessStatus(slug, version, "forbidden", forbidden_message(slug, version))
    if code == 404:
        return AccessStatus(slug, version, "not-found", f"{slug} {version} not found at {base} (404).")
    return AccessStatus(slug, version, "unreachable", f"{base} answered HTTP {code}.")


def check_all(*, credentials: Credentials | None = None, mirror: str | None = None,
              timeout: float = 10.0) -> list[AccessStatus]:
    """check_access for every catalog dataset (default versions), in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    if credentials is None:
        base, credentials = mirror_mod.resolve_with_login(mirror)
        credentials = credentials or creds_mod.load(
            httpx.URL(base).host if isinstance(base, str) else creds_mod.DEFAULT_HOST)
    dss = [d for d in catalog.datasets() if d.access in ("open", "credentialed")]
    with ThreadPoolExecutor(max_workers=8) as ex:
        return list(ex.map(lambda d: check_access(d.slug, credentials=credentials, mirror=mirror,
                                                  timeout=timeout, use_stored=False), dss))


def explain(status: AccessStatus) -> str:
    return status.message


__all__ = ["AccessStatus", "PhysioNetError", "check_access", "check_all", "guide", "steps"]
