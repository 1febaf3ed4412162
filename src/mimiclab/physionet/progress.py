"""Download progress: on a terminal one overall bar (bytes, rate, ETA) and one line per active file; elsewhere
(a log file, CI, `nohup`) plain lines: one per finished file and a summary line every `every` seconds."""

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

from mimiclab.physionet.transfer import Event


class RichProgress:
    """Callable progress sink; thread-safe (workers call it concurrently). Use as a context manager."""

    def __init__(self, total: int | None, files: int, console: Console | None = None, every: float = 15.0):
        self.console = console or Console(stderr=True)
        self.plain = not self.console.is_terminal
        self.total = total or None
        self.files = files
        self.every = every
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
        # plain mode: bytes on disk (resumed and skipped ones included) and bytes moved in this run
        self.have = 0
        self.moved = 0
        self.finished = 0
        self.file_bytes: dict[str, int] = {}
        self.t0 = self.last = time.monotonic()

    def __enter__(self) -> RichProgress:
        if not self.plain:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if not self.plain:
            self.bar.stop()

    def __call__(self, e: Event) -> None:
        with self.lock:
            self._count(e)
            if self.plain:
                self._plain(e)
            else:
                self._bar(e)

    def _count(self, e: Event) -> None:
        if e.kind == "start":
            self.have += e.nbytes - self.file_bytes.get(e.path, 0)
            self.file_bytes[e.path] = e.nbytes
        elif e.kind == "advance":
            self.have += e.nbytes
            self.moved += e.nbytes
            self.file_bytes[e.path] = self.file_bytes.get(e.path, 0) + e.nbytes
        elif e.kind == "retry":
            self.have -= self.file_bytes.pop(e.path, 0)
        elif e.kind == "skip":
            self.have += e.total or 0
            self.finished += 1
        elif e.kind == "done":
            self.finished += 1

    def _plain(self, e: Event) -> None:
        from mimiclab.physionet.plan import human
        from mimiclab.physionet.ranges import duration

        say = lambda text: self.console.print(escape(text), highlight=False, soft_wrap=True)  # noqa: E731
        if e.kind == "done":
            say(f"done {e.path} ({human(e.total or self.file_bytes.get(e.path, 0))}); "
                f"{self.finished} of {self.files} files")
        elif e.kind in ("retry", "wait"):
            say(f"retry {e.path}: {e.message}")
        elif e.kind == "fail":
            say(f"failed {e.path}: {e.message}")
        now = time.monotonic()
        if e.kind == "advance" and now - self.last >= self.every:
            self.last = now
            rate = self.moved / max(now - self.t0, 1e-9)
            of = f" of {human(self.total)} ({100 * self.have / self.total:.1f}%)" if self.total else ""
            left = (f", about {duration((self.total - self.have) / rate)} left"
                    if self.total and rate > 0 and self.have < self.total else "")
            say(f"{human(self.have)}{of}, {human(rate)}/s{left}")

    def _bar(self, e: Event) -> None:
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
                self.console.print(f"[red]failed[/] {escape(e.path)}: {escape(e.message)}", highlight=False)
        elif e.kind == "skip":
            if e.total:
                self.bar.advance(self.overall, e.total)
        elif e.kind == "wait":
            self.console.print(f"[yellow]retry[/] {escape(e.path)}: {escape(e.message)}", highlight=False)
        elif e.kind == "retry":
            self.console.print(f"[yellow]retry[/] {escape(e.path)}: {escape(e.message)}", highlight=False)
            tid = self.tasks.pop(e.path, None)
            if tid is not None:
                # the bytes of a restarted attempt are counted again at its 'start'; undo this one's
                done = int(self.bar.tasks[[t.id for t in self.bar.tasks].index(tid)].completed)
                self.bar.remove_task(tid)
                self.bar.advance(self.overall, -done)
