"""Frames chosen by their stamps: a rate gate takes every n-th frame of a steady camera, whatever the jitter."""

from __future__ import annotations

import numpy as np
import pytest

from semantic_recon_ros.core.frame_rate import StampRateGate

SEC = 1_000_000_000
START = 1_700_000_000 * SEC


def admitted(gate: StampRateGate, stamps) -> list[int]:
    return [index for index, stamp in enumerate(stamps) if gate.admit(int(stamp))]


@pytest.mark.parametrize("rate, every", [(10.0, 3), (15.0, 2), (30.0, 1), (0.0, 1), (5.0, 6), (12.0, 3)])
def test_a_steady_30_hz_camera_is_thinned_to_every_nth_frame(rate, every):
    stamps = [START + round(i * SEC / 30) for i in range(90)]
    assert admitted(StampRateGate(rate), stamps) == list(range(0, 90, every))


def test_jittered_stamps_keep_the_rate_and_a_restarted_stream_starts_over():
    jitter = np.random.default_rng(0).integers(-3_000_000, 3_000_000, 300)  # +-3 ms
    stamps = [START + round(i * SEC / 30) + int(j) for i, j in enumerate(jitter)]
    taken = admitted(StampRateGate(10.0), stamps)
    assert len(taken) == 100 and set(np.diff(taken)) == {3}
    gate = StampRateGate(10.0)
    assert admitted(gate, stamps[:10]) == [0, 3, 6, 9]
    assert gate.admit(stamps[0]) and not gate.admit(stamps[1]) and gate.admit(stamps[3])  # replayed from the start


def test_a_negative_rate_is_refused():
    with pytest.raises(ValueError, match="frame rate must be >= 0"):
        StampRateGate(-1.0)
