"""Rich progress for downloads: one overall bar (bytes, rate, ETA) and one line per active file."""

from __future__ import annotations

import threading

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from mimiclab.physionet.transfer import Event


class RichProgress:
    """Callable progress sink; thread-safe (workers call it concurrently). Use as a context manager."""

    def __init__(self, total: int | None, files: int, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.bar = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(bar_width=None),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
            refresh_per_second=8,
        )
        self.overall = self.bar.add_task(f"total ({files} files)", total=total or None)
        self.tasks: dict[str, TaskID] = {}
        self.lock = threading.Lock()

    def __enter__(self) -> RichProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def __call__(self, e: Event) -> None:
        with self.lock:
            if e.kind == "start":
                tid = self.tasks.get(e.path)
                if tid is None:
                    tid = self.tasks[e.path] = self.bar.add_task(f"  {e.path}", total=e.total)
                self.bar.update(tid, completed=e.nbytes, total=e.total)
                if e.nbytes:
                    self.bar.advance(self.overall, e.nbytes)
            elif e.kind == "advance":
                tid = self.tasks.get(e.path)
                if tid is not None:
                    self.bar.advance(tid, e.nbytes)
                self.bar.advance(self.overall, e.nbytes)
            elif e.kind in ("done", "fail"):
                tid = self.tasks.pop(e.path, None)
                if tid is not None:
                    self.bar.remove_task(tid)
                if e.kind == "fail":
                    self.console.print(f"[red]failed[/] {e.path}: {e.message}", highlight=False)
            elif e.kind == "skip":
                if e.total:
                    self.bar.advance(self.overall, e.total)
            elif e.kind == "retry":
                self.console.print(f"[yellow]retry[/] {e.path}: {e.message}", highlight=False)
                tid = self.tasks.pop(e.path, None)
                if tid is not None:
                    # the bytes of a restarted attempt are counted again at its 'start'; undo this one's
                    done = int(self.bar.tasks[[t.id for t in self.bar.tasks].index(tid)].completed)
                    self.bar.remove_task(tid)
                    self.bar.advance(self.overall, -done)
