"""Differentiable rendering of a predicted frustum into a posed view: expected depth and soft silhouette (SSR's
semi-supervision of single-view reconstruction by images without 3D labels).

Every pixel of the rendered camera casts a ray; ``samples`` points are taken along it at z-depths (in the rendered
camera) evenly spaced between the frustum's near and far planes. Each point is moved into the frame of the camera
the frustum was predicted for (``T_cam0_cam``, identity for the image's own view) and projected: its image
coordinates and z-depth are its coordinates in the frustum grid (:mod:`.frustum_grid`, regular in u, v and
z-depth), where the predicted TSDF is interpolated trilinearly (:func:`~semantic_recon_ros.core.rendering.
sample_grid`, differentiable in the TSDF). The TSDF becomes an opacity ``alpha = sigmoid(-tsdf / opacity_scale)``
(about 1 inside solids, 0 in free space; 0 outside the frustum), alpha-composited front to back:

* ``accumulated`` opacity after each sample, ``1 - prod_{j <= k} (1 - alpha_j)``; its last value is the pixel's
  soft ``silhouette`` (the chance the ray ends inside the frustum);
* expected ``depth`` ``sum_k w_k z_k + (1 - silhouette) far`` with ``w_k`` the share of the ray ending at sample k:
  a ray that never ends reads the far plane;
* ``surface_depth``: the first zero crossing of the sampled TSDF (linear between the two samples bracketing it;
  no gradient), the depth a mesh of the prediction shows, and ``surface_valid`` where a ray has one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...camera import PinholeCamera
from ...config.fields import check_ranges, parameter
from ...rendering import sample_grid
from .frustum_grid import FrustumGrid


@dataclass
class FrustumRenderConfig:
    """How :func:`render_frustum` samples and composites each ray."""

    samples: int = parameter(96, "Samples along each ray between the frustum's near and far planes.", 2, 4096)
    opacity_scale: float = parameter(
        0.1, "Opacity = sigmoid(-tsdf / opacity_scale) of the normalized TSDF (in [-1, 1]): smaller is sharper.",
        1e-4, 10.0)

    def __post_init__(self) -> None:
        check_ranges(self)


def sample_depths(grid: FrustumGrid, samples: int, device: torch.device | str,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(N,) z-depths of the ray samples: the centres of N equal slices of [near, far]."""
    near, far = grid.config.near, grid.config.far
    return near + (torch.arange(samples, device=device, dtype=dtype) + 0.5) * ((far - near) / samples)


