"""Pinhole cameras and rigid poses.

Frame conventions (used everywhere in the package):

* Camera frame: optical convention, x right, y down, z forward (ROS ``*_optical_frame``).
* Poses are written ``T_a_b``: the 4x4 rigid transform that maps points expressed in frame ``b``
  into frame ``a`` (``p_a = T_a_b @ p_b``). ``T_world_cam`` is therefore the camera pose in the
  world (camera-to-world), as in 7-Scenes, ScanNet and TUM ground truth.
* Pixel ``(u, v)`` has its centre at integer coordinates: column ``u``, row ``v``; a point
  ``(x, y, z)`` in the camera frame projects to ``u = fx * x / z + cx``, ``v = fy * y / z + cy``.
* Depth images hold the z coordinate (not the ray length) in metres; 0, NaN and inf are invalid.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

RIGIDITY_TOLERANCE = 1e-3


@dataclass(frozen=True)
class PinholeCamera:
    """Intrinsics of an undistorted pinhole camera producing ``height x width`` images."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        if not (np.isfinite([self.fx, self.fy, self.cx, self.cy]).all() and self.fx > 0 and self.fy > 0):
            raise ValueError(f"camera focal lengths must be finite and positive, got fx={self.fx}, fy={self.fy}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera image size must be positive, got {self.width}x{self.height}")

    @classmethod
    def from_matrix(cls, K: np.ndarray, width: int, height: int) -> "PinholeCamera":
        """Build from a 3x3 (or larger, top-left 3x3 used) intrinsic matrix ``K``."""
        K = np.asarray(K, dtype=np.float64)
        if K.ndim != 2 or K.shape[0] < 3 or K.shape[1] < 3:
            raise ValueError(f"intrinsic matrix must be at least 3x3, got shape {K.shape}")
        return cls(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), int(width), int(height))

    @property
    def K(self) -> np.ndarray:
        """(3, 3) float64 intrinsic matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def shape(self) -> tuple[int, int]:
        """Image shape ``(height, width)``."""
        return (self.height, self.width)

    def with_focal_length(self, focal: float) -> "PinholeCamera":
        """The same camera with ``fx = fy = focal`` pixels (e.g. a color camera whose files carry the depth camera's
        intrinsics, as 7-Scenes' do)."""
        return dataclasses.replace(self, fx=float(focal), fy=float(focal))

    def scaled(self, width: int, height: int) -> "PinholeCamera":
        """The same camera for images resized to ``width x height`` (pixel-centre convention kept)."""
        sx, sy = width / self.width, height / self.height
        return PinholeCamera(
            self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5, width, height
        )

    def project(self, points_cam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Project camera-frame points.

        Args:
            points_cam: (..., 3) points in the camera frame.
        Returns:
            uv: (..., 2) pixel coordinates (float, not rounded); z: (...) depth. Points with
            ``z <= 0`` get non-finite or meaningless uv: mask them with ``z > 0``.
        """
        z = points_cam[..., 2]
        u = self.fx * points_cam[..., 0] / z + self.cx
        v = self.fy * points_cam[..., 1] / z + self.cy
        return torch.stack((u, v), dim=-1), z

    def pixel_rays(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(H, W, 3) camera-frame ray directions with z = 1 for every pixel centre."""
        v, u = torch.meshgrid(
            torch.arange(self.height, device=device, dtype=dtype),
            torch.arange(self.width, device=device, dtype=dtype),
            indexing="ij",
        )
        return torch.stack(((u - self.cx) / self.fx, (v - self.cy) / self.fy, torch.ones_like(u)), dim=-1)

    def backproject(self, depth: torch.Tensor) -> torch.Tensor:
        """(H, W) z-depth in metres -> (H, W, 3) camera-frame points (invalid depth gives invalid points)."""
        if tuple(depth.shape) != self.shape:
            raise ValueError(f"depth image is {tuple(depth.shape)}, camera expects {self.shape}")
        return self.pixel_rays(depth.device, depth.dtype) * depth[..., None]


def check_rigid(T: np.ndarray | torch.Tensor, name: str = "pose") -> np.ndarray:
    """Validate a 4x4 rigid transform and return it as float64 numpy.

    Raises ValueError naming ``name`` when the matrix is not 4x4, not finite, its last row is
    not ``[0, 0, 0, 1]``, or its rotation block is not orthonormal with determinant +1
    (tolerance ``RIGIDITY_TOLERANCE``).
    """
    T = T.detach().cpu().numpy() if isinstance(T, torch.Tensor) else np.asarray(T)
    T = T.astype(np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"{name} must be a 4x4 matrix, got shape {T.shape}")
    if not np.isfinite(T).all():
        raise ValueError(f"{name} contains NaN or inf")
    if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], atol=RIGIDITY_TOLERANCE):
        raise ValueError(f"{name} last row must be [0 0 0 1], got {T[3]}")
    R = T[:3, :3]
    if not np.allclose(R @ R.T, np.eye(3), atol=RIGIDITY_TOLERANCE) or np.linalg.det(R) < 0:
        raise ValueError(f"{name} is not a rigid transform (rotation block not orthonormal with det +1)")
    return T


def invert_rigid(T: np.ndarray) -> np.ndarray:
    """Inverse of a 4x4 rigid transform (``T_b_a`` from ``T_a_b``)."""
    R, t = T[:3, :3], T[:3, 3]
    inv = np.eye(4, dtype=T.dtype)
    inv[:3, :3] = R.T
    inv[:3, 3] = -R.T @ t
    return inv


def transform_points(T: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply a (4, 4) transform to (..., 3) points: ``T[:3, :3] @ p + T[:3, 3]``."""
    return points @ T[:3, :3].transpose(0, 1) + T[:3, 3]
