"""SIGINT / SIGTERM handling that lets a node finish its shutdown work (e.g. saving the map) whatever signals follow.

rclpy's own handlers (installed by ``rclpy.init`` unless told otherwise) shut the context down inside the signal
handler: the executor can fail in the middle of a callback, every later log line fails to reach /rosout ("publisher's
context is invalid"), and a second Ctrl-C raises KeyboardInterrupt in the middle of the save. A node process using
:class:`ShutdownSignals` initializes rclpy with ``signal_handler_options=SignalHandlerOptions.NO``; the first SIGINT
or SIGTERM then only sets :attr:`ShutdownSignals.received`, which the spin loop checks (the Python handler runs when
the executor returns from ``spin_once``, so its timeout bounds the reaction time). The process does its shutdown work
while the context is valid and shuts rclpy down itself. Later signals are ignored; the first of them is reported on
stderr, written directly (a signal handler must not take the locks of a logger that may be in use).
"""

from __future__ import annotations

import os
import signal
import time

SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ShutdownSignals:
    """Records the first SIGINT / SIGTERM as a shutdown request and ignores the later ones.

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

    def install(self) -> "ShutdownSignals":
        """Handle SIGINT and SIGTERM from now on (main thread only); returns self."""
        for signum in SHUTDOWN_SIGNALS:
            signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame) -> None:
        del frame
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = name
            return
        self.ignored += 1
        if self.ignored == 1:
            line = f"[WARN] [{time.time():.9f}] [{self.logger_name}]: {name} ignored: {self.doing} first\n"
            try:
                os.write(2, line.encode())
            except OSError:
                pass


def ignore_shutdown_signals() -> None:
    """Ignore SIGINT and SIGTERM for the rest of the process (its last moments: the work is done, it exits now).

    Python restores the default handlers of signals it handled when the interpreter finalizes, so a late Ctrl-C
    would otherwise still end the process by the signal (exit code -2) after a complete shutdown.
    """
    for signum in SHUTDOWN_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
