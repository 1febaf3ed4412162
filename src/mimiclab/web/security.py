"""Local and safe by default: an access token (like Jupyter's), loopback-only Host without one, strict CSP,
no cross-site requests to the API.

* Every local user of a shared machine can reach 127.0.0.1, so `mimiclab serve` requires a token by default,
  on loopback too (`--no-token` opts out, and only where the address resolves to loopback). The token comes
  from `--token`, `$MIMICLAB_TOKEN` or `--token-file` (argv is visible to every user in `ps`), else is made up.
* With a token every request must carry it: `Authorization: Bearer`, `X-Mimiclab-Token`, the cookie set after
  a first `?token=` visit, or the `token` query parameter.
* Without a token the workbench answers only requests whose Host is a loopback name, so a web page that
  re-points its own domain at 127.0.0.1 (DNS rebinding) cannot read the data.
* The API answers no cross-site request (`Sec-Fetch-Site: cross-site`), GET included: a CSV export is work
  and data, whoever's page asks for it.
* Every response carries a Content-Security-Policy that allows only this origin: no CDN, no inline script,
  no connection anywhere else.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import socket
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

COOKIE = "mimiclab_token"
HEADER = "x-mimiclab-token"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]", "localhost.localdomain"}

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    # plotly.js sets inline style attributes on the SVG it draws; styles cannot run code.
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}


def is_loopback(host: str) -> bool:
    h = host.strip("[]").lower()
    if h in LOOPBACK_NAMES or h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def binds_loopback(host: str) -> bool:
    """Whether binding `host` listens on loopback only: decided from the addresses it resolves to, not its
    name (`localhost.localdomain` maps to a network address on some machines)."""
    h = host.strip("[]")
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        pass
    try:
        addrs = {ai[4][0] for ai in socket.getaddrinfo(h, None, type=socket.SOCK_STREAM)}
    except (OSError, UnicodeError):
        return False
    return bool(addrs) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addrs)


def new_token() -> str:
    return secrets.token_urlsafe(24)


class TokenError(ValueError):
    """A token file that cannot be used (missing, empty, readable by others)."""


def resolve_token(token: str | None = None, token_file: str | os.PathLike | None = None,
                  no_token: bool = False) -> str | None:
    """The token to require: none with `no_token`, else the one given, else the first line of `token_file`,
    else a new random one."""
    if no_token:
        return None
    if token:
        return token.strip()
    if token_file:
        p = Path(token_file).expanduser()
        try:
            text = p.read_text(encoding="utf-8").strip().splitlines()
        except OSError as exc:
            raise TokenError(f"cannot read the token file {p}: {exc.strerror or exc}") from None
        if not text or not text[0].strip():
            raise TokenError(f"the token file {p} is empty.")
        if os.name == "posix" and p.stat().st_mode & 0o077:
            raise TokenError(f"the token file {p} is readable by other users: run `chmod 600 {p}`.")
        return text[0].strip()
    return new_token()


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[1:].split("]")[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _presented(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get(HEADER) or request.cookies.get(COOKIE) or request.query_params.get("token")


def _deny(request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"error": message}, status_code=status)
    body = (f"<!doctype html><meta charset=utf-8><title>mimiclab</title>"
            f"<body style='font-family:system-ui,sans-serif;margin:3rem'><h1>{status}</h1><p>{message}</p>")
    return Response(body, status_code=status, media_type="text/html")


class Guard:
    """The checks above, as one function the app's middleware calls before any route runs."""

    def __init__(self, token: str | None):
        self.token = token

    def check(self, request: Request) -> Response | None:
        host = _host_name(request.headers.get("host", ""))
        if self.token is None and not is_loopback(host):
            return _deny(request, 403, f"Host {host!r} refused: this workbench answers only on localhost. "
                                       "Start it with --host and a --token to share it.")
        site = request.headers.get("sec-fetch-site")
        # same-site includes other ports of 127.0.0.1: another local web app is not this workbench's page
        if site in ("cross-site", "same-site") and request.url.path.startswith("/api/"):
            return _deny(request, 403, "cross-site request refused: the workbench's API answers its own pages only.")
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("origin")
            if site in ("cross-site", "same-site") or (origin and urlsplit(origin).netloc != request.headers.get("host")):
                return _deny(request, 403, "cross-site request refused.")
        if self.token is None:
            return None
        given = _presented(request)
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            return _deny(request, 401, "This workbench needs its access token: open the link printed by "
                                       "`mimiclab serve` (it ends in ?token=...), or send the header "
                                       "Authorization: Bearer <token>.")
        if request.query_params.get("token") and request.method == "GET" and not request.url.path.startswith("/api/"):
            # First visit through the printed link: keep the token in a cookie, drop it from the address bar.
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + (("?" + urlencode(rest)) if rest else "")
            resp = RedirectResponse(target, status_code=303)
            resp.set_cookie(COOKIE, self.token, httponly=True, samesite="strict", path="/")
            return resp
        return None


def add_headers(response: Response) -> Response:
    for k, v in SECURITY_HEADERS.items():
        response.headers.setdefault(k, v)
    return response


def plain(message: str, status: int = 400) -> Response:
    return PlainTextResponse(message, status_code=status)
