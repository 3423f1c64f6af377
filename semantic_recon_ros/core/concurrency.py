"""Thread helpers of the live mapper: a mutex granted in request order, a bounded drop-oldest frame queue, lower CPU
priority for background threads, and a background worker on the newest offered item with its counters."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import Callable

import numpy as np


class FairLock:
    """A mutex granted in request order: with ``threading.Lock`` the worker, re-acquiring right after each
    frame, can starve the publishing timers and services for as long as frames keep coming."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._next_ticket = 0
        self._serving = 0

    def __enter__(self) -> None:
        with self._condition:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._condition.wait_for(lambda: self._serving == ticket)

    def __exit__(self, *exc_info) -> None:
        with self._condition:
            self._serving += 1
            self._condition.notify_all()


class FrameQueue:
    """Bounded FIFO between the input callbacks and the worker; putting into a full queue drops the oldest item."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"queue capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items: deque = deque()
        self._condition = threading.Condition()

    def put(self, item) -> object | None:
        """Append ``item``; returns the item dropped to make room, or None."""
        with self._condition:
            dropped = self._items.popleft() if len(self._items) >= self.capacity else None
            self._items.append(item)
            self._condition.notify()
        return dropped

    def get(self, timeout: float) -> object | None:
        """The oldest item, waiting up to ``timeout`` seconds; None when still empty."""
        with self._condition:
            if not self._items:
                self._condition.wait(timeout)
            return self._items.popleft() if self._items else None

    def clear(self) -> int:
        """Remove every item; returns how many."""
        with self._condition:
            count = len(self._items)
            self._items.clear()
        return count

    def __len__(self) -> int:
        with self._condition:
            return len(self._items)


def lower_thread_priority(niceness: int) -> str | None:
    """Raise the calling thread's nice value by ``niceness`` above the process's (Linux: per thread), so it takes
    only CPU time the other threads leave; returns why it could not (not Linux, not permitted), else None."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                       min(19, os.getpriority(os.PRIO_PROCESS, 0) + niceness))
    except (AttributeError, OSError) as error:
        return str(error)
    return None


class WorkerStatistics:
    """Thread-safe counters of a background worker: runs, skipped by reason, errors, and the mean time of a run over
    each status period, reported in milliseconds under ``time_key``."""

    def __init__(self, time_key: str) -> None:
        self.time_key = time_key
        self._lock = threading.Lock()
        self.runs = 0
        self.skipped: dict[str, int] = {}
        self.errors = 0
        self._seconds: list[float] = []

    def count_run(self, seconds: float) -> None:
        with self._lock:
            self.runs += 1
            self._seconds.append(seconds)

    def count_skip(self, reason: str) -> None:
        with self._lock:
            self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def count_error(self) -> None:
        with self._lock:
            self.errors += 1

    def period_summary(self) -> dict:
        """Cumulative counters plus the mean time of a run since the previous call (None without runs)."""
        with self._lock:
            summary = {"runs": self.runs, "skipped": dict(sorted(self.skipped.items())), "errors": self.errors,
                       self.time_key: round(1000 * float(np.mean(self._seconds)), 1) if self._seconds else None}
            self._seconds = []
        return summary


class NewestItemWorker:
    """Calls ``handle(item)`` on its own thread, at ``niceness`` above the process's nice value, for the newest item
    :meth:`offer` ed (an item not yet taken is replaced by a newer one). After a call that returns True (it did its
    work) the next waits until ``period`` seconds after its start: at most one run per period, and a slow ``handle``
    lowers the rate of runs, never the caller's. ``warn`` gets the reason when the priority cannot be lowered."""

    def __init__(self, name: str, period: float, handle: Callable[[object], bool], niceness: int,
                 warn: Callable[[str], None]) -> None:
        self.name, self.period, self._handle, self._niceness, self._warn = name, period, handle, niceness, warn
        self._condition = threading.Condition()
        self._item: object | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def offer(self, item: object) -> None:
        """The newest item; replaces an older one not yet taken."""
        with self._condition:
            self._item = item
            self._condition.notify()

    def close(self) -> None:
        """Stop after the call in progress (if any) returns."""
        with self._condition:
            self._stop = True
            self._condition.notify()
        self._thread.join()

    def _next(self) -> object | None:
        with self._condition:
            self._condition.wait_for(lambda: self._stop or self._item is not None)
            if self._stop:
                return None
            item, self._item = self._item, None
            return item

    def _run(self) -> None:
        problem = lower_thread_priority(self._niceness)
        if problem is not None:
            self._warn(f"the {self.name} thread runs at normal priority: {problem}")
        while (item := self._next()) is not None:
            start = time.monotonic()
            if self._handle(item):
                with self._condition:
                    self._condition.wait_for(lambda: self._stop,
                                             timeout=max(0.0, self.period - (time.monotonic() - start)))
