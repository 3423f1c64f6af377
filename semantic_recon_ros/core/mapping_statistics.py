"""Thread-safe counters of a live mapper: frames and drops, integration and meshing times, completion runs."""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np

from .completion import CompletionStats


class MappingStatistics:
    """Thread-safe counters of the node and timings averaged over each status period."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages_in: Counter[str] = Counter()
        self.frames_in = 0
        self.integrated = 0
        self.dropped: Counter[str] = Counter()  # frames (synchronized sets) by reason
        self.dropped_messages: Counter[str] = Counter()  # input messages dropped before synchronization, by reason
        self._integrate_s: list[float] = []
        self._integrate_total_s = 0.0
        self._mesh_s: list[float] = []

    def count_message(self, topic: str) -> None:
        with self._lock:
            self.messages_in[topic] += 1

    def count_frame(self) -> None:
        with self._lock:
            self.frames_in += 1

    def count_drop(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self.dropped[reason] += count

    def count_message_drop(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self.dropped_messages[reason] += count

    def count_integration(self, seconds: float) -> None:
        with self._lock:
            self.integrated += 1
            self._integrate_s.append(seconds)
            self._integrate_total_s += seconds

    def mean_integrate_ms(self) -> float | None:
        """Mean integration time of every frame so far (None before the first)."""
        with self._lock:
            return round(1000 * self._integrate_total_s / self.integrated, 2) if self.integrated else None

    def count_mesh(self, seconds: float) -> None:
        with self._lock:
            self._mesh_s.append(seconds)

    def period_summary(self) -> dict:
        """Cumulative counters plus mean timings since the previous call (which it resets)."""
        with self._lock:
            summary = {
                "frames_in": self.frames_in,
                "integrated": self.integrated,
                "dropped": dict(sorted(self.dropped.items())),
                "messages_in": dict(sorted(self.messages_in.items())),
                "dropped_messages": dict(sorted(self.dropped_messages.items())),
                "integrate_ms": round(1000 * float(np.mean(self._integrate_s)), 1) if self._integrate_s else None,
                "mesh_ms": round(1000 * float(np.mean(self._mesh_s)), 1) if self._mesh_s else None,
            }
            self._integrate_s, self._mesh_s = [], []
        return summary


class CompletionStatistics:
    """Thread-safe counters of the completion runs, with the mean run time over each status period."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.runs = 0
        self.chunks_run = 0
        self.chunks_skipped = 0
        self.chunks_pending = 0
        self.blocks_allocated = 0
        self.errors = 0
        self.integrated_while_computing = 0  # frames fused while the network was computing
        self.caught_up_stamp_ns = 0
        self._run_s: list[float] = []
        self._network_s: list[float] = []

    def count_run(self, stats: CompletionStats, caught_up_stamp_ns: int | None) -> None:
        """One finished run; ``caught_up_stamp_ns``: map stamp whose observations are now all completed, if any."""
        with self._lock:
            self.runs += 1
            self.chunks_run += stats.chunks_run
            self.chunks_skipped += stats.chunks_skipped
            self.chunks_pending = stats.chunks_pending
            self.blocks_allocated += stats.blocks_allocated
            if caught_up_stamp_ns is not None:
                self.caught_up_stamp_ns = caught_up_stamp_ns
            if stats.chunks_run:
                self._run_s.append(stats.seconds)
                self._network_s.append(stats.network_seconds)

    def count_integration_while_computing(self) -> None:
        with self._lock:
            self.integrated_while_computing += 1

    def count_error(self) -> None:
        with self._lock:
            self.errors += 1

    def reset(self) -> None:
        """The map was emptied: nothing is pending, an empty map is complete."""
        with self._lock:
            self.chunks_pending, self.caught_up_stamp_ns = 0, 0

    def period_summary(self) -> dict:
        """Cumulative counters plus mean run and network times (runs that did work) since the previous call."""
        with self._lock:
            summary = {
                "runs": self.runs, "chunks_run": self.chunks_run, "chunks_skipped": self.chunks_skipped,
                "chunks_pending": self.chunks_pending, "blocks_allocated": self.blocks_allocated, "errors": self.errors,
                "integrated_while_computing": self.integrated_while_computing, "stamp_ns": self.caught_up_stamp_ns,
                "run_ms": round(1000 * float(np.mean(self._run_s)), 1) if self._run_s else None,
                "network_ms": round(1000 * float(np.mean(self._network_s)), 1) if self._network_s else None,
            }
            self._run_s, self._network_s = [], []
        return summary
