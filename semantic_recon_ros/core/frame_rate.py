"""Choosing frames by their stamps: at most a given number per second of stamp time (the sim time of a bag too)."""

from __future__ import annotations

NANOSECONDS_PER_SECOND = 1_000_000_000


class StampRateGate:
    """Admits at most ``rate`` frames per second of their stamps (0: every frame).

    A frame is admitted when its stamp is at least one period after the last admitted one, less :data:`TOLERANCE`
    of a period for the jitter of camera stamps (so a 10 Hz gate takes every third frame of a 30 Hz camera, whose
    three periods are 99.99... ms); a stamp before the last admitted one (a restarted or replayed stream) is admitted
    and the count starts over from it. Not thread-safe: one thread admits.
    """

    TOLERANCE = 0.1  # of a period

    def __init__(self, rate: float) -> None:
        if not rate >= 0:
            raise ValueError(f"frame rate must be >= 0 (0: every frame), got {rate}")
        self.rate = float(rate)
        self._min_gap_ns = 0 if rate == 0 else round((1 - self.TOLERANCE) * NANOSECONDS_PER_SECOND / rate)
        self._last_ns: int | None = None

    def admit(self, stamp_ns: int) -> bool:
        """True when the frame stamped ``stamp_ns`` is taken (it becomes the last admitted one)."""
        if self._last_ns is not None and 0 <= stamp_ns - self._last_ns < self._min_gap_ns:
            return False
        self._last_ns = stamp_ns
        return True
