"""Real posed RGB-D frames (7-Scenes) as SSR's semi-supervision of the single-view model: images without 3D labels
whose depth checks the prediction rendered into their own view and into a neighbouring posed view.

Every frame is prepared once (:func:`load_real_frames`): its color image as the network sees it
(:func:`~semantic_recon_ros.core.models.single_view.network_view`, resampled to the trained camera; ``covered``
marks the pixels the real image covers), its depth as the *render camera* (the trained camera at
``render_width x render_height``, same optical centre and orientation) sees it (nearest real pixel; 0 where invalid,
outside the real image or outside the frustum's [near, far]), its pose and, when the sequence gives one, the
gravity direction in the camera frame (``R_world_cam^T g_world``).

A sample of :class:`RealViewPairs` is frame i with a neighbour j = i +- ``neighbour_offset`` (positions in the
prepared frames: frames, for a range of step 1; the side that exists, the sign drawn at random). The neighbour's depth counts only where its surface point lies in frame i's
frustum at a covered pixel: elsewhere the prediction of frame i cannot explain it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from semantic_recon_ros.core.camera import PinholeCamera, invert_rigid
from semantic_recon_ros.core.datasets import open_sequence
from semantic_recon_ros.core.models.single_view import FrustumGrid, network_view
from semantic_recon_ros.core.models.single_view.frustum_rendering import frustum_cell_coordinates
from semantic_recon_ros.core.models.single_view.view_resampling import source_pixels

GRAVITY_FILE = "gravity-direction.txt"


@dataclass(frozen=True)
class RealFrames:
    """Prepared frames of one sequence (F frames)."""

    indices: list[int]  # frame numbers in the sequence
    images: torch.Tensor  # (F, 3, H, W) uint8, the trained camera's view
    covered: torch.Tensor  # (F, H, W) bool, the real image covers the pixel
    depth: torch.Tensor  # (F, h, w) float32 metres in the render camera, 0 = no target
    T_world_cam: torch.Tensor  # (F, 4, 4) float64 camera-to-world
    gravity_cam: torch.Tensor | None  # (F, 3) float32 unit gravity in the camera frame, None without a gravity file


def read_gravity(folder: str | Path) -> np.ndarray | None:
    """The unit gravity direction (3,) in world coordinates of a sequence folder (its ``gravity-direction.txt``, three
    numbers), or None when it has none."""
    path = Path(folder) / GRAVITY_FILE
    if not path.is_file():
        return None
    values = np.loadtxt(path, dtype=np.float64).reshape(-1)
    if values.shape != (3,) or not np.isfinite(values).all() or np.linalg.norm(values) < 1e-6:
        raise ValueError(f"{path}: expected a gravity direction of three finite numbers, got {values}")
    return values / np.linalg.norm(values)


def render_camera_depth(depth: np.ndarray, camera: PinholeCamera, render_camera: PinholeCamera, near: float,
                        far: float) -> torch.Tensor:
    """(H, W) metres of ``camera`` -> (h, w) float32 as ``render_camera`` (same optical centre and orientation) sees
    it: the nearest pixel's depth, 0 where it is invalid, outside [near, far] or outside the image."""
    pixels = source_pixels(camera, render_camera).round().long()
    u, v = pixels[..., 0], pixels[..., 1]
    inside = (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    values = torch.as_tensor(np.nan_to_num(depth, nan=0.0, posinf=0.0), dtype=torch.float32)
    sampled = values[v.clamp(0, camera.height - 1), u.clamp(0, camera.width - 1)]
    keep = inside & (sampled >= near) & (sampled <= far)
    return torch.where(keep, sampled, torch.zeros_like(sampled))


def load_real_frames(folder: str | Path, frames: range, trained: PinholeCamera, render_camera: PinholeCamera,
                     near: float, far: float, progress: bool = True) -> RealFrames:
    """Prepare ``frames`` of the posed RGB-D sequence at ``folder`` (see the module docstring)."""
    sequence = open_sequence(folder)
    if frames.stop > len(sequence) or frames.start < 0:
        raise ValueError(f"{folder} has frames 0-{len(sequence) - 1}; asked for {frames.start}-{frames.stop - 1}")
    gravity_world = read_gravity(folder)
    images, covered, depths, poses = [], [], [], []
    for index in tqdm(frames, desc=f"real frames {Path(folder).name}", unit="frame", disable=not progress):
        frame = sequence[index]
        view = network_view(frame.color, frame.camera, trained)
        images.append((view.image * 255).round().to(torch.uint8))
        covered.append(view.covered)
        depths.append(render_camera_depth(frame.depth, frame.camera, render_camera, near, far))
        poses.append(torch.as_tensor(frame.T_world_cam, dtype=torch.float64))
    poses = torch.stack(poses)
    gravity = None
    if gravity_world is not None:
        gravity = (poses[:, :3, :3].transpose(1, 2) @ torch.as_tensor(gravity_world)).float()
    return RealFrames(list(frames), torch.stack(images), torch.stack(covered), torch.stack(depths), poses, gravity)


def neighbour_depth_mask(depth: torch.Tensor, render_camera: PinholeCamera, T_cam0_cam: torch.Tensor,
                         grid: FrustumGrid, covered: torch.Tensor) -> torch.Tensor:
    """(h, w) bool: the neighbour's depth ``depth`` (h, w, its render camera) is > 0 and its surface point, moved by
    ``T_cam0_cam`` (4, 4) into frame 0, lies in frame 0's frustum ``grid`` at a pixel frame 0's image ``covered``
    (H, W of the grid's camera)."""
    points = render_camera.backproject(depth)
    T = T_cam0_cam.to(points.dtype)
    points_cam0 = points @ T[:3, :3].T + T[:3, 3]
    _, inside = frustum_cell_coordinates(grid, points_cam0)
    uv, _ = grid.camera.project(points_cam0)
    u = uv[..., 0].round().long().clamp(0, grid.camera.width - 1)
    v = uv[..., 1].round().long().clamp(0, grid.camera.height - 1)
    return (depth > 0) & inside & covered[v, u]


class RealViewPairs(Dataset):
    """Samples of :class:`RealFrames` for the semi-supervised losses (see the module docstring):

    ``image`` (3, H, W) float in [0, 1]; ``depth`` (h, w) and ``depth_valid`` (h, w) bool (depth > 0 at a covered
    pixel) of the own view; ``neighbour_depth``, ``neighbour_valid`` and ``T_cam0_neighbour`` (4, 4) float32 of the
    neighbour; ``gravity_cam`` (3,) when the frames have it.
    """

    def __init__(self, frames: RealFrames, grid: FrustumGrid, render_camera: PinholeCamera,
                 neighbour_offset: int) -> None:
        if len(frames.indices) <= neighbour_offset:
            raise ValueError(f"{len(frames.indices)} frames leave no neighbour {neighbour_offset} frames away")
        self.frames, self.grid, self.render_camera = frames, grid, render_camera
        self.offset = neighbour_offset
        scaled_covered = torch.nn.functional.interpolate(frames.covered[:, None].float(), size=render_camera.shape,
                                                         mode="nearest")[:, 0] > 0
        self.own_valid = (frames.depth > 0) & scaled_covered

    def __len__(self) -> int:
        return len(self.frames.indices)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        frames = self.frames
        sides = [j for j in (index - self.offset, index + self.offset) if 0 <= j < len(self)]
        other = sides[int(torch.randint(len(sides), ()))]
        T_cam0_cam = torch.as_tensor(invert_rigid(frames.T_world_cam[index].numpy()) @ frames.T_world_cam[other]
                                     .numpy(), dtype=torch.float32)
        sample = {"image": frames.images[index].float() / 255, "depth": frames.depth[index],
                  "depth_valid": self.own_valid[index], "neighbour_depth": frames.depth[other],
                  "neighbour_valid": neighbour_depth_mask(frames.depth[other], self.render_camera, T_cam0_cam,
                                                          self.grid, frames.covered[index]),
                  "T_cam0_neighbour": T_cam0_cam}
        if frames.gravity_cam is not None:
            sample["gravity_cam"] = frames.gravity_cam[index]
        return sample
