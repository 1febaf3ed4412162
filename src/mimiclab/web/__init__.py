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


def create_app(dataset: str | None = None, token: str | None = None, limits=None):
    from mimiclab.web.app import create_app as _create

    return _create(dataset=dataset, token=token, limits=limits)


def serve(dataset: str | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          open_browser: bool = True, token: str | None = None, echo=print) -> None:
    """Run the workbench until Ctrl-C. Any non-loopback host gets a token (generated unless given)."""
    import uvicorn

    from mimiclab.web.security import is_loopback, new_token

    if dataset is not None:
        from mimiclab import catalog

        catalog.get(dataset)  # unknown slug -> CatalogError with close matches, before binding a port
    if not is_loopback(host) and not token:
        token = new_token()
    app = create_app(dataset=dataset, token=token)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{port}/" + (f"d/{dataset}/dictionary" if dataset else "")
    if token:
        url += f"?token={token}"
    echo(f"mimiclab workbench: {url}")
    if not is_loopback(host):
        echo(f"Listening on {host}: anyone who can reach this port needs the token above. Ctrl-C to stop.")
    else:
        echo("Only this machine can open it. Ctrl-C to stop.")
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            server_header=False, date_header=False)
    server = uvicorn.Server(config)
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
        server.run()
    except SystemExit:  # uvicorn exits when it cannot bind
        raise StartError(f"the workbench could not start on {host}:{port} (port in use? try --port).") from None
    except OSError as exc:
        raise StartError(f"cannot listen on {host}:{port}: {exc.strerror or exc}. Try --port.") from None
    finally:
        # uvicorn skips the app's shutdown when it cannot bind: close the databases opened at startup here,
        # or DuckDB aborts the process at exit ("terminate called ...") instead of exiting with the error.
        app.state.workbench.close()

class StartError(MimiclabError):
    """The server could not listen (port in use, address not available)."""


__all__ = ["serve", "create_app", "StartError", "DEFAULT_HOST", "DEFAULT_PORT"]