def frustum_cell_coordinates(grid: FrustumGrid, points_cam0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 3) points in the frame of the grid's camera -> (..., 3) fractional cell coordinates ``(d, y, x)``
    (:meth:`FrustumGrid.cam_to_cell_coordinates`; points behind the camera get the camera axis's) and (...) bool,
    True inside the frustum (in front of the camera, within the image and between near and far)."""
    in_front = points_cam0[..., 2] > 1e-6
    axis = torch.tensor([0.0, 0.0, 1.0], device=points_cam0.device, dtype=points_cam0.dtype)
    coordinates = grid.cam_to_cell_coordinates(torch.where(in_front[..., None], points_cam0, axis))
    upper = torch.tensor(grid.shape, device=points_cam0.device, dtype=points_cam0.dtype) - 0.5
    inside = in_front & ((coordinates >= -0.5) & (coordinates <= upper)).all(dim=-1)
    return coordinates, inside


def render_frustum(tsdf: torch.Tensor, grid: FrustumGrid, camera: PinholeCamera, T_cam0_cam: torch.Tensor,
                   config: FrustumRenderConfig | None = None) -> dict[str, torch.Tensor]:
    """Render B predicted frusta into one view each.

    Args:
        tsdf: (B, D, Y, X) predicted TSDF in [-1, 1] (+ = free) in ``grid``, the frustum of camera 0.
        grid: the frustum grid of the camera the prediction was made for (camera 0).
        camera: intrinsics and image size H x W of the rendered view (e.g. the trained camera at a lower resolution,
            or a neighbouring frame's camera).
        T_cam0_cam: (B, 4, 4) pose of the rendered camera in camera 0's frame (``inv(T_world_cam0) @
            T_world_cam``; identity for the own view). Optical frames: x right, y down, z forward.
        config: sampling and compositing (defaults if None).
    Returns:
        ``depth`` (B, H, W) expected z-depth (metres, in the rendered camera), ``silhouette`` (B, H, W) in [0, 1],
        ``accumulated`` (B, H, W, N) opacity accumulated through each sample, ``sample_depths`` (N,),
        ``surface_depth`` (B, H, W) first zero crossing (0 where none; no gradient) and ``surface_valid``
        (B, H, W) bool.
    """
    config = config or FrustumRenderConfig()
    if tsdf.dim() != 4 or tuple(tsdf.shape[1:]) != grid.shape:
        raise ValueError(f"tsdf must be (B, {', '.join(map(str, grid.shape))}), got {tuple(tsdf.shape)}")
    batch = tsdf.shape[0]
    if tuple(T_cam0_cam.shape) != (batch, 4, 4):
        raise ValueError(f"T_cam0_cam must be ({batch}, 4, 4), got {tuple(T_cam0_cam.shape)}")
    device, dtype = tsdf.device, tsdf.dtype
    depths = sample_depths(grid, config.samples, device, dtype)  # (N,)
    rays = camera.pixel_rays(device, dtype)  # (H, W, 3), z = 1
    points = rays[:, :, None, :] * depths[:, None]  # (H, W, N, 3) in the rendered camera
    T = T_cam0_cam.to(device=device, dtype=dtype)
    points_cam0 = torch.einsum("bij,hwnj->bhwni", T[:, :3, :3], points) + T[:, None, None, None, :3, 3]
    coordinates, inside = frustum_cell_coordinates(grid, points_cam0)
    batch_index = torch.arange(batch, device=device).repeat_interleave(inside[0].numel())
    sampled = sample_grid(tsdf[:, None], batch_index, coordinates.reshape(-1, 3)).reshape(inside.shape)
    alpha = torch.sigmoid(-sampled / config.opacity_scale) * inside
    transmittance = torch.exp(torch.cumsum(torch.log1p(-alpha.clamp(max=1 - 1e-6)), dim=-1))  # after each sample
    before = torch.cat((torch.ones_like(transmittance[..., :1]), transmittance[..., :-1]), dim=-1)
    silhouette = 1 - transmittance[..., -1]
    depth = (before * alpha * depths).sum(dim=-1) + transmittance[..., -1] * grid.config.far
    surface_depth, surface_valid = _first_crossing(sampled.detach(), inside, depths)
    return {"depth": depth, "silhouette": silhouette, "accumulated": 1 - transmittance, "sample_depths": depths,
            "surface_depth": surface_depth, "surface_valid": surface_valid}


def _first_crossing(sampled: torch.Tensor, inside: torch.Tensor, depths: torch.Tensor) -> tuple[torch.Tensor,
                                                                                               torch.Tensor]:
    """(B, H, W, N) TSDF samples -> (B, H, W) depth of the first + to <= 0 crossing inside the frustum (linear
    between the bracketing samples; a ray starting inside a solid reads its first sample) and its validity."""
    solid = (sampled <= 0) & inside
    valid = solid.any(dim=-1)
    index = solid.to(torch.uint8).argmax(dim=-1, keepdim=True)
    previous = (index - 1).clamp(min=0)
    s1, s0 = sampled.gather(-1, index), sampled.gather(-1, previous)
    z1, z0 = depths[index], depths[previous]
    fraction = torch.where(s0 - s1 > 0, s0 / (s0 - s1).clamp(min=1e-12), torch.zeros_like(s0)).clamp(0, 1)
    depth = (z0 + (z1 - z0) * fraction)[..., 0]
    return torch.where(valid, depth, torch.zeros_like(depth)), valid
