"""The local web workbench: `mimiclab serve` (or `mimiclab.web.serve()`) -> pages + a JSON API on 127.0.0.1.

Everything it serves comes from this package (plotly.js from the installed plotly package); it makes no
request of its own to anything but this machine, except PhysioNet's access check when the user asks.
"""

from __future__ import annotations

import threading
import webbrowser

from mimiclab.errors import MimiclabError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def create_app(dataset: str | None = None, token: str | None = None, limits=None, sources=()):
    """The workbench app. `sources`: datasets on servers (Source objects, e.g. `mimiclab.sources.open_source(url)`)
    shown beside the local builds."""
    from mimiclab.web.app import create_app as _create

    return _create(dataset=dataset, token=token, limits=limits, sources=sources)


def open_sources(targets, dataset: str | None = None) -> list:
    """Server URLs (postgresql://, bigquery://) as Sources, connected now so a wrong URL is the only message.
    On PostgreSQL, `dataset` picks which published dataset of the database to show."""
    from mimiclab.sources import is_url, open_source

    out = []
    for t in targets or ():
        if not isinstance(t, str):
            out.append(t)
            continue
        if not is_url(t):
            raise MimiclabError(f"{t!r} is not a server URL: give postgresql://... or bigquery://... "
                                "(local builds are listed without naming them; --dataset picks the one shown first).")
        kw = {"dataset": dataset} if dataset and t.lower().startswith(("postgresql://", "postgres://")) else {}
        out.append(open_source(t, **kw))
    return out


def serve(dataset: str | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          open_browser: bool = True, token: str | None = None, echo=print, *, no_token: bool = False,
          token_file: str | None = None, sources=()) -> None:
    """Run the workbench until Ctrl-C or SIGTERM. A token is required unless `no_token` (loopback only).
    `sources`: server URLs or Sources to serve beside the local builds."""
    import uvicorn

    from mimiclab.web.security import TokenError, binds_loopback, resolve_token

    if dataset is not None:
        from mimiclab import catalog

        catalog.get(dataset)  # unknown slug -> CatalogError with close matches, before binding a port
    sources = open_sources(sources, dataset)
    if dataset is None and sources:
        dataset = sources[0].slug
    loopback = binds_loopback(host)
    if no_token and not loopback:
        raise StartError(f"--no-token is only for a workbench on this machine alone, and {host} is not a loopback "
                         "address: anyone who can reach it would see the data. Drop --no-token.")
    try:
        token = resolve_token(token, token_file, no_token)
    except TokenError as exc:
        raise StartError(str(exc)) from None
    sock = _listen(host, port)  # before anything is printed: a port in use is the only message
    app = create_app(dataset=dataset, token=token, sources=sources)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{port}/" + (f"d/{dataset}/dictionary" if dataset else "")
    if token:
        url += f"?token={token}"
    echo(f"mimiclab workbench: {url}")
    if not loopback:
        echo(f"Listening on {host}: anyone who can reach this port needs the token above. Ctrl-C to stop.")
    elif token:
        echo("Only this machine can reach it, and only with the token above. Ctrl-C to stop.")
    else:
        echo("Only this machine can reach it; no token (--no-token): every local user can open it. Ctrl-C to stop.")
    config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False, date_header=False,
                            timeout_graceful_shutdown=5)
    bench = app.state.workbench

    class _Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:  # Ctrl-C, SIGTERM: stop running queries, then exit
            bench.cancel_all("the workbench is stopping.")
            super().handle_exit(sig, frame)

    server = _Server(config)
    if open_browser:
        def _open() -> None:
            import time

            for _ in range(100):
                if server.started:
                    break
                time.sleep(0.05)
            if server.started:
                webbrowser.open(url)

        threading.Thread(target=_open, daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        # uvicorn skips the app's shutdown when it cannot start: close the databases opened at startup here,
        # or DuckDB aborts the process at exit ("terminate called ...") instead of exiting with the error.
        bench.close()
        sock.close()


def _listen(host: str, port: int):
    """A bound socket for uvicorn, or StartError saying why not (port in use, address not here)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise StartError(f"cannot listen on {host}:{port}: {exc.strerror or exc}.") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        if exc.errno in (98, 48):  # EADDRINUSE on Linux, macOS
            raise StartError(f"the workbench could not start on {host}:{port}: the port is in use "
                             "(another workbench? try --port).") from None
        raise StartError(f"cannot listen on {host}:{port}: {exc.strerror or exc}. Try --port.") from None
    sock.set_inheritable(True)
    return sock


class StartError(MimiclabError):
    """The server could not listen (port in use, address not available)."""


__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "StartError", "create_app", "open_sources", "serve"]
