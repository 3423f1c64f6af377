"""Thread helpers of the live mapper: a mutex granted in request order, a bounded drop-oldest frame queue, and
lower CPU priority for background threads."""

from __future__ import annotations

import os
import threading
from collections import deque


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
