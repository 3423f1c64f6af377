"""Which frames supervise a chunk: the views whose depth samples lie on the chunk's fused surface.

For every frame, valid depth samples (every ``pixel_stride``-th pixel of the reduced-resolution depth) are
back-projected into the world. A sample counts for a chunk when it lies inside the chunk's box of voxel
centres and within ``max_distance`` (2 cm by default) of the fused surface there: the fused TSDF,
trilinearly interpolated at the sample from 8 observed voxels, has ``|sdf| < max_distance``. A view's
overlap with a chunk is the fraction of its valid samples that count. Each chunk takes the ``count`` views
of largest overlap (ties: earlier frame first) among those with overlap >= ``min_fraction`` (S4R: top 5,
5 %).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from semantic_recon_ros.core.map.block_index import pack_coords

from .chunk_grid import ChunkGrid
from .dense_volume import DenseVolume
from .view_images import ViewImages


def surface_samples(view: ViewImages, pixel_stride: int, min_depth: float, max_depth: float) -> torch.Tensor:
    """(N, 3) float64 world points of the valid depth pixels ``[::pixel_stride, ::pixel_stride]`` of ``view``."""
    depth = torch.from_numpy(np.ascontiguousarray(view.depth[::pixel_stride, ::pixel_stride])).to(torch.float64)
    rays = view.camera.pixel_rays("cpu", torch.float64)[::pixel_stride, ::pixel_stride]
    valid = torch.isfinite(depth) & (depth >= min_depth) & (depth <= max_depth)
    points = rays[valid] * depth[valid][:, None]
    T = torch.from_numpy(view.T_world_cam).to(torch.float64)
    return points @ T[:3, :3].T + T[:3, 3]


def view_overlaps(
    fused: DenseVolume,
    grid: ChunkGrid,
    chunks: torch.Tensor,
    views: Sequence[ViewImages],
    depth_range: tuple[float, float],
    pixel_stride: int = 2,
    max_distance: float = 0.02,
    progress: bool = True,
) -> torch.Tensor:
    """Overlap of every view with every chunk (see the module docstring).

    Args:
        fused: the fused surface the samples are tested against.
        grid: the chunk grid (same voxel size as ``fused``).
        chunks: (C, 3) chunk coords, sorted by :func:`pack_coords` key.
        views: the frames.
        depth_range: (min, max) depth in metres of the samples used.
        pixel_stride: sample every n-th pixel in x and y.
        max_distance: samples within this distance (metres) of the fused surface count.
    Returns:
        (C, F) float32 fraction of each view's valid samples that fall on the chunk's surface.
    """
    if abs(grid.voxel_size - fused.voxel_size) > 1e-9:
        raise ValueError(f"chunk grid voxel size {grid.voxel_size} differs from the fused volume's {fused.voxel_size}")
    keys = pack_coords(chunks)
    if len(keys) > 1 and not bool((keys[1:] > keys[:-1]).all()):
        raise ValueError("chunks must be unique and sorted by key")
    overlaps = torch.zeros((len(chunks), len(views)), dtype=torch.float32)
    for column, view in enumerate(tqdm(views, desc="view overlaps", unit="view", disable=not progress)):
        points = surface_samples(view, pixel_stride, *depth_range)
        if points.shape[0] == 0 or len(keys) == 0:
            continue
        tsdf, known = fused.interpolate(points)
        close = known & (tsdf.abs() * fused.truncation < max_distance)
        _, containing = grid.containing(points[close] / grid.voxel_size)
        found = pack_coords(containing)
        position = torch.searchsorted(keys, found).clamp(max=len(keys) - 1)
        match = keys[position] == found
        counts = torch.bincount(position[match], minlength=len(keys))
        overlaps[:, column] = counts.to(torch.float32) / points.shape[0]
    return overlaps


def select_views(overlaps: torch.Tensor, count: int, min_fraction: float) -> list[list[int]]:
    """Per chunk, the columns of its ``count`` largest overlaps that reach ``min_fraction``.

    Args:
        overlaps: (C, F) from :func:`view_overlaps`.
    Returns:
        C lists of column indices, best first (ties: lower column first); shorter than ``count`` when
        fewer views qualify.
    """
    order = torch.sort(-overlaps, dim=1, stable=True).indices
    chosen = []
    for row, columns in zip(overlaps, order):
        good = columns[row[columns] >= min_fraction][:count]
        chosen.append([int(c) for c in good])
    return chosen
