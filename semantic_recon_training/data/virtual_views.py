"""Virtual cameras for the virtual-view semantic loss (S4R eq. 4).

The captured views of a chunk are close to the surfaces and see little of it at once. Virtual views look
at the chunk's content from farther away with a wider field of view: each picks a random observed surface
voxel of the input as its look-at target, a viewing direction close to that of a random captured view
(within ``max_angle_deg``), and a distance in ``distance_range``. A candidate is kept when its camera centre
is in free space (not within the truncation of an observed surface: input TSDF >= ``free_tsdf`` there, or
outside the chunk) and nothing observed blocks the line of sight to the target (no observed voxel with
TSDF <= 0 along it before the target's surface band). The camera keeps the captured view's roll (its
image "down" axis), so the 2D segmenter sees upright images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from semantic_recon_ros.core.camera import PinholeCamera
from semantic_recon_ros.core.config.fields import check_ranges, parameter
from semantic_recon_ros.core.rendering import sample_grid


@dataclass
class VirtualViewConfig:
    """How virtual cameras are sampled around a chunk (see the module docstring)."""

    count: int = parameter(2, "Virtual views per chunk and training step.", 0, 64)
    focal_scale: float = parameter(
        0.7, "Focal length of the virtual camera relative to the captured one (< 1 widens the field of view).",
        0.1, 2.0)
    min_distance: float = parameter(1.0, "Closest camera-to-target distance in metres.", 0.05, None)
    max_distance: float = parameter(2.5, "Farthest camera-to-target distance in metres.", 0.05, None)
    max_angle_deg: float = parameter(
        30.0, "Largest angle between a virtual view's direction and the captured view's it is derived from.",
        0.0, 90.0)
    free_tsdf: float = parameter(
        0.99, "The camera centre must have an input TSDF at least this (normalized) where it lies in the "
              "observed part of the chunk.", -1.0, 1.0)
    attempts: int = parameter(32, "Candidate cameras tried per wanted view before giving up.", 1, 10_000)

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.min_distance > self.max_distance:
            raise ValueError(f"VirtualViewConfig.min_distance ({self.min_distance}) exceeds max_distance "
                             f"({self.max_distance})")


def virtual_camera(camera: PinholeCamera, config: VirtualViewConfig) -> PinholeCamera:
    """``camera`` with focal lengths scaled by ``config.focal_scale`` (same image size and principal point)."""
    return PinholeCamera(camera.fx * config.focal_scale, camera.fy * config.focal_scale, camera.cx, camera.cy,
                         camera.width, camera.height)


def look_at(position: torch.Tensor, forward: torch.Tensor, down_hint: torch.Tensor) -> torch.Tensor | None:
    """(4, 4) float64 camera-to-world pose at ``position`` looking along ``forward`` (optical z), image y as
    close to ``down_hint`` as possible; None when ``forward`` is parallel to ``down_hint``."""
    z = forward / forward.norm()
    x = torch.linalg.cross(down_hint, z)
    if x.norm() < 1e-6:
        return None
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, y, z, position
    return pose


def _random_unit_vectors(count: int, generator: torch.Generator) -> torch.Tensor:
    v = torch.randn((count, 3), generator=generator, dtype=torch.float64)
    return v / v.norm(dim=1, keepdim=True).clamp(min=1e-12)


def _tilt(direction: torch.Tensor, max_angle: float, generator: torch.Generator) -> torch.Tensor:
    """``direction`` (unit) turned by a random angle in [0, max_angle] (radians) about a random perpendicular axis."""
    axis = torch.linalg.cross(direction, _random_unit_vectors(1, generator)[0])
    if axis.norm() < 1e-9:
        return direction
    axis = axis / axis.norm()
    angle = float(torch.rand((), generator=generator, dtype=torch.float64)) * max_angle
    # Rodrigues: axis is perpendicular to direction
    return direction * math.cos(angle) + torch.linalg.cross(axis, direction) * math.sin(angle)


def sample_virtual_views(
    tsdf: torch.Tensor,
    observed: torch.Tensor,
    origin: torch.Tensor,
    voxel_size: float,
    truncation: float,
    view_poses: torch.Tensor,
    config: VirtualViewConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """Virtual camera poses for one chunk (see the module docstring).

    Args:
        tsdf: (X, Y, Z) input TSDF of the chunk (normalized); observed: (X, Y, Z) bool.
        origin: (3,) world centre of voxel (0, 0, 0); voxel_size, truncation: metres.
        view_poses: (V, 4, 4) camera-to-world poses of the chunk's captured views.
        config: sampling parameters.
        generator: torch random generator (CPU); the same state gives the same views.
    Returns:
        (N, 4, 4) float64 camera-to-world poses, ``N <= config.count`` (fewer when candidates keep failing,
        0 when the chunk has no observed surface).
    """
    tsdf = tsdf.detach().to("cpu", torch.float32)
    observed = observed.to("cpu")
    origin = origin.detach().to("cpu", torch.float64)
    poses = view_poses.detach().to("cpu", torch.float64)
    surface = (observed & (tsdf.abs() * truncation < voxel_size)).nonzero()
    if config.count == 0 or surface.shape[0] == 0:
        return torch.zeros((0, 4, 4), dtype=torch.float64)
    # unobserved voxels count as free for the line-of-sight test: only observed surfaces block it
    grid = torch.where(observed, tsdf, torch.ones_like(tsdf))[None, None]
    dims = torch.tensor(tsdf.shape, dtype=torch.float64)
    max_angle = math.radians(config.max_angle_deg)
    chosen = []
    for _ in range(config.count * config.attempts):
        if len(chosen) == config.count:
            break
        pick = int(torch.randint(surface.shape[0], (), generator=generator))
        target = origin + surface[pick].to(torch.float64) * voxel_size
        reference = poses[int(torch.randint(poses.shape[0], (), generator=generator))]
        direction = target - reference[:3, 3]
        if direction.norm() < 1e-9:
            direction = reference[:3, 2]
        direction = _tilt(direction / direction.norm(), max_angle, generator)
        span = config.max_distance - config.min_distance
        distance = config.min_distance + float(torch.rand((), generator=generator, dtype=torch.float64)) * span
        position = target - direction * distance
        if not _clear_view(grid, dims, origin, voxel_size, truncation, position, target, config.free_tsdf):
            continue
        pose = look_at(position, direction, reference[:3, 1])
        if pose is not None:
            chosen.append(pose)
    if not chosen:
        return torch.zeros((0, 4, 4), dtype=torch.float64)
    return torch.stack(chosen)


def _clear_view(grid: torch.Tensor, dims: torch.Tensor, origin: torch.Tensor, voxel_size: float, truncation: float,
                position: torch.Tensor, target: torch.Tensor, free_tsdf: float) -> bool:
    """Camera centre in free space, and no observed surface on the segment before the target's surface band."""
    length = float((target - position).norm())
    stop = length - truncation  # the target's own band starts here
    steps = max(int(stop / (0.5 * voxel_size)), 0) + 1
    t = torch.linspace(0.0, max(stop, 0.0), steps, dtype=torch.float64)
    points = position + (target - position)[None, :] * (t / length)[:, None]
    coords = (points - origin) / voxel_size
    inside = ((coords >= 0) & (coords <= dims - 1)).all(dim=1)
    if not bool(inside.any()):
        return True
    values = sample_grid(grid, torch.zeros(int(inside.sum()), dtype=torch.int64), coords[inside].to(grid.dtype))[:, 0]
    if bool(inside[0]) and float(values[0]) < free_tsdf:
        return False
    return not bool((values <= 0).any())
