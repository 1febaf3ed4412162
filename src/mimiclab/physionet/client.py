"""One httpx client factory, so every request to PhysioNet gets the same rules.

* User-Agent: PhysioNet accepts password logins only from `Wget/...` or `libwfdb/...`; we send
  `Wget/1.21 (mimiclab/<version>)` unless MIMICLAB_USER_AGENT says otherwise.
* Basic auth only over HTTPS or to a loopback host; checked on every request, redirects included.
* `--verbose` traces go through a hook that redacts Authorization and cookies.
* Accept-Encoding: identity, so byte offsets (Range) are offsets into the file itself.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable

import httpx

from mimiclab import __version__, redact
from mimiclab.physionet.credentials import Credentials
from mimiclab.physionet.errors import InsecureAuthError

_SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie"}


def user_agent() -> str:
    return os.environ.get("MIMICLAB_USER_AGENT") or f"Wget/1.21 (mimiclab/{__version__})"


def ua_accepted(ua: str) -> bool:
    return ua.startswith(("Wget/", "libwfdb/"))


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def auth_allowed(url: httpx.URL | str) -> bool:
    url = httpx.URL(str(url))
    return url.scheme == "https" or is_loopback(url.host)


def redact_headers(headers: httpx.Headers) -> list[tuple[str, str]]:
    return [(k, "<redacted>" if k.lower() in _SECRET_HEADERS else v) for k, v in headers.items()]


class _GuardedBasicAuth(httpx.Auth):
    """Basic auth that is attached only where it may go; a plain-HTTP remote host gets an error, not the password."""

    def __init__(self, creds: Credentials, preemptive: bool = True):
        self._basic = httpx.BasicAuth(creds.username, creds.password)
        self.preemptive = preemptive

    def __repr__(self) -> str:
        return "<GuardedBasicAuth>"

    def _check(self, request: httpx.Request) -> None:
        if not auth_allowed(request.url):
            raise InsecureAuthError(
                f"refusing to send the PhysioNet password over plain HTTP to {request.url.host}; "
                "use an https:// mirror (or a loopback one)."
            )

    def auth_flow(self, request: httpx.Request):
        if not self.preemptive:
            # open data: ask anonymously, answer a Basic challenge only if one comes
            response = yield request
            if response.status_code != 401 or "basic" not in response.headers.get("www-authenticate", "").lower():
                return
            self.preemptive = True  # this server wants the login: send it up front from now on
        self._check(request)
        yield from self._basic.auth_flow(request)


def _guard_request(request: httpx.Request) -> None:
    # Redirects are sent without re-running auth_flow but keep the header on same-origin; guard them too.
    if "authorization" in request.headers and not auth_allowed(request.url):
        raise InsecureAuthError(
            f"refusing to send the PhysioNet password over plain HTTP to {request.url.host}."
        )


def make_client(
    credentials: Credentials | None = None,
    *,
    timeout: float = 30.0,
    jobs: int = 4,
    trace: Callable[[str], None] | None = None,
    transport: httpx.BaseTransport | None = None,
    preemptive: bool = True,
) -> httpx.Client:
    """A client for PhysioNet or a mirror. `trace` receives one redacted line per request and response.
    preemptive=False (open datasets) sends the password only in answer to a 401 Basic challenge."""

    def log_request(request: httpx.Request) -> None:
        _guard_request(request)
        if trace:
            hdrs = "; ".join(f"{k}: {v}" for k, v in redact_headers(request.headers))
            trace(f"> {request.method} {redact.url(str(request.url))}  [{hdrs}]")

    def log_response(response: httpx.Response) -> None:
        if trace:
            hdrs = "; ".join(f"{k}: {v}" for k, v in redact_headers(response.headers))
            trace(f"< {response.status_code} {redact.url(str(response.request.url))}  [{hdrs}]")

    if transport is None:
        from mimiclab.physionet.fasthttp import FastTransport, proxies_configured

        if not proxies_configured():
            transport = FastTransport(max_idle=max(jobs, 1) + 2)
    return httpx.Client(
        auth=_GuardedBasicAuth(credentials, preemptive) if credentials else None,
        headers={"User-Agent": user_agent(), "Accept-Encoding": "identity"},
        timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
        follow_redirects=True,
        limits=httpx.Limits(max_connections=max(jobs, 1) + 2, max_keepalive_connections=max(jobs, 1) + 2),
        event_hooks={"request": [log_request], "response": [log_response]},
        transport=transport,
    )
