"""Exact signed distance to a union of oriented (yaw-rotated) boxes, vectorized over points and boxes.

A box is its centre ``c`` (3,), half extents ``h`` (3,) along its own axes, and a yaw about the world
+z axis. For a point ``p`` with box-frame coordinates ``q = R(yaw)^T (p - c)`` the signed distance is
``|max(|q| - h, 0)| + min(max_i(|q_i| - h_i), 0)``: positive outside, negative inside, zero on the
surface. The union's distance is the minimum over the boxes, and the box reaching it is the "nearest"
box whose class labels the point. Distances are exact (not bounds), inside as well as outside a
single box; inside an overlap of boxes the union value is the deepest box's (negative) distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_CHUNK_POINTS = 65536


@dataclass(frozen=True)
class BoxArrays:
    """A set of ``B`` oriented boxes as arrays (world frame, metres).

    Attributes:
        centers: (B, 3) float64 box centres.
        half_extents: (B, 3) float64 half side lengths along the box's own x, y, z axes.
        yaws: (B,) float64 rotation about world +z in radians (box x axis = (cos yaw, sin yaw, 0)).
    """

    centers: np.ndarray
    half_extents: np.ndarray
    yaws: np.ndarray

    def __post_init__(self) -> None:
        b = len(self.centers)
        if self.centers.shape != (b, 3) or self.half_extents.shape != (b, 3) or self.yaws.shape != (b,):
            raise ValueError(
                f"box arrays disagree: centers {self.centers.shape}, half_extents {self.half_extents.shape}, "
                f"yaws {self.yaws.shape}; expected (B, 3), (B, 3), (B,)")
        if b and self.half_extents.min() <= 0:
            raise ValueError("box half extents must be positive")

    def __len__(self) -> int:
        return len(self.centers)

    def subset(self, index: np.ndarray | slice) -> "BoxArrays":
        return BoxArrays(self.centers[index], self.half_extents[index], self.yaws[index])

    def to_local(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world points -> (N, B, 3) coordinates in every box's frame."""
        d = points[:, None, :] - self.centers[None, :, :]
        c, s = np.cos(self.yaws), np.sin(self.yaws)
        x = c * d[..., 0] + s * d[..., 1]
        y = -s * d[..., 0] + c * d[..., 1]
        return np.stack((x, y, d[..., 2]), axis=-1)

    def axis_aligned_bounds(self) -> np.ndarray:
        """(B, 2, 3) world-frame axis-aligned bounding box (min, max corner) of every box."""
        c, s = np.abs(np.cos(self.yaws)), np.abs(np.sin(self.yaws))
        hx, hy, hz = self.half_extents.T
        half = np.stack((c * hx + s * hy, s * hx + c * hy, hz), axis=1)
        return np.stack((self.centers - half, self.centers + half), axis=1)


def box_sdf(points: np.ndarray, boxes: BoxArrays) -> np.ndarray:
    """Signed distance of every point to every box.

    Args:
        points: (N, 3) world points.
        boxes: B boxes.
    Returns:
        (N, B) float64 signed distances in metres (negative inside).
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got {points.shape}")
    q = np.abs(boxes.to_local(points)) - boxes.half_extents[None]
    outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
    inside = np.minimum(q.max(axis=-1), 0.0)
    return outside + inside


def union_sdf(
    points: np.ndarray, boxes: BoxArrays, chunk_points: int = DEFAULT_CHUNK_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance to the union of the boxes and the index of the nearest box.

    Args:
        points: (N, 3) world points.
        boxes: B >= 1 boxes.
        chunk_points: points processed at once (bounds memory to about ``chunk_points * B * 80`` bytes).
    Returns:
        sdf: (N,) float64, min over boxes of :func:`box_sdf`;
        nearest: (N,) int64 index of the box attaining it (lowest index on exact ties).
    """
    if len(boxes) == 0:
        raise ValueError("the union of zero boxes has no distance field")
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    sdf = np.empty(len(points))
    nearest = np.empty(len(points), dtype=np.int64)
    for start in range(0, len(points), chunk_points):
        d = box_sdf(points[start:start + chunk_points], boxes)
        index = d.argmin(axis=1)
        nearest[start:start + chunk_points] = index
        sdf[start:start + chunk_points] = np.take_along_axis(d, index[:, None], axis=1)[:, 0]
    return sdf, nearest
