"""Live semantics: a 2D segmenter run on keyframes in the background, its class probabilities fused into the map.

A :class:`KeyframeSegmentation` watches the frames a :class:`~.mapper.Mapper` integrates (the caller
:meth:`~KeyframeSegmentation.offer` s each one after integrating it) and, at most ``rate`` times a second,
segments the newest one that qualifies as a keyframe: the first frame, then a frame whose camera moved at least
``min_translation`` metres or turned ``min_rotation_deg`` degrees since the last keyframe. The segmenter runs on
its own thread at low CPU priority, outside the map's lock; only the fusion of the probabilities
(:meth:`Mapper.integrate_semantics`) takes the lock, so integration never waits for a segmentation. A slow
segmenter lowers the segmentation rate, never the integration rate. Frames received before a reset or load are
not fused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .concurrency import NewestItemWorker, WorkerStatistics
from .mapper import Log, MapFrame, Mapper, PrintLog
from .segmentation import Segmenter

SEGMENTATION_NICENESS = 10  # nice value of the segmentation thread above the process's


@dataclass(frozen=True)
class KeyframePolicy:
    """When a frame is worth segmenting: motion since the last keyframe (metres, degrees)."""

    min_translation: float = 0.05
    min_rotation_deg: float = 5.0

    def moved(self, T_previous: np.ndarray | None, T_current: np.ndarray) -> bool:
        """True for the first keyframe, or when the (4, 4) camera-to-world pose moved enough since ``T_previous``."""
        if T_previous is None:
            return True
        translation = float(np.linalg.norm(T_current[:3, 3] - T_previous[:3, 3]))
        relative = T_previous[:3, :3].T @ T_current[:3, :3]
        angle = float(np.degrees(np.arccos(np.clip((np.trace(relative) - 1) / 2, -1.0, 1.0))))
        return translation >= self.min_translation or angle >= self.min_rotation_deg


class KeyframeSegmentation:
    """Segments keyframes of ``mapper`` with ``segmenter`` in the background (see the module docstring).

    Args:
        mapper: the map the probabilities go into.
        segmenter: ``predict(color (H, W, 3) uint8) -> (H, W, K)`` probabilities of the map's classes.
        rate: most segmentations per second.
        policy: what counts as a keyframe.
        weigh: optional ``(probs, frame) -> probs`` applied before fusion (e.g. a per-pixel confidence).
        log: where errors are reported (a segmentation error never stops mapping).
    """

    def __init__(self, mapper: Mapper, segmenter: Segmenter, rate: float, policy: KeyframePolicy = KeyframePolicy(),
                 weigh: Callable[[np.ndarray, MapFrame], np.ndarray] | None = None, log: Log | None = None):
        if tuple(segmenter.class_names) != mapper.classes.names:
            raise ValueError(f"the segmenter's classes {list(segmenter.class_names)} are not the map's "
                             f"{list(mapper.classes.names)}")
        if rate <= 0:
            raise ValueError(f"segmentation rate must be positive, got {rate}")
        self.mapper, self.segmenter, self.period, self.policy = mapper, segmenter, 1.0 / rate, policy
        self.weigh, self.log = weigh, log or PrintLog()
        self.stats = WorkerStatistics("segment_ms")
        self._last_keyframe_pose: np.ndarray | None = None
        self._last_generation = mapper.generation
        self._worker = NewestItemWorker("segmentation", self.period, self._segment, SEGMENTATION_NICENESS,
                                        self.log.warning)

    def offer(self, frame: MapFrame, generation: int) -> None:
        """The newest integrated frame (received in map ``generation``); replaces an older one not yet taken."""
        self._worker.offer((frame, generation))

    def close(self) -> None:
        """Stop after the segmentation in progress (if any) is fused; closes the segmenter if it can be closed."""
        self._worker.close()
        close_segmenter = getattr(self.segmenter, "close", None)
        if close_segmenter is not None:
            close_segmenter()

    def _segment(self, candidate: tuple[MapFrame, int]) -> bool:
        """Segment and fuse one frame if it is a keyframe; True when it did."""
        start = time.monotonic()
        frame, generation = candidate
        if generation != self._last_generation:  # the map was reset or loaded: start the keyframes afresh
            self._last_generation, self._last_keyframe_pose = generation, None
        if not self.policy.moved(self._last_keyframe_pose, frame.T_world_cam):
            self.stats.count_skip("no_motion")
            return False
        try:
            probs = self.segmenter.predict(frame.color)
            if self.weigh is not None:
                probs = self.weigh(probs, frame)
            stats = self.mapper.integrate_semantics(frame, probs, generation)
        except Exception as error:  # noqa: BLE001 -- segmentation must not stop the mapper
            self.stats.count_error()
            self.log.error(f"segmentation failed: {type(error).__name__}: {error}")
            return False
        if stats is None:
            self.stats.count_skip("reset")
            return False
        self._last_keyframe_pose = frame.T_world_cam
        self.stats.count_run(time.monotonic() - start)
        return True
