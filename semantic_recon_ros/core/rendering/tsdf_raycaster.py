"""Differentiable rendering of dense TSDF chunks: depth, color and semantics at the first surface along each ray.

The surface is the first positive-to-negative zero crossing of the trilinearly interpolated TSDF along the ray,
inside the chunk's box of voxel centres. Two stages:

1. Search, without autograd (:mod:`.crossing_search`): samples on the lattice ``t_m = t_start + m * h``
   (``h`` = ``step_voxels`` voxel lengths of ray, clamped to the ray's end) until a pair ``(t_{m-1}, t_m)``
   brackets the first sign change from > 0 to <= 0. Empty space is skipped without sampling
   (:mod:`.free_space`): where the trilinear field is provably positive the ray leaps to the exit of a free
   box and resumes at the next lattice point, so the bracket is the one a plain lattice march finds.
2. Differentiable refinement: the TSDF is re-evaluated, with gradients, at the two bracketing samples only;
   ``t = t0 + (t1 - t0) * s0 / (s0 - s1)`` (secant / linear interpolation), then ``refine_steps`` times:
   evaluate at ``t``, keep the sub-bracket with the sign change, interpolate again. Depth is thereby a
   differentiable function of the TSDF voxels around the crossing; color and semantics are trilinearly
   interpolated at the differentiable hit point, so they pass gradients to their own voxels and, through the
   hit position, to the TSDF.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..camera import PinholeCamera
from ..config.fields import check_ranges, parameter
from .crossing_search import first_crossings, lattice_parameter
from .dense_grid import DenseGrid
from .free_space import FreeSpaceMap
from .grid_sampling import sample_grid
from .rays import RayBundle, image_rays, ray_box_interval


@dataclass
class RaycastConfig:
    """How :func:`render` finds and refines the surface along each ray."""

    step_voxels: float = parameter(
        0.5, "Search step along each ray, in voxel lengths; zero crossings closer together than this may be missed.",
        0.05, 2.0)
    refine_steps: int = parameter(
        1, "Secant refinements of the bracketed crossing (evaluated with gradients) after the first interpolation.",
        0, 8)
    near: float = parameter(0.0, "Rays start at this z-depth (metres; ray parameter for non-camera rays).", 0.0, None)
    far: float = parameter(math.inf, "Rays end at this z-depth (metres; ray parameter for non-camera rays).",
                           0.0, None)
    semantic_input: str = parameter(
        "logits", "What DenseGrid.semantic holds: 'logits' (rendered = softmax of the interpolated logits) or "
        "'probabilities' (rendered = interpolated probabilities, as given).", choices=("logits", "probabilities"))
    skip_block: int = parameter(4, "Empty-space skipping block edge, in cells.", 1, 64)
    skip_radius: int = parameter(8, "Largest empty-space box around a block, in blocks (Chebyshev radius).", 1, 256)
    samples_per_iteration: int = parameter(
        16384, "Search samples evaluated per march iteration over all rays: fewer waste less work past the hits, "
        "more need fewer iterations (raise it on GPUs). Results do not depend on it.", 1024, 1 << 30)

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.near >= self.far:
            raise ValueError(f"RaycastConfig.near ({self.near}) must be below far ({self.far})")


def render(
    grid: DenseGrid,
    camera: PinholeCamera | Sequence[PinholeCamera],
    T_world_cam: torch.Tensor | np.ndarray,
    config: RaycastConfig | None = None,
) -> dict[str, torch.Tensor]:
    """Render V views of each of the B chunks.

    Args:
        grid: B chunks (tensors may require grad).
        camera: intrinsics of every view, or a sequence of V cameras with the same image size H x W.
        T_world_cam: (B, V, 4, 4) camera-to-world poses (optical frame: x right, y down, z forward).
        config: search parameters (defaults if None).
    Returns:
        dict of tensors on the grid's device, zero where not ``valid``:

        - ``depth``: (B, V, H, W) z-depth of the first surface, metres.
        - ``valid``: (B, V, H, W) bool, the ray crosses the surface (+ to -) inside the chunk's box.
        - ``hit_points``: (B, V, H, W, 3) world-frame surface points.
        - ``color``: (B, V, H, W, 3) interpolated color (only if ``grid.color`` is given).
        - ``semantic``: (B, V, H, W, K) class probabilities (only if ``grid.semantic`` is given): softmax of
          the interpolated logits, or the interpolated probabilities (``config.semantic_input``).
    """
    rays = image_rays(camera, T_world_cam, grid.device, grid.dtype)
    return render_rays(grid, rays, config)


def render_rays(grid: DenseGrid, rays: RayBundle, config: RaycastConfig | None = None) -> dict[str, torch.Tensor]:
    """Render arbitrary rays: ``rays`` of layout S give outputs of shape (B, *S, ...), keys as :func:`render`
    (``depth`` is the ray parameter of the hit, the z-depth for camera rays)."""
    config = config or RaycastConfig()
    if rays.batch_size != grid.batch_size:
        raise ValueError(f"ray bundle has batch size {rays.batch_size}, grid {grid.batch_size}")
    if rays.origins.device != grid.device:
        raise ValueError(f"rays are on {rays.origins.device}, grid on {grid.device}")
    flat = rays.flatten()
    num_rays = flat.origins.shape[1]
    batch_index = torch.arange(grid.batch_size, device=grid.device).repeat_interleave(num_rays)
    origins = flat.origins.reshape(-1, 3).to(grid.dtype)
    directions = flat.directions.reshape(-1, 3).to(grid.dtype)
    march = _RayMarch.setup(grid, batch_index, origins, directions, config)
    ray, lattice = march.search(grid.tsdf, config)
    depth = march.refine(grid.tsdf, ray, lattice, config.refine_steps)
    hit_voxel = march.points(ray, depth)
    hits = {"depth": depth, "hit_points": origins[ray] + depth[:, None] * directions[ray]}
    if grid.color is not None:
        hits["color"] = sample_grid(grid.color, batch_index[ray], hit_voxel)
    if grid.semantic is not None:
        semantic = sample_grid(grid.semantic, batch_index[ray], hit_voxel)
        hits["semantic"] = semantic.softmax(dim=-1) if config.semantic_input == "logits" else semantic

    total = batch_index.shape[0]
    layout = (grid.batch_size, *rays.layout)
    valid = torch.zeros(total, dtype=torch.bool, device=grid.device)
    valid[ray] = True
    out = {"valid": valid.reshape(layout)}
    for name, values in hits.items():
        full = values.new_zeros((total, *values.shape[1:])).index_put((ray,), values)
        out[name] = full.reshape(*layout, *values.shape[1:])
    return out


@dataclass
class _RayMarch:
    """The rays of one render call, flat over all chunks, in the voxel coordinates of each ray's chunk.

    Attributes:
        batch_index: (R,) chunk of each ray.
        origins, directions: (R, 3) ray ``x(t) = origin + t * direction`` in voxel coordinates (keep the
            autograd history of the world-frame rays).
        t_start, t_end: (R,) ray parameter interval inside the chunk's box and [near, far] (start > end: miss).
        step: (R,) lattice spacing in ray parameter (``step_voxels`` voxel lengths of ray).
    """

    batch_index: torch.Tensor
    origins: torch.Tensor
    directions: torch.Tensor
    t_start: torch.Tensor
    t_end: torch.Tensor
    step: torch.Tensor

    @classmethod
    def setup(cls, grid: DenseGrid, batch_index: torch.Tensor, origins: torch.Tensor, directions: torch.Tensor,
              config: RaycastConfig) -> "_RayMarch":
        """From (R, 3) world-frame rays of chunks ``batch_index``."""
        voxel_origins = grid.world_to_voxel(origins, batch_index)
        voxel_directions = directions / grid.voxel_size
        with torch.no_grad():
            upper = torch.tensor(grid.shape, device=grid.device, dtype=grid.dtype) - 1
            t_start, t_end = ray_box_interval(voxel_origins.detach(), voxel_directions.detach(),
                                              torch.zeros_like(upper), upper)
            t_start = t_start.clamp(min=config.near)
            t_end = t_end.clamp(max=config.far)
            step = config.step_voxels / torch.linalg.vector_norm(voxel_directions.detach(), dim=1)
        return cls(batch_index, voxel_origins, voxel_directions, t_start, t_end, step)

    def points(self, ray: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(P, 3) voxel coordinates of rays ``ray`` (P,) at parameters ``t`` (P,) (differentiable)."""
        return self.origins[ray] + t[:, None] * self.directions[ray]

    def search(self, tsdf: torch.Tensor, config: RaycastConfig) -> tuple[torch.Tensor, torch.Tensor]:
        """(M,) rays with a crossing and (M,) lattice index of their bracket's end (see :func:`first_crossings`)."""
        free_space = FreeSpaceMap.build(tsdf, config.skip_block, config.skip_radius)
        return first_crossings(tsdf, free_space, self.batch_index, self.origins.detach(), self.directions.detach(),
                               self.t_start, self.t_end, self.step, config.samples_per_iteration)

    def refine(self, tsdf: torch.Tensor, ray: torch.Tensor, lattice: torch.Tensor, refine_steps: int) -> torch.Tensor:
        """Differentiable ray parameter (M,) of the crossing in the brackets found by :meth:`search`."""
        batch_index = self.batch_index[ray]

        def tsdf_at(t: torch.Tensor) -> torch.Tensor:
            return sample_grid(tsdf, batch_index, self.points(ray, t))[:, 0]

        start, step, end = self.t_start[ray], self.step[ray], self.t_end[ray]
        lattice = lattice.to(start.dtype)
        t0 = lattice_parameter(start, step, end, lattice - 1)
        t1 = lattice_parameter(start, step, end, lattice)
        s0, s1 = tsdf_at(t0), tsdf_at(t1)
        t = _secant(t0, t1, s0, s1)
        for _ in range(refine_steps):
            s = tsdf_at(t)
            above = s.detach() > 0
            t0, s0 = torch.where(above, t, t0), torch.where(above, s, s0)
            t1, s1 = torch.where(above, t1, t), torch.where(above, s1, s)
            t = _secant(t0, t1, s0, s1)
        return t


def _secant(t0: torch.Tensor, t1: torch.Tensor, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
    """Zero of the line through (t0, s0) and (t1, s1), kept within [t0, t1] (s0 > 0 >= s1 expected)."""
    slope = s0 - s1
    ok = slope > 0
    fraction = torch.where(ok, s0 / torch.where(ok, slope, torch.ones_like(slope)), torch.zeros_like(s0))
    return t0 + (t1 - t0) * fraction.clamp(0.0, 1.0)
