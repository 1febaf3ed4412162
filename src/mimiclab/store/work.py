"""A request's budget: one deadline for all the queries it runs, and a way to stop them from outside.

The workbench wraps each heavy request (SQL, exports, cohorts, distributions) in a `Work`: every query a
store runs while that work is current gets at most the time left, and `cancel()` (the client went away, the
server is stopping) interrupts the query running now and refuses the next one. Stores look the current
work up themselves (`current()`), so the layers between the route and the store need not pass it along.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Iterator

from mimiclab.errors import QueryError

_current: contextvars.ContextVar[Work | None] = contextvars.ContextVar("mimiclab_work", default=None)


class Cancelled(QueryError):
    """The work was stopped: its time ran out, its client left, or the server is stopping."""


class Work:
    def __init__(self, seconds: float | None = None, what: str = "the request"):
        self.seconds = seconds
        self.what = what
        self.deadline = time.monotonic() + seconds if seconds else None
        self.reason: str | None = None
        self._lock = threading.Lock()
        self._interrupts: dict[int, Callable[[], None]] = {}
        self._next = 0
        self._timer: threading.Timer | None = None
        if seconds:
            self._timer = threading.Timer(seconds, self.cancel, args=(self._limit_message(),))
            self._timer.daemon = True
            self._timer.start()

    def _limit_message(self) -> str:
        return (f"{self.what} was stopped at its {self.seconds:g} s time limit; add a WHERE clause or a LIMIT, "
                "or aggregate first.")

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def check(self) -> None:
        """Raise Cancelled if the work was stopped or its time is up."""
        if self.reason is None and self.deadline is not None and time.monotonic() >= self.deadline:
            self.reason = self._limit_message()
        if self.reason is not None:
            raise Cancelled(self.reason)

    def cancel(self, reason: str) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason
            calls = list(self._interrupts.values())
        for interrupt in calls:
            with contextlib.suppress(Exception):
                interrupt()

    @contextlib.contextmanager
    def interruptible(self, interrupt: Callable[[], None]) -> Iterator[None]:
        """While inside, cancel() calls `interrupt` (e.g. a DuckDB cursor's interrupt)."""
        with self._lock:
            key = self._next
            self._next += 1
            self._interrupts[key] = interrupt
        try:
            self.check()
            yield
        finally:
            with self._lock:
                self._interrupts.pop(key, None)

    def done(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    @contextlib.contextmanager
    def running(self) -> Iterator[Work]:
        """Make this the current work of the calling thread (or task) for the duration."""
        token = _current.set(self)
        try:
            yield self
        finally:
            _current.reset(token)


def current() -> Work | None:
    return _current.get()


def budget(max_seconds: float | None) -> tuple[float | None, Work | None]:
    """(seconds the next query may take, the current work): a store's own limit shortened by what is left of
    the current work's; raises Cancelled if that work was stopped. Every store starts a query with this."""
    w = current()
    limit = max_seconds
    if w is not None:
        w.check()
        left = w.remaining()
        if left is not None:
            limit = left if limit is None else min(limit, left)
    return limit, w


def stopped(w: Work | None, limit: float | None) -> QueryError:
    """The error for a query a store interrupted: the work's reason if it was cancelled, else the time limit."""
    if w is not None and w.reason:
        return Cancelled(w.reason)
    return QueryError(f"the query was stopped at the {limit or 0:g} s time limit; add a WHERE clause or a "
                      "LIMIT, or aggregate first.")
