"""What `mimiclab build` shows while it works: per table and overall, rows, bytes and an ETA.

On a terminal: one overall bar (compressed bytes read of all tables to load, rate, time left) and one line
per table being loaded. Elsewhere (a log file, CI, `nohup`): plain lines, no bar art: one per table as it
starts and ends, and every `every` seconds one line with the overall figures and the time left. A full
MIMIC-IV build takes many minutes; a silent log for that long reads as a hang.
"""

from __future__ import annotations

import threading
import time

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from mimiclab.physionet.plan import human
from mimiclab.physionet.ranges import duration


class BuildProgress:
    """The build's progress callback (``progress(event, key, **info)``); thread-safe: tables load in parallel."""

    def __init__(self, console: Console, every: float = 15.0, clock=time.monotonic):
        self.console, self.every, self.clock = console, every, clock
        self.plain = not console.is_terminal
        self.lock = threading.Lock()
        self.total = 0  # compressed bytes of the tables to load
        self.tables = 0
        self.finished = 0
        self.done_bytes: dict[str, int] = {}  # table -> compressed bytes read
        self.rows: dict[str, int] = {}
        self.sizes: dict[str, int] = {}
        self.t0 = self.last = clock()
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(bar_width=None), DownloadColumn(),
                            TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=True)
        self.overall: TaskID | None = None
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> BuildProgress:
        if not self.plain:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if not self.plain:
            self.bar.stop()

    # what a log line or the bar says, from the counts alone (tested without a console)
    def summary(self) -> str:
        """The overall line: bytes read of the total, rows, tables, and the time left at the rate so far."""
        done = sum(self.done_bytes.values())
        elapsed = max(self.clock() - self.t0, 1e-9)
        rows = sum(self.rows.values())
        text = f"{human(done)} of {human(self.total)} read"
        if self.total:
            text += f" ({100 * done / self.total:.0f}%)"
        text += f", {rows:,} rows, {self.finished} of {self.tables} tables"
        rate = done / elapsed
        if self.total and done and rate > 0 and done < self.total:
            text += f", about {duration((self.total - done) / rate)} left"
        return text

    def __call__(self, event: str, key: str | None, **info) -> None:
        with self.lock:
            self._count(event, key, info)
            if self.plain:
                self._plain(event, key, info)
            else:
                self._bar(event, key, info)

    def _count(self, event: str, key: str | None, info: dict) -> None:
        if event == "plan":
            self.total, self.tables = int(info.get("bytes") or 0), int(info.get("tables") or 0)
            self.t0 = self.last = self.clock()
        elif key is None:
            return
        elif event == "loading":
            self.sizes[key] = int(info.get("size") or 0)
            self.done_bytes.setdefault(key, 0)
        elif event == "progress":
            self.done_bytes[key] = int(info.get("bytes") or 0)
            self.rows[key] = int(info.get("rows") or 0)
        elif event in ("loaded", "failed"):
            self.finished += 1
            self.done_bytes[key] = self.sizes.get(key, self.done_bytes.get(key, 0))
            if event == "loaded":
                self.rows[key] = int(info.get("rows") or 0)

    def _say(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)

    def _plain(self, event: str, key: str | None, info: dict) -> None:
        if event == "plan" and self.tables:
            self._say(f"loading {self.tables} table{'s' if self.tables != 1 else ''}, {human(self.total)} of csv.gz")
        elif event == "loading":
            self._say(f"loading {escape(str(key))} ({human(info.get('size') or 0)})")
        elif event == "progress" and self.clock() - self.last >= self.every:
            self.last = self.clock()
            self._say(self.summary())
        self._common(event, key, info)

    def _bar(self, event: str, key: str | None, info: dict) -> None:
        if event == "plan":
            self.overall = self.bar.add_task(f"total ({self.tables} tables)", total=self.total or None)
        elif event == "loading" and key is not None:
            self.tasks[key] = self.bar.add_task(f"  {escape(key)}", total=info.get("size") or None)
        elif event == "progress" and key in self.tasks:
            self.bar.update(self.tasks[key], completed=info.get("bytes") or 0,
                            description=f"  {escape(key)}: {int(info.get('rows') or 0):,} rows")
        elif event in ("loaded", "failed") and key in self.tasks:
            self.bar.remove_task(self.tasks.pop(key))
        if self.overall is not None:
            self.bar.update(self.overall, completed=sum(self.done_bytes.values()))
        self._common(event, key, info)

    def _common(self, event: str, key: str | None, info: dict) -> None:
        k = escape(str(key))
        if event == "loaded":
            mark = {"ok": "[green]ok[/]", "mismatch": "[yellow]count differs from catalog[/]"}.get(info["check"], "")
            self._say(f"  [green]loaded[/]  {k}: {info['rows']:,} rows in {info['seconds']:.2f} s {mark}")
        elif event == "skipped":
            self._say(f"  [dim]unchanged {k}: {info['rows']:,} rows[/]")
        elif event == "resumed":
            self._say(f"  [green]resumed[/] {k}: finished by an interrupted build, not parsed again")
        elif event == "gone":
            self._say(f"  [yellow]kept[/]    {k}: source file {escape(str(info['file']))} is gone; "
                      f"{info['rows']:,} rows from the previous build kept")
        elif event == "missing":
            self._say(f"  [yellow]not loaded[/] {k}: source file absent (empty typed table)")
        elif event == "waiting":
            self._say("waiting for another build of this dataset to finish")
        elif event == "publishing":
            self._say(f"writing the database ({info['storage']} tables)")
        elif event == "failed":
            self._say(f"  [red]failed[/]  {escape(str(info['error']))}")
