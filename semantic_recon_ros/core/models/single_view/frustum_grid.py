"""The perspective voxel grid of a camera's frustum (SemSVR's output space).

Cell ``(d, y, x)`` of a grid with ``(D, Y, X) = (cells_depth, cells_y, cells_x)`` covers the image columns
``[x * W / X - 0.5, (x + 1) * W / X - 0.5]`` and rows likewise (pixel centres at integer coordinates, see
:mod:`semantic_recon_ros.core.camera`), and the z-depths ``[near + d * s, near + (d + 1) * s]`` with
``s = (far - near) / D``. Its centre, in the camera (optical) frame, is the point at the centre depth on the ray
through the centre image coordinate. Grids are stored depth first: (..., D, Y, X), so the depth axis runs along
the viewing direction, as SemSVR's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...camera import PinholeCamera, check_rigid, transform_points
from .config import FrustumGridConfig


def column_centre_pixels(config: FrustumGridConfig, width: int, height: int, device: torch.device | str,
                         dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """(X,) image column ``u`` and (Y,) image row ``v`` of the cell columns' centres in a ``width x height``
    image."""
    u = (torch.arange(config.cells_x, device=device, dtype=dtype) + 0.5) * (width / config.cells_x) - 0.5
    v = (torch.arange(config.cells_y, device=device, dtype=dtype) + 0.5) * (height / config.cells_y) - 0.5
    return u, v


def cell_centre_depths(config: FrustumGridConfig, device: torch.device | str,
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(D,) z-depth (metres) of the cell centres."""
    index = torch.arange(config.cells_depth, device=device, dtype=dtype)
    return config.near + (index + 0.5) * ((config.far - config.near) / config.cells_depth)


@dataclass(frozen=True)
class FrustumGrid:
    """A :class:`FrustumGridConfig` laid over the frustum of ``camera``.

    Raises ValueError when the camera's principal point lies outside its image (intrinsics of another image size,
    or not in pixels), where the grid would not cover the frustum the image sees.
    """

    camera: PinholeCamera
    config: FrustumGridConfig

    def __post_init__(self) -> None:
        camera = self.camera
        if not (-0.5 <= camera.cx <= camera.width - 0.5 and -0.5 <= camera.cy <= camera.height - 0.5):
            raise ValueError(f"principal point ({camera.cx:g}, {camera.cy:g}) lies outside the {camera.width}x"
                             f"{camera.height} image: intrinsics of another image size?")

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(D, Y, X)``: depth cells, image rows, image columns."""
        return self.config.shape

    @property
    def depth_spacing(self) -> float:
        """z-extent of a cell in metres."""
        return (self.config.far - self.config.near) / self.config.cells_depth

    def cell_pixels(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(Y, X, 2) image coordinates ``(u, v)`` of the cell columns' centres."""
        u, v = column_centre_pixels(self.config, self.camera.width, self.camera.height, device, dtype)
        vv, uu = torch.meshgrid(v, u, indexing="ij")
        return torch.stack((uu, vv), dim=-1)

    def cell_depths(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(D,) z-depth (metres) of the cell centres."""
        return cell_centre_depths(self.config, device, dtype)

    def cell_centers_cam(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(D, Y, X, 3) cell centres in the camera (optical) frame, metres."""
        camera = self.camera
        pixels = self.cell_pixels(device, dtype)
        rays = torch.stack(((pixels[..., 0] - camera.cx) / camera.fx, (pixels[..., 1] - camera.cy) / camera.fy,
                            torch.ones_like(pixels[..., 0])), dim=-1)
        return rays[None] * self.cell_depths(device, dtype)[:, None, None, None]

    def cell_coordinates_to_cam(self, coordinates: torch.Tensor) -> torch.Tensor:
        """(..., 3) fractional cell coordinates ``(d, y, x)`` (integers at the cell centres, linear in between, as
        marching cubes places vertices) -> (..., 3) points in the camera (optical) frame, metres: the point at
        z-depth ``near + (d + 0.5) s`` on the ray through image coordinate ``((x + 0.5) W / X - 0.5,
        (y + 0.5) H / Y - 0.5)``."""
        config, camera = self.config, self.camera
        d, y, x = coordinates.unbind(dim=-1)
        u = (x + 0.5) * (camera.width / config.cells_x) - 0.5
        v = (y + 0.5) * (camera.height / config.cells_y) - 0.5
        z = config.near + (d + 0.5) * self.depth_spacing
        return torch.stack(((u - camera.cx) / camera.fx * z, (v - camera.cy) / camera.fy * z, z), dim=-1)

    def cam_to_cell_coordinates(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 3) points in the camera (optical) frame, metres, with z > 0 -> (..., 3) fractional cell coordinates
        ``(d, y, x)``: the inverse of :meth:`cell_coordinates_to_cam` (points outside the frustum get coordinates
        outside ``[-0.5, n - 0.5]``)."""
        config, camera = self.config, self.camera
        px, py, z = points.unbind(dim=-1)
        u, v = px / z * camera.fx + camera.cx, py / z * camera.fy + camera.cy
        return torch.stack(((z - config.near) / self.depth_spacing - 0.5,
                            (v + 0.5) * (config.cells_y / camera.height) - 0.5,
                            (u + 0.5) * (config.cells_x / camera.width) - 0.5), dim=-1)

    def cell_centers_world(self, T_world_cam: np.ndarray | torch.Tensor, device: torch.device | str,
                           dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(D, Y, X, 3) cell centres in the world frame for the camera pose ``T_world_cam`` (4, 4),
        camera-to-world. Raises ValueError when the pose is not a rigid transform."""
        T = torch.as_tensor(check_rigid(T_world_cam, "T_world_cam"), dtype=dtype, device=device)
        return transform_points(T, self.cell_centers_cam(device, dtype))
