"""A deadline that ends the process with a chosen exit code even while a C call holds the GIL.

A Python-level bound (a thread joined with a timeout, a SIGALRM handler) needs the GIL to act, so it is powerless
when a C extension blocks without releasing it: rclpy's ``destroy_node`` did exactly that in 1 of 8 shutdowns of a
fresh-clone CI run, and the thread joining it with a 10 s timeout was still waiting 60 s later. :func:`exit_after`
arms a POSIX timer whose expiry runs libc's ``_exit(code)`` on a thread libc creates (``SIGEV_THREAD``), so nothing
in the interpreter has to run. Without POSIX timers in libc (not Linux), Python's faulthandler watchdog (also a C
thread) ends the process instead, with exit code 1.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import faulthandler
import sys
from typing import Callable

CLOCK_MONOTONIC = 1
SIGEV_THREAD = 2


class _SigEvent(ctypes.Structure):
    """``struct sigevent`` of 64-bit Linux (64 bytes), with the ``SIGEV_THREAD`` members of its union."""
    _fields_ = [("value", ctypes.c_void_p), ("signal", ctypes.c_int), ("notify", ctypes.c_int),
                ("function", ctypes.c_void_p), ("attributes", ctypes.c_void_p), ("padding", ctypes.c_byte * 32)]


class _TimeSpec(ctypes.Structure):
    _fields_ = [("seconds", ctypes.c_long), ("nanoseconds", ctypes.c_long)]


class _ITimerSpec(ctypes.Structure):
    _fields_ = [("interval", _TimeSpec), ("first", _TimeSpec)]


def _libc_with_timers() -> ctypes.CDLL | None:
    """libc, or librt for glibc < 2.34, when it has ``timer_create`` on a 64-bit Linux; else None."""
    if not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None
    for name in (None, ctypes.util.find_library("rt")):
        library = ctypes.CDLL(name, use_errno=True)
        if hasattr(library, "timer_create") and hasattr(library, "timer_settime"):
            return library
    return None


def exit_after(seconds: float, code: int = 0) -> Callable[[], None]:
    """End the process with ``code`` in ``seconds`` unless the returned function is called before (it cancels the
    deadline). The process ends like ``os._exit``: nothing is flushed or finalized, so flush what must be seen first.

    Raises:
        OSError: the timer could not be created or armed.
    """
    libc = _libc_with_timers()
    if libc is None:
        faulthandler.dump_traceback_later(seconds, exit=True)
        return faulthandler.cancel_dump_traceback_later
    exit_function = ctypes.cast(ctypes.CDLL(None)._exit, ctypes.c_void_p).value
    event = _SigEvent(value=code, notify=SIGEV_THREAD, function=exit_function)
    timer = ctypes.c_void_p()
    if libc.timer_create(CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(timer)) != 0:
        raise OSError(ctypes.get_errno(), "timer_create failed")
    whole = int(seconds)
    expiry = _ITimerSpec(first=_TimeSpec(whole, max(1, int((seconds - whole) * 1e9))))
    if libc.timer_settime(timer, 0, ctypes.byref(expiry), None) != 0:
        raise OSError(ctypes.get_errno(), "timer_settime failed")
    return lambda: libc.timer_delete(timer)
