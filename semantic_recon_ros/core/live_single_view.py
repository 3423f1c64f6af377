"""Live single-view prediction: the single-view network run on the newest integrated frame in the background.

A :class:`LiveSingleView` watches the frames a :class:`~.mapper.Mapper` integrates (the caller
:meth:`~LiveSingleView.offer` s each one after integrating it) and, at most ``rate`` times a second, predicts the
newest one (:class:`~.single_view_prediction.SingleViewPredictor`) on its own thread at low CPU priority, outside the
map's lock, and hands the prediction and its semantic mesh (camera frame) to ``publish``. With a ``fill_weight`` it
also writes the prediction into the map's never-observed voxels (:meth:`.Mapper.fill_unobserved`: resampled outside
the lock, written under it), so integration never waits for the network. A slow network lowers the prediction rate,
never the integration rate. Frames received before a reset or load are not filled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from .concurrency import NewestItemWorker, WorkerStatistics
from .mapper import Log, MapFrame, Mapper, PrintLog
from .mesh import SemanticMesh
from .single_view_prediction import FillStats, SingleViewPrediction, SingleViewPredictor

SINGLE_VIEW_NICENESS = 10  # nice value of the prediction thread above the process's


@dataclass
class SingleViewResult:
    """One prediction of the newest frame: ``mesh`` in the camera frame ``frame_id`` at ``stamp_ns``; ``fill`` what it
    wrote into the map (None without filling)."""

    prediction: SingleViewPrediction
    mesh: SemanticMesh
    frame_id: str
    stamp_ns: int
    fill: FillStats | None


class SingleViewStatistics(WorkerStatistics):
    """The worker's counters (:class:`~.concurrency.WorkerStatistics`, mean ``predict_ms``: network, mesh and fill)
    plus the voxels filled."""

    def __init__(self) -> None:
        super().__init__("predict_ms")
        self.voxels_filled = 0

    def count_fill(self, fill: FillStats) -> None:
        with self._lock:
            self.voxels_filled += fill.voxels_filled

    def period_summary(self) -> dict:
        summary = super().period_summary()
        with self._lock:
            return {**summary, "voxels_filled": self.voxels_filled}


class LiveSingleView:
    """Predicts the newest integrated frame of ``mapper`` with ``predictor`` in the background (see the module
    docstring).

    Args:
        mapper: the map the frames were integrated into (and that fills go into).
        predictor: the loaded single-view network.
        rate: most predictions per second (> 0).
        publish: called on the prediction thread with every :class:`SingleViewResult`.
        fill_weight: write every prediction into the never-observed voxels with this weight in (0, 1); None: never.
        log: where errors are reported (a failed prediction never stops mapping).
    """

    def __init__(self, mapper: Mapper, predictor: SingleViewPredictor, rate: float,
                 publish: Callable[[SingleViewResult], None], fill_weight: float | None = None,
                 log: Log | None = None) -> None:
        if rate <= 0:
            raise ValueError(f"single-view rate must be positive, got {rate}")
        if fill_weight is not None and not 0.0 < fill_weight < 1.0:
            raise ValueError(f"the fill weight must lie in (0, 1), got {fill_weight}")
        if predictor.needs_depth and mapper.rgb_only:
            raise ValueError("the single-view model reads depth as well as color, and an RGB-only map's frames have "
                             "no depth: use an image-only single-view model")
        if fill_weight is not None and predictor.class_names != mapper.classes.names:
            raise ValueError(f"the single-view network's classes {list(predictor.class_names)} are not the map's "
                             f"{list(mapper.classes.names)}: it cannot fill the map")
        self.mapper, self.predictor, self.period, self.publish = mapper, predictor, 1.0 / rate, publish
        self.fill_weight, self.log = fill_weight, log or PrintLog()
        self.stats = SingleViewStatistics()
        self._worker = NewestItemWorker("single-view", self.period, self._predict, SINGLE_VIEW_NICENESS,
                                        self.log.warning)

    def offer(self, frame: MapFrame, generation: int, frame_id: str) -> None:
        """The newest integrated frame (received in map ``generation``; ``frame_id`` names its camera frame);
        replaces an older one not yet taken."""
        self._worker.offer((frame, generation, frame_id))

    def close(self) -> None:
        """Stop after the prediction in progress (if any) is published."""
        self._worker.close()

    def _predict(self, candidate: tuple[MapFrame, int, str]) -> bool:
        """Predict one frame, fill the map with it when asked, publish it; False only when the map was reset
        since the frame (the next frame may run at once)."""
        frame, generation, frame_id = candidate
        start = time.monotonic()
        try:
            prediction = self.predictor.predict(frame.color, frame.camera, frame.T_world_cam, frame.depth)
        except ValueError as error:  # an image the network cannot take (e.g. covering too little of its view)
            self.stats.count_skip("invalid_image")
            self.log.warning(f"single-view prediction skipped a frame: {error}")
            return True  # the next waits a period: one warning per period, not one per frame
        try:
            mesh = prediction.mesh()
            fill = None
            if self.fill_weight is not None:
                fill = self.mapper.fill_unobserved(prediction, self.fill_weight, generation)
                if fill is None:
                    self.stats.count_skip("reset")
                    return False
                self.stats.count_fill(fill)
            self.stats.count_run(time.monotonic() - start)
            self.publish(SingleViewResult(prediction, mesh, frame_id, frame.stamp_ns, fill))
        except Exception as error:  # noqa: BLE001 -- the prediction must not stop the mapper
            self.stats.count_error()
            self.log.error(f"single-view prediction failed: {type(error).__name__}: {error}")
        return True
