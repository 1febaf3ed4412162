"""The workbench application: `create_app()` returns a FastAPI app serving pages, static assets and /api.

Like datasette: one process, one local site, a JSON API behind every page. FastAPI's /docs and /redoc
are switched off because they load Swagger UI from a CDN; /openapi.json and the local /api page remain.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import time
from functools import lru_cache
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException

from mimiclab import __version__
from mimiclab.catalog import CatalogError
from mimiclab.errors import MimiclabError, NotBuiltError, QueryError
from mimiclab.web import security
from mimiclab.web.core import BusyError, Limits, Workbench

HERE = Path(__file__).parent
log = logging.getLogger("mimiclab.web")


def _status(exc: Exception) -> int:
    if isinstance(exc, (NotBuiltError, CatalogError)):
        return 404
    if isinstance(exc, BusyError):
        return 503
    if isinstance(exc, QueryError):
        return 400
    return 400


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return not request.url.path.startswith(("/api/", "/openapi", "/static/", "/vendor/")) and (
        "text/html" in accept or "application/json" not in accept)


def create_app(dataset: str | None = None, token: str | None = None, limits: Limits | None = None,
               sources=()) -> FastAPI:
    """The workbench. `dataset` is the one pages open by default; `token`, if set, is required on every request;
    `sources`: datasets on servers (PostgreSQL, BigQuery) listed with the local builds."""
    bench = Workbench(dataset, limits, sources=sources)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        bench.warm()
        yield
        bench.close()

    app = FastAPI(title="mimiclab workbench", version=__version__, docs_url=None, redoc_url=None,
                  lifespan=lifespan, description="Local JSON API behind the mimiclab workbench pages. Read-only.")
    app.state.workbench = bench
    app.state.token = token
    guard = security.Guard(token)

    app.add_middleware(_Secure, guard=guard)

    async def _error(request: Request, exc: Exception, status: int, message: str):
        if _wants_html(request):
            from mimiclab.web.pages import error_page

            return error_page(request, status, message, exc)
        return JSONResponse({"error": message, "kind": type(exc).__name__}, status_code=status)

    @app.exception_handler(MimiclabError)
    async def _mimiclab_error(request: Request, exc: MimiclabError):
        return await _error(request, exc, _status(exc), str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors():
            loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path"))
            parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
        return await _error(request, exc, 422, "invalid input: " + "; ".join(parts))

    @app.exception_handler(ValidationError)
    async def _model_validation(request: Request, exc: ValidationError):
        parts = []
        for e in exc.errors():
            loc = ".".join(str(x) for x in e.get("loc", ()))
            msg = str(e.get("msg", "")).removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
        return await _error(request, exc, 422, "invalid input: " + "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        msg = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and msg == "Not Found":
            msg = f"nothing here: {request.url.path}"
        return await _error(request, exc, exc.status_code, msg)

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError):
        # only input can nest this deep (brackets, YAML): a bad request, not a server fault
        return await _error(request, exc, 400, "the input is nested too deeply to read; simplify it.")

    @app.exception_handler(OverflowError)
    async def _too_big(request: Request, exc: OverflowError):
        return await _error(request, exc, 400, f"a number in the input is too large ({exc}).")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return await _error(request, exc, 500, f"unexpected error ({type(exc).__name__}): {exc}")

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    def plotly_js(request: Request) -> Response:
        """plotly.js, served locally, never from a CDN (see static/vendor/README.md)."""
        raw, gz, etag = _plotly()
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"etag": etag})
        headers = {"etag": etag, "cache-control": "public, max-age=86400"}
        if "gzip" in request.headers.get("accept-encoding", ""):
            return Response(gz, media_type="application/javascript",
                            headers={**headers, "content-encoding": "gzip", "vary": "accept-encoding"})
        return Response(raw, media_type="application/javascript", headers=headers)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response((HERE / "static" / "favicon.svg").read_bytes(), media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    from mimiclab.web import api_cohort, api_data, api_patient, api_sql, pages

    app.include_router(api_data.router)
    app.include_router(api_sql.router)
    app.include_router(api_patient.router)
    app.include_router(api_cohort.router)
    app.include_router(pages.router)

    return app


class _Secure:
    """The security guard and headers as plain ASGI middleware (not BaseHTTPMiddleware, which hides the
    client's disconnect from the routes: heavy work must see it to stop)."""

    def __init__(self, app, guard: security.Guard):
        self.app, self.guard = app, guard

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["server-timing"] = f"app;dur={(time.perf_counter() - t0) * 1000:.1f}"
                for k, v in security.SECURITY_HEADERS.items():
                    headers.setdefault(k, v)
            await send(message)

        refused = self.guard.check(Request(scope, receive))
        await (refused or self.app)(scope, receive, send_with_headers)


@lru_cache(maxsize=1)
def _plotly() -> tuple[bytes, bytes, str]:
    path = HERE / "static" / "vendor" / "plotly-basic.min.js"  # scatter + bar: all the pages draw
    if not path.exists():
        import plotly

        path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    raw = path.read_bytes()
    return raw, gzip.compress(raw, compresslevel=6), '"' + hashlib.sha256(raw).hexdigest()[:20] + '"'
