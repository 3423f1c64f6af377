"""SIGINT / SIGTERM handling that lets a node finish its shutdown work (e.g. saving the map) whatever signals follow,
and whatever state the executor is in.

rclpy's own handlers (installed by ``rclpy.init`` unless told otherwise) shut the context down inside the signal
handler: the executor can fail in the middle of a callback, every later log line fails to reach /rosout ("publisher's
context is invalid"), and a second Ctrl-C raises KeyboardInterrupt in the middle of the save. A plain Python handler
is no cure either: it runs only when the main thread executes Python code, so a main thread blocked inside the
executor's C++ never sees the signal (a fresh-clone CI run once left a node that had received no message at all
running 60 s after its SIGINT).

:meth:`ShutdownSignals.install` therefore has the interpreter's C-level handler write each signal's number into a
pipe (:func:`signal.set_wakeup_fd`; whichever thread the kernel delivers the signal to) and reads that pipe on a
thread of its own; the Python-level handlers do nothing. The first signal sets :attr:`ShutdownSignals.received` and
runs the callbacks registered with :meth:`ShutdownSignals.on_first` (e.g. waking the executor); later ones are
counted and the first of those is reported on stderr. No signal becomes a KeyboardInterrupt, so nothing interrupts
the shutdown. :func:`ignore_shutdown_signals` keeps a signal arriving while the process exits from changing its exit
code.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Callable

SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ShutdownSignals:
    """Receives SIGINT / SIGTERM on its own thread: the first is a shutdown request, the later ones are ignored.

    Args:
        logger_name: shown in the message about ignored signals (like the node's log lines).
        doing: what the shutdown does, for that message (e.g. "saving the map").

    Attributes:
        received: name of the first signal ("SIGINT", "SIGTERM"), None before any.
        ignored: number of signals ignored after it.
    """

    def __init__(self, logger_name: str, doing: str = "shutting down") -> None:
        self.logger_name = logger_name
        self.doing = doing
        self.received: str | None = None
        self.ignored = 0
        self._first = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def install(self) -> "ShutdownSignals":
        """Receive SIGINT and SIGTERM on a thread of their own from now on (call from the main thread; after
        creating an executor, as newer EventsExecutors install handlers of their own); returns self."""
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        for signum in SHUTDOWN_SIGNALS:
            signal.signal(signum, _nothing)  # the C-level handler still writes the signal into the pipe
        signal.set_wakeup_fd(write_end)
        threading.Thread(target=self._receive, args=(read_end,), name="shutdown_signals", daemon=True).start()
        return self

    def on_first(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (on the signal thread) when the first signal arrives, or now if it already did."""
        with self._lock:
            if self.received is None:
                self._callbacks.append(callback)
                return
        callback()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the first signal at most ``timeout`` seconds; True once it arrived."""
        return self._first.wait(timeout)

    def _receive(self, read_end: int) -> None:
        while True:
            for signum in os.read(read_end, 64):
                if signum in SHUTDOWN_SIGNALS:
                    self._handle(signal.Signals(signum).name)

    def _handle(self, name: str) -> None:
        with self._lock:
            first = self.received is None
            if first:
                self.received = name
                callbacks, self._callbacks = self._callbacks, []
        if first:
            self._first.set()
            for callback in callbacks:
                callback()
            return
        self.ignored += 1
        if self.ignored == 1:
            line = f"[WARN] [{time.time():.9f}] [{self.logger_name}]: {name} ignored: {self.doing} first\n"
            try:
                os.write(2, line.encode())
            except OSError:
                pass


def _nothing(signum: int, frame) -> None:
    """Python-level handler of the shutdown signals: the signal thread of :class:`ShutdownSignals` acts on them."""


def ignore_shutdown_signals() -> None:
    """Ignore SIGINT and SIGTERM for the rest of the process (its last moments: the work is done, it exits now).

    Python restores the default handlers of signals it handled when the interpreter finalizes, so a late Ctrl-C
    would otherwise still end the process by the signal (exit code -2) after a complete shutdown.
    """
    for signum in SHUTDOWN_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
