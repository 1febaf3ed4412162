"""`mimiclab access | login | logout | download`: the CLI face of mimiclab.physionet."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from mimiclab.cli import app
from mimiclab.cli._common import console, err_console, friendly_errors

_STATE_STYLE = {
    "open": "green", "allowed": "green", "no-credentials": "yellow", "bad-credentials": "red",
    "forbidden": "red", "not-found": "red", "unreachable": "yellow", "insecure": "red",
}


@app.command()
def access(
    slug: str = typer.Argument(None, help="Dataset slug (e.g. mimiciv). Without one: every catalog dataset."),
    version: str = typer.Option(None, "--version", "-v", help="Dataset version (default: the catalog's)."),
    mirror: str = typer.Option(None, "--mirror", help="PhysioNet mirror URL or local folder.", envvar="MIMICLAB_PHYSIONET_URL"),
    check: bool = typer.Option(True, "--check/--no-check", help="Ask PhysioNet what this account can do now."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds per request."),
) -> None:
    """How to get access to a dataset, and whether your account has it right now."""
    from mimiclab import catalog
    from mimiclab.physionet import access as acc
    from mimiclab.physionet import credentials

    with friendly_errors():
        if slug:
            console.print(escape(acc.guide(slug, version)), highlight=False)
            if not check:
                return
            st = acc.check_access(slug, version, mirror=mirror, timeout=timeout)
            console.print()
            console.print(f"Now: [{_STATE_STYLE.get(st.state, 'white')}]{st.state}[/] — {escape(st.message)}",
                          highlight=False)
            if not st.ok:
                raise typer.Exit(2)
            return
        from mimiclab.physionet.mirror import resolve_with_login

        creds = resolve_with_login(mirror)[1] or credentials.load()
        table = Table(title="PhysioNet datasets")
        for col in ("dataset", "version", "access", "now" if check else "page"):
            table.add_column(col)
        statuses = acc.check_all(mirror=mirror, timeout=timeout) if check else []
        by_slug = {s.slug: s for s in statuses}
        for ds in catalog.datasets():
            found = by_slug.get(ds.slug)
            if found:
                now = f"[{_STATE_STYLE.get(found.state, 'white')}]{found.state}[/]"
            else:
                now = escape(ds.page) if ds.access in ("open", "credentialed") else "made locally"
            table.add_row(ds.slug, ds.default_version, ds.access, now)
        console.print(table)
        if check and creds is None:
            console.print("No PhysioNet credentials found: credentialed datasets show as no-credentials. "
                          "Run `mimiclab login`.", highlight=False)
        console.print("Details and steps for one dataset: mimiclab access <slug>", highlight=False)


@app.command()
def login(
    username: str = typer.Option(None, "--username", "-u", help="PhysioNet username (prompted if omitted)."),
) -> None:
    """Store your PhysioNet username and password (system keyring, else a private 0600 file)."""
    from mimiclab.physionet import credentials

    with friendly_errors():
        user = username or typer.prompt("PhysioNet username")
        pw = typer.prompt("PhysioNet password", hide_input=True)
        where = credentials.store(credentials.Credentials(user.strip(), pw, "prompt"))
        console.print(f"Stored credentials for {escape(user.strip())} in {escape(where)}.", highlight=False)
        console.print("Check what they give access to: mimiclab access", highlight=False)


@app.command()
def logout() -> None:
    """Forget the stored PhysioNet credentials (environment variables and ~/.netrc are left alone)."""
    import os

    from mimiclab.physionet import credentials

    with friendly_errors():
        removed = credentials.delete()
        if removed:
            console.print(f"Removed stored credentials from {escape(', '.join(removed))}.", highlight=False)
        else:
            console.print("No stored credentials to remove.")
        if os.environ.get("PHYSIONET_USERNAME") or credentials.from_netrc() is not None:
            console.print("Note: credentials are still provided by PHYSIONET_USERNAME/PASSWORD or ~/.netrc.",
                          highlight=False)


@app.command()
def download(
    slug: str = typer.Argument(..., help="Dataset slug, e.g. mimic-iv-demo or mimiciv."),
    version: str = typer.Option(None, "--version", "-v", help="Version (default: the catalog's)."),
    modules: str = typer.Option(None, "--modules", "-m", help="Comma-separated folders, e.g. hosp,icu."),
    tables: str = typer.Option(None, "--tables", "-t", help="Comma-separated tables, e.g. admissions,patients."),
    dest: Path = typer.Option(None, "--dest", "-d", help="Target folder (default: $MIMICLAB_HOME/raw/<slug>/<version>)."),
    connections: int = typer.Option(
        8, "--connections", "-c", min=1, max=64,
        help="Requests at once, one cap shared by all files; large files are fetched as byte ranges over several "
             "(PhysioNet caps each connection at ~50 KB/s, not a client's total)."),
    jobs: int = typer.Option(None, "--jobs", "-j", min=1, max=64, help="Former name of --connections."),
    mirror: str = typer.Option(None, "--mirror", help="Mirror URL standing in for https://physionet.org, or a local folder.",
                               envvar="MIMICLAB_PHYSIONET_URL"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be fetched and stop."),
    verbose: bool = typer.Option(False, "--verbose", help="Trace HTTP requests (credentials redacted)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Download a dataset version from PhysioNet, verified against its SHA256SUMS.txt; resumable."""
    from mimiclab.physionet import download as dl
    from mimiclab.physionet.plan import human

    def show_plan(plan) -> None:
        size = human(plan.total_bytes) + ("" if plan.sizes_known else "+")
        console.print(f"Plan: {len(plan.files)} files, {size}, from {escape(plan.source)} to {escape(str(plan.dest))}",
                      highlight=False)
        for n in plan.notes:
            console.print(f"  note: {escape(n)}", highlight=False)
        if dry_run:
            t = Table(show_header=True)
            t.add_column("file")
            t.add_column("size", justify="right")
            for f in plan.files:
                t.add_row(escape(f.path), human(f.size) if f.size is not None else "?")
            console.print(t)

    def show_estimate(e) -> None:
        console.print(escape(e.describe()[0].upper() + e.describe()[1:]) + ".", highlight=False)

    trace = (lambda line: err_console.print(escape(line), highlight=False, soft_wrap=True)) if verbose else None
    with friendly_errors():
        t0 = time.perf_counter()
        res = dl(slug, version=version, modules=modules, tables=tables, dest=dest, mirror=mirror,
                 connections=jobs or connections, dry_run=dry_run, progress=not quiet and not dry_run, trace=trace,
                 on_plan=show_plan, on_estimate=show_estimate)
        if dry_run:
            console.print("Dry run: nothing fetched.")
            return
        dt = time.perf_counter() - t0
        if res.up_to_date:
            console.print(f"All {len(res.skipped)} files already present and verified in {escape(str(res.dest))}: "
                          "nothing to transfer.", highlight=False)
        else:
            rate = res.bytes_transferred / dt if dt > 0 else 0
            console.print(
                f"Fetched {len(res.fetched)} files ({human(res.bytes_transferred)}, {human(rate)}/s), "
                f"{len(res.skipped)} already verified; all match SHA256SUMS.txt. In {escape(str(res.dest))}",
                highlight=False)
