"""Memory a worker thread freed goes back to the operating system when asked (glibc's arenas keep it otherwise)."""

from __future__ import annotations

import threading

import numpy as np
import psutil

from semantic_recon_ros.core.process_memory import return_freed_memory

MB = 1 << 20


def test_memory_freed_on_a_worker_thread_is_returned():
    kept = []

    def work():  # as a network run: many mid-size buffers, a few of them outliving the run
        buffers = [np.ones(48 * 1024 // 8) for _ in range(4000)]  # ~190 MB of 48 KB buffers in this thread's arena
        kept.extend(buffers[::32])  # the survivors leave holes, so the arena cannot shrink from its top
        del buffers

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    process = psutil.Process()
    held = process.memory_info().rss
    assert return_freed_memory()
    released = held - process.memory_info().rss
    assert released > 100 * MB, f"only {released / MB:.0f} MB returned"
    assert sum(buffer.nbytes for buffer in kept) < 10 * MB
