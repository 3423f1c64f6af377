"""Dense ground-truth TSDF and semantic labels of a synthetic scene, exact at any resolution.

Voxel ``(i, j, k)`` of a grid has its centre at ``origin + (i, j, k) * voxel_size``. By default the
origin is a multiple of the voxel size, so grid voxels coincide with the fusion volume's voxels
(centre ``g * voxel_size`` for integer ``g``, see :mod:`semantic_recon_ros.core.map.tsdf_volume`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .box_sdf import box_sdf
from .scene import SyntheticScene

UNLABELED = -1


@dataclass
class GroundTruthGrid:
    """A dense truncated SDF with labels.

    Attributes:
        tsdf: (X, Y, Z) float32 signed distance / truncation, clipped to [-1, 1] (+ outside the boxes).
        labels: (X, Y, Z) int16 class id of the nearest box where |sdf| < truncation, -1 elsewhere.
        origin: (3,) float64 world position of the centre of voxel (0, 0, 0).
        voxel_size: voxel edge length in metres.
        truncation: truncation distance in metres.
    """

    tsdf: np.ndarray
    labels: np.ndarray
    origin: np.ndarray
    voxel_size: float
    truncation: float

    def __post_init__(self) -> None:
        self.origin = np.asarray(self.origin, dtype=np.float64).reshape(3)
        if self.tsdf.ndim != 3 or self.labels.shape != self.tsdf.shape:
            raise ValueError(f"tsdf {self.tsdf.shape} and labels {self.labels.shape} must be the same 3D shape")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.tsdf.shape)

    def voxel_centers(self, index: np.ndarray) -> np.ndarray:
        """(N, 3) integer voxel indices -> (N, 3) world centres."""
        return self.origin + np.asarray(index, dtype=np.float64) * self.voxel_size


def ground_truth_grid(
    scene: SyntheticScene,
    voxel_size: float,
    truncation: float,
    origin: np.ndarray | None = None,
    shape: tuple[int, int, int] | None = None,
) -> GroundTruthGrid:
    """Sample the scene's exact union SDF and nearest-box labels on a dense grid.

    Args:
        scene: the boxes.
        voxel_size: grid spacing in metres.
        truncation: distance (metres) at which the TSDF saturates to +-1 and beyond which labels are -1.
        origin: (3,) centre of voxel (0, 0, 0); default: the scene bounds' minimum corner minus the
            truncation, rounded down to a multiple of ``voxel_size``.
        shape: grid size (X, Y, Z); default: enough voxels to cover the scene bounds plus the truncation.
    Returns:
        the grid. Each box only touches the voxels within ``truncation`` of its bounding box, so the cost is
        proportional to the boxes' surroundings, not to the grid volume times the box count.
    """
    if not voxel_size > 0 or not truncation > 0:
        raise ValueError(f"voxel_size and truncation must be positive, got {voxel_size}, {truncation}")
    lo, hi = scene.bounds[0] - truncation, scene.bounds[1] + truncation
    if origin is None:
        origin = np.floor(lo / voxel_size) * voxel_size
    origin = np.asarray(origin, dtype=np.float64).reshape(3)
    if shape is None:
        shape = tuple(int(n) for n in np.ceil((hi - origin) / voxel_size) + 1)
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"grid shape must be three positive sizes, got {shape}")

    sdf = np.full(shape, truncation, dtype=np.float64)
    nearest = np.full(shape, -1, dtype=np.int64)
    boxes = scene.box_arrays
    box_bounds = boxes.axis_aligned_bounds()
    for b in range(len(boxes)):
        start = np.maximum(np.ceil((box_bounds[b, 0] - truncation - origin) / voxel_size).astype(int), 0)
        stop = np.minimum(np.floor((box_bounds[b, 1] + truncation - origin) / voxel_size).astype(int) + 1, shape)
        if (stop <= start).any():
            continue
        axes = [origin[a] + np.arange(start[a], stop[a]) * voxel_size for a in range(3)]
        points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        distance = box_sdf(points, boxes.subset(slice(b, b + 1)))[:, 0].reshape(tuple(stop - start))
        block = tuple(slice(s, e) for s, e in zip(start, stop))
        closer = distance < sdf[block]
        sdf[block] = np.where(closer, distance, sdf[block])
        nearest[block] = np.where(closer, b, nearest[block])
    near_surface = (np.abs(sdf) < truncation) & (nearest >= 0)
    labels = np.where(near_surface, scene.class_ids[np.maximum(nearest, 0)], UNLABELED).astype(np.int16)
    tsdf = np.clip(sdf / truncation, -1.0, 1.0).astype(np.float32)
    return GroundTruthGrid(tsdf, labels, origin, float(voxel_size), float(truncation))
