"""Local and safe by default: loopback-only Host, an access token off loopback, strict CSP, no cross-site writes.

* Without a token the workbench answers only requests whose Host is a loopback name, so a web page that
  re-points its own domain at 127.0.0.1 (DNS rebinding) cannot read the data.
* With a token (required for any non-loopback bind) every request must carry it: `Authorization: Bearer`,
  `X-Mimiclab-Token`, the cookie set after a first `?token=` visit, or the `token` query parameter.
* Every response carries a Content-Security-Policy that allows only this origin: no CDN, no inline script,
  no connection anywhere else.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
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


def new_token() -> str:
    return secrets.token_urlsafe(24)


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
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            site = request.headers.get("sec-fetch-site")
            origin = request.headers.get("origin")
            if site == "cross-site" or (origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host")):
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
