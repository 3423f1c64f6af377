"""Give memory the process freed back to the operating system.

glibc keeps freed heap memory in its arenas (one per thread that allocated, up to 8 per core) for reuse; after a
network run on its own thread has freed hundreds of megabytes of activations, the process's resident memory stays at
its peak. ``malloc_trim(0)`` returns the free pages of every arena to the system. Elsewhere (other C libraries,
macOS, Windows) there is nothing to do and nothing happens.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def return_freed_memory() -> bool:
    """Return the heap's free pages to the operating system; False where the C library cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
