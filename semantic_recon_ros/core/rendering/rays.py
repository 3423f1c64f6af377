"""Ray bundles in the world frame, and the per-pixel rays of posed pinhole cameras.

A ray is ``x(t) = origin + t * direction``. Camera rays have directions scaled so that their
camera-frame z component is 1, which makes the ray parameter ``t`` the z-depth of ``x(t)`` (the
quantity depth images hold, see :mod:`semantic_recon_ros.core.camera`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..camera import RIGIDITY_TOLERANCE, PinholeCamera


@dataclass
class RayBundle:
    """Rays of ``B`` batch elements, any ray layout ``S`` (e.g. ``(V, H, W)`` for V images).

    Attributes:
        origins: (B, *S, 3) world-frame ray origins, metres.
        directions: (B, *S, 3) world-frame directions (not unit: for camera rays the camera-frame
            z component is 1, so the ray parameter is z-depth).
    """

    origins: torch.Tensor
    directions: torch.Tensor

    def __post_init__(self) -> None:
        if self.origins.shape != self.directions.shape or self.origins.ndim < 2 or self.origins.shape[-1] != 3:
            raise ValueError(f"ray origins {tuple(self.origins.shape)} and directions "
                             f"{tuple(self.directions.shape)} must both be (B, ..., 3)")
        if self.origins.device != self.directions.device:
            raise ValueError(f"ray origins on {self.origins.device}, directions on {self.directions.device}")

    @property
    def batch_size(self) -> int:
        return int(self.origins.shape[0])

    @property
    def layout(self) -> tuple[int, ...]:
        """The ray layout ``S`` (shape between the batch and the xyz axes)."""
        return tuple(self.origins.shape[1:-1])

    def flatten(self) -> "RayBundle":
        """The same rays as (B, N, 3) with ``N = prod(S)``."""
        batch = self.batch_size
        return RayBundle(self.origins.reshape(batch, -1, 3), self.directions.reshape(batch, -1, 3))


def image_rays(
    camera: PinholeCamera | Sequence[PinholeCamera],
    T_world_cam: torch.Tensor | np.ndarray,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> RayBundle:
    """One ray through every pixel centre of ``V`` posed views of ``B`` batch elements.

    Args:
        camera: intrinsics shared by all views, or a sequence of ``V`` cameras (one per view, shared
            across the batch) that all have the same image size ``H x W``.
        T_world_cam: (B, V, 4, 4) camera-to-world poses (optical frame: x right, y down, z forward).
        device: torch device of the rays.
        dtype: floating dtype of the rays.
    Returns:
        RayBundle with layout ``(V, H, W)``: origins are the camera centres, directions have
        camera-frame z = 1 (ray parameter = z-depth). Pixel ``(u, v)`` is at ``[..., v, u, :]``.
    """
    poses = torch.as_tensor(T_world_cam, device=device, dtype=dtype)
    if poses.ndim != 4 or poses.shape[-2:] != (4, 4):
        raise ValueError(f"T_world_cam must be (B, V, 4, 4), got shape {tuple(poses.shape)}")
    num_views = poses.shape[1]
    cameras = [camera] * num_views if isinstance(camera, PinholeCamera) else list(camera)
    if len(cameras) != num_views:
        raise ValueError(f"got {len(cameras)} cameras for {num_views} views; pass one camera or one per view")
    if len({c.shape for c in cameras}) > 1:
        raise ValueError(f"all views must have the same image size, got {sorted({c.shape for c in cameras})}")
    _check_poses(poses)
    pixel_dirs = torch.stack([c.pixel_rays(device, dtype) for c in cameras])  # (V, H, W, 3) camera frame
    rotation, translation = poses[..., :3, :3], poses[..., :3, 3]  # (B, V, 3, 3), (B, V, 3)
    directions = torch.einsum("bvij,vhwj->bvhwi", rotation, pixel_dirs)
    origins = translation[:, :, None, None, :].expand_as(directions)
    return RayBundle(origins, directions)


def ray_box_interval(origins: torch.Tensor, directions: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Parameter interval of rays inside an axis-aligned box (slab method).

    Args:
        origins, directions: (R, 3) rays ``x(t) = origin + t * direction``.
        lower, upper: (3,) or (R, 3) box corners, same frame.
    Returns:
        (R,) ``start`` and ``end``: ``x(t)`` is in the closed box for ``start <= t <= end``; ``start > end``
        when the line misses the box. Not clipped to ``t >= 0``.
    """
    inside = (origins >= lower) & (origins <= upper)
    t_lower, t_upper = (lower - origins) / directions, (upper - origins) / directions  # inf/nan where d == 0
    parallel = directions == 0
    enter = torch.where(parallel, torch.where(inside, -math.inf, math.inf), torch.minimum(t_lower, t_upper))
    leave = torch.where(parallel, torch.where(inside, math.inf, -math.inf), torch.maximum(t_lower, t_upper))
    return enter.amax(dim=1), leave.amin(dim=1)


def _check_poses(poses: torch.Tensor) -> None:
    """Raise ValueError when a (B, V, 4, 4) pose is not finite or not rigid."""
    if not torch.isfinite(poses).all():
        raise ValueError("T_world_cam contains NaN or inf")
    rotation = poses[..., :3, :3]
    identity = torch.eye(3, device=poses.device, dtype=poses.dtype)
    orthogonality = (rotation @ rotation.transpose(-1, -2) - identity).abs().amax(dim=(-1, -2))
    last_row = (poses[..., 3, :] - torch.tensor([0.0, 0.0, 0.0, 1.0], device=poses.device, dtype=poses.dtype))
    bad = (orthogonality > RIGIDITY_TOLERANCE) | (torch.linalg.det(rotation) < 0) | \
        (last_row.abs().amax(dim=-1) > RIGIDITY_TOLERANCE)
    if bad.any():
        b, v = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"T_world_cam[{b}, {v}] is not a rigid transform (orthonormal rotation, det +1, "
                         f"last row [0 0 0 1])")
