"""Back-projection of 2D image features into voxels (Atlas): averaging features along camera rays.

Every voxel inside a view's frustum receives the feature bilinearly sampled at the pixel it projects
to; the voxel's feature is the average over the views that see it (binary in-frustum weights:
``feature sum / count``; voxels seen by no view keep 0 with count 0). A voxel is in a view's frustum
when it lies in front of the camera (``z > 0``) and projects inside the pixel-centre grid of the
feature map (``0 <= u <= w - 1``, ``0 <= v <= h - 1``).

Dense grid convention: voxel ``(i, j, k)`` of a grid with ``origin`` (world frame, metres) has its
centre at ``origin + (i, j, k) * voxel_size``; grids are stored (C, X, Y, Z). Poses are
``T_world_cam`` (camera-to-world, optical camera frame). All operations are differentiable with
respect to the features.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from ..camera import PinholeCamera, check_rigid, invert_rigid


def voxel_centers(origin: Sequence[float] | torch.Tensor, voxel_size: float, dims: Sequence[int],
                  device: torch.device | str) -> torch.Tensor:
    """(X, Y, Z, 3) float32 world coordinates of the voxel centres ``origin + index * voxel_size``."""
    if not voxel_size > 0:
        raise ValueError(f"voxel_size must be positive, got {voxel_size}")
    if len(dims) != 3 or any(int(d) <= 0 for d in dims):
        raise ValueError(f"grid dims must be three positive integers, got {tuple(dims)}")
    origin = torch.as_tensor(origin, dtype=torch.float32, device=device).reshape(3)
    axes = [torch.arange(int(d), device=device, dtype=torch.float32) for d in dims]
    index = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
    return origin + index * voxel_size


def feature_camera(camera: PinholeCamera, features: torch.Tensor) -> PinholeCamera:
    """The camera of an image scaled to the resolution of its feature map (V, C, h, w)."""
    return camera.scaled(int(features.shape[-1]), int(features.shape[-2]))


def view_directions(camera: PinholeCamera, T_world_cam: np.ndarray | torch.Tensor,
                    device: torch.device | str) -> torch.Tensor:
    """(V, 3, h, w) unit vectors from each pixel's scene point toward its camera, in the world frame, for V poses
    ``T_world_cam`` (V, 4, 4) (or (4, 4)) of a camera whose images are h x w (``camera.shape``)."""
    poses = T_world_cam.detach().cpu().numpy() if isinstance(T_world_cam, torch.Tensor) else np.asarray(T_world_cam)
    rotations = torch.as_tensor(poses.reshape(-1, 4, 4)[:, :3, :3], dtype=torch.float32, device=device)
    rays = torch.nn.functional.normalize(camera.pixel_rays(device), dim=-1)  # (h, w, 3) camera frame
    return -torch.einsum("vij,hwj->vihw", rotations, rays)


def backproject_features(features: torch.Tensor, camera: PinholeCamera, T_world_cam: np.ndarray | torch.Tensor,
                         points_world: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum and count of the features that the views see at arbitrary world points.

    Args:
        features: (V, C, h, w) per-view feature maps.
        camera: intrinsics of the feature maps (``camera.shape == (h, w)``, see :func:`feature_camera`).
        T_world_cam: (V, 4, 4) camera-to-world poses (numpy or torch), or (4, 4) when V = 1.
        points_world: (N, 3) world points (e.g. voxel centres), on the features' device.
    Returns:
        feature_sum: (N, C) sum over the views whose frustum contains the point of the bilinearly
        sampled features; count: (N,) float number of those views.
    """
    if features.dim() != 4:
        raise ValueError(f"features must be (V, C, h, w), got {tuple(features.shape)}")
    views, channels, height, width = features.shape
    if camera.shape != (height, width):
        raise ValueError(f"camera is {camera.width}x{camera.height}, feature maps are {width}x{height}: "
                         "scale the camera with feature_camera()")
    if height < 2 or width < 2:
        raise ValueError(f"feature maps must be at least 2x2, got {width}x{height}")
    poses = T_world_cam.detach().cpu().numpy() if isinstance(T_world_cam, torch.Tensor) else np.asarray(T_world_cam)
    poses = poses.reshape(-1, 4, 4)
    if len(poses) != views:
        raise ValueError(f"got {views} feature maps but {len(poses)} poses")
    if points_world.dim() != 2 or points_world.shape[1] != 3:
        raise ValueError(f"points_world must be (N, 3), got {tuple(points_world.shape)}")
    points_world = points_world.to(device=features.device, dtype=features.dtype)
    # pixel (u, v) -> grid_sample coordinates (align_corners=True: -1 and +1 are the centres of the
    # first and last pixels), folded into one 3x4 projection per view
    to_grid = np.array([[2 / (width - 1), 0, -1], [0, 2 / (height - 1), -1], [0, 0, 1]])
    feature_sum = features.new_zeros(points_world.shape[0], channels)
    count = features.new_zeros(points_world.shape[0])
    for view in range(views):
        T_cam_world = invert_rigid(check_rigid(poses[view], f"T_world_cam[{view}]"))
        projection = torch.as_tensor(to_grid @ camera.K @ T_cam_world[:3], dtype=features.dtype,
                                     device=features.device)
        projected = torch.addmm(projection[:, 3], points_world, projection[:, :3].T)  # (N, 3)
        z = projected[:, 2]
        grid = projected[:, :2] / z[:, None]
        index = torch.nonzero((z > 0) & (grid.abs() <= 1).all(dim=1)).squeeze(1)  # in the view's frustum
        sampled = F.grid_sample(features[view:view + 1], grid[index].view(1, 1, -1, 2), mode="bilinear",
                                padding_mode="zeros", align_corners=True)
        feature_sum = feature_sum.index_add(0, index, sampled[0, :, 0].T)
        count = count.index_add(0, index, torch.ones_like(index, dtype=count.dtype))
    return feature_sum, count


