"""One posed RGB-D observation, the unit every reader yields and the fusion consumes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .camera import PinholeCamera, check_rigid


@dataclass
class RGBDFrame:
    """A posed camera frame.

    Attributes:
        color: (H, W, 3) uint8 RGB image.
        depth: (H, W) float32 z-depth in metres (0 / NaN / inf = invalid), or None for RGB-only input.
        camera: intrinsics of both images (color and depth are registered, same size).
        T_world_cam: (4, 4) float64 camera-to-world rigid transform (see :mod:`.camera`).
        timestamp: seconds.
        labels: optional (H, W) integer class ids; any value outside ``[0, num_classes)`` is unlabeled.
        name: identifier used in error messages and logs (e.g. the file stem).
    """

    color: np.ndarray
    depth: np.ndarray | None
    camera: PinholeCamera
    T_world_cam: np.ndarray
    timestamp: float = 0.0
    labels: np.ndarray | None = None
    name: str = ""

    def validate(self) -> "RGBDFrame":
        """Check shapes, dtypes and the pose; raise ValueError naming the frame. Returns self."""
        where = f"frame {self.name!r}: " if self.name else ""
        shape = self.camera.shape
        if self.color.dtype != np.uint8 or self.color.ndim != 3 or self.color.shape[2] != 3:
            raise ValueError(f"{where}color must be (H, W, 3) uint8, got {self.color.shape} {self.color.dtype}")
        if self.color.shape[:2] != shape:
            raise ValueError(f"{where}color is {self.color.shape[:2]}, camera expects {shape}")
        if self.depth is not None:
            if self.depth.ndim != 2 or not np.issubdtype(self.depth.dtype, np.floating):
                raise ValueError(f"{where}depth must be (H, W) float metres, got {self.depth.shape} {self.depth.dtype}")
            if self.depth.shape != shape:
                raise ValueError(f"{where}depth is {self.depth.shape}, camera expects {shape}")
        if self.labels is not None:
            if self.labels.shape != shape or not np.issubdtype(self.labels.dtype, np.integer):
                raise ValueError(f"{where}labels must be (H, W) integers, got {self.labels.shape} {self.labels.dtype}")
        self.T_world_cam = check_rigid(self.T_world_cam, f"{where}T_world_cam")
        return self
