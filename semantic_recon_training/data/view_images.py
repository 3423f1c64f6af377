"""Frames at a reduced resolution: the views that supervise training chunks and the held-out views of the evaluation.

A view keeps every ``factor``-th pixel of a frame (nearest neighbour, :func:`pick_pixels`), so depth values and
label ids stay exact, and gets the intrinsics of that pixel grid (:func:`downscale_camera`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from semantic_recon_ros.core.camera import PinholeCamera
from semantic_recon_ros.core.frame import RGBDFrame


@dataclass
class ViewImages:
    """One frame at the training resolution.

    Attributes:
        index: frame index in the (strided) sequence.
        depth: (h, w) float32 z-depth in metres, 0 = invalid.
        color: (h, w, 3) uint8 RGB.
        camera: intrinsics of the (h, w) images.
        T_world_cam: (4, 4) float64 camera-to-world pose.
    """

    index: int
    depth: np.ndarray
    color: np.ndarray
    camera: PinholeCamera
    T_world_cam: np.ndarray


def downscale_camera(camera: PinholeCamera, factor: int) -> PinholeCamera:
    """Intrinsics of images made by :func:`pick_pixels` (pixel ``(u, v)`` = full-res ``(f u + f//2, f v + f//2)``)."""
    offset = factor // 2
    return PinholeCamera(camera.fx / factor, camera.fy / factor, (camera.cx - offset) / factor,
                         (camera.cy - offset) / factor, camera.width // factor, camera.height // factor)


def pick_pixels(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour reduction by an integer ``factor`` (keeps depth values and label ids exact)."""
    offset = factor // 2
    height, width = image.shape[0] // factor, image.shape[1] // factor
    return np.ascontiguousarray(image[offset:offset + factor * height:factor, offset:offset + factor * width:factor])


def reduced_view(index: int, frame: RGBDFrame, factor: int) -> ViewImages:
    """Frame ``index`` at 1/``factor`` resolution; invalid depth (NaN, inf, <= 0) becomes 0."""
    depth = pick_pixels(frame.depth, factor).astype(np.float32)
    depth[~(np.isfinite(depth) & (depth > 0))] = 0.0
    return ViewImages(index, depth, pick_pixels(frame.color, factor), downscale_camera(frame.camera, factor),
                      np.asarray(frame.T_world_cam, dtype=np.float64))