def backproject_to_grid(features: torch.Tensor, camera: PinholeCamera, T_world_cam: np.ndarray | torch.Tensor,
                        origin: Sequence[float] | torch.Tensor, voxel_size: float,
                        dims: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Average features of V views in a dense grid.

    Args: as :func:`backproject_features`; ``origin`` (3,) world position of voxel (0, 0, 0),
    ``voxel_size`` metres, ``dims`` (X, Y, Z).
    Returns:
        mean: (C, X, Y, Z) feature sum / count (0 where count is 0); count: (X, Y, Z) float views.
    """
    centers = voxel_centers(origin, voxel_size, dims, features.device)
    feature_sum, count = backproject_features(features, camera, T_world_cam, centers.reshape(-1, 3))
    mean = feature_sum / count.clamp(min=1)[:, None]
    X, Y, Z = (int(d) for d in dims)
    return mean.transpose(0, 1).reshape(-1, X, Y, Z), count.reshape(X, Y, Z)


class FeatureVolume:
    """Dense running average of back-projected features, filled one batch of views at a time (Atlas).

    Feature sums and view counts accumulate over every :meth:`add`; the running average
    :meth:`mean` is identical to back-projecting all views at once with :func:`backproject_to_grid`.
    """

    def __init__(self, origin: Sequence[float], voxel_size: float, dims: Sequence[int], channels: int,
                 device: torch.device | str) -> None:
        self.centers = voxel_centers(origin, voxel_size, dims, device).reshape(-1, 3)
        self.dims = tuple(int(d) for d in dims)
        self._sum = torch.zeros(self.centers.shape[0], channels, device=device)
        self._count = torch.zeros(self.centers.shape[0], device=device)

    def add(self, features: torch.Tensor, camera: PinholeCamera, T_world_cam: np.ndarray | torch.Tensor) -> None:
        """Accumulate (V, C, h, w) feature maps seen from ``T_world_cam`` (V, 4, 4) (see backproject_features)."""
        if features.shape[1] != self._sum.shape[1]:
            raise ValueError(f"volume has {self._sum.shape[1]} channels, features have {features.shape[1]}")
        feature_sum, count = backproject_features(features, camera, T_world_cam, self.centers)
        self._sum += feature_sum
        self._count += count

    def mean(self) -> torch.Tensor:
        """(C, X, Y, Z) average feature per voxel (0 where no view saw it)."""
        mean = self._sum / self._count.clamp(min=1)[:, None]
        return mean.transpose(0, 1).reshape(-1, *self.dims)

    def counts(self) -> torch.Tensor:
        """(X, Y, Z) number of views that saw each voxel."""
        return self._count.reshape(self.dims)
