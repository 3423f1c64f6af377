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

import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .concurrency import lower_thread_priority
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


class SingleViewStatistics:
    """Thread-safe counters: predictions, skipped by reason, errors, voxels filled; mean time (network, mesh, fill)
    over each status period."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.runs = 0
        self.skipped: dict[str, int] = {}
        self.errors = 0
        self.voxels_filled = 0
        self._seconds: list[float] = []

    def count_run(self, seconds: float, fill: FillStats | None) -> None:
        with self._lock:
            self.runs += 1
            self._seconds.append(seconds)
            self.voxels_filled += 0 if fill is None else fill.voxels_filled

    def count_skip(self, reason: str) -> None:
        with self._lock:
            self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def count_error(self) -> None:
        with self._lock:
            self.errors += 1

    def period_summary(self) -> dict:
        """Cumulative counters plus the mean time of one prediction (network, mesh and fill) since the previous
        call."""
        with self._lock:
            summary = {"runs": self.runs, "skipped": dict(sorted(self.skipped.items())), "errors": self.errors,
                       "voxels_filled": self.voxels_filled,
                       "predict_ms": round(1000 * float(np.mean(self._seconds)), 1) if self._seconds else None}
            self._seconds = []
        return summary


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
        if fill_weight is not None and predictor.class_names != mapper.classes.names:
            raise ValueError(f"the single-view network's classes {list(predictor.class_names)} are not the map's "
                             f"{list(mapper.classes.names)}: it cannot fill the map")
        self.mapper, self.predictor, self.period, self.publish = mapper, predictor, 1.0 / rate, publish
        self.fill_weight, self.log = fill_weight, log or PrintLog()
        self.stats = SingleViewStatistics()
        self._condition = threading.Condition()
        self._candidate: tuple[MapFrame, int, str] | None = None  # newest integrated frame, generation, frame name
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="single_view", daemon=True)
        self._thread.start()

    def offer(self, frame: MapFrame, generation: int, frame_id: str) -> None:
        """The newest integrated frame (received in map ``generation``; ``frame_id`` names its camera frame);
        replaces an older one not yet taken."""
        with self._condition:
            self._candidate = (frame, generation, frame_id)
            self._condition.notify()

    def close(self) -> None:
        """Stop after the prediction in progress (if any) is published."""
        with self._condition:
            self._stop = True
            self._condition.notify()
        self._thread.join()

    def _next(self) -> tuple[MapFrame, int, str] | None:
        with self._condition:
            self._condition.wait_for(lambda: self._stop or self._candidate is not None)
            if self._stop:
                return None
            candidate, self._candidate = self._candidate, None
            return candidate

    def _run(self) -> None:
        problem = lower_thread_priority(SINGLE_VIEW_NICENESS)
        if problem is not None:
            self.log.warning(f"the single-view prediction runs at normal priority: {problem}")
        while (candidate := self._next()) is not None:
            start = time.monotonic()
            self._predict(*candidate)
            with self._condition:  # at most one prediction per period
                self._condition.wait_for(lambda: self._stop, timeout=max(0.0, self.period - (time.monotonic() - start)))

    def _predict(self, frame: MapFrame, generation: int, frame_id: str) -> None:
        start = time.monotonic()
        try:
            prediction = self.predictor.predict(frame.color, frame.camera, frame.T_world_cam)
        except ValueError as error:  # an image the network cannot take (e.g. covering too little of its view)
            self.stats.count_skip("invalid_image")
            self.log.warning(f"single-view prediction skipped a frame: {error}")
            return
        try:
            mesh = prediction.mesh()
            fill = None
            if self.fill_weight is not None:
                fill = self.mapper.fill_unobserved(prediction, self.fill_weight, generation)
                if fill is None:
                    self.stats.count_skip("reset")
                    return
            self.stats.count_run(time.monotonic() - start, fill)
            self.publish(SingleViewResult(prediction, mesh, frame_id, frame.stamp_ns, fill))
        except Exception as error:  # noqa: BLE001 -- the prediction must not stop the mapper
            self.stats.count_error()
            self.log.error(f"single-view prediction failed: {type(error).__name__}: {error}")
