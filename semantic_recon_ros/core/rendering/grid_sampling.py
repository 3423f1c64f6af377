"""Trilinear interpolation of dense voxel chunks at continuous voxel coordinates (differentiable).

Coordinates are in voxel units with voxel ``(i, j, k)``'s centre at ``(i, j, k)`` (see
:class:`~semantic_recon_ros.core.rendering.dense_grid.DenseGrid`). The work is done by
``torch.nn.functional.grid_sample`` with ``align_corners=True``: its normalized coordinate -1 is the
centre of the first voxel and +1 the centre of the last, exactly this convention. ``grid_sample`` is
differentiable with respect to both the voxel values and the sample coordinates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_grid(values: torch.Tensor, batch_index: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Trilinearly interpolate chunks at points.

    Args:
        values: (B, C, X, Y, Z) voxel values.
        batch_index: (N,) int64 chunk of every point.
        coords: (N, 3) continuous voxel coordinates (x, y, z); clamped to ``[0, dims - 1]``, so points
            outside the chunk read its border (with zero gradient along the clamped axes).
    Returns:
        (N, C) interpolated values.
    """
    batch, channels, *dims = values.shape
    if coords.shape[0] == 0:
        return values[0, :, 0, 0, :0].transpose(0, 1)  # (0, C), still part of the autograd graph
    if batch == 1 or channels == 1:
        # chunks stacked along x into one (1, C, B * X, Y, Z) view (no copy): one grid_sample call
        stacked = values.transpose(0, 1).reshape(1, channels, batch * dims[0], dims[1], dims[2])
        return _grid_sample(stacked, coords, dims, batch_index.to(coords.dtype) * dims[0])
    # several multi-channel chunks: one call per chunk (stacking would copy every channel)
    order = torch.argsort(batch_index, stable=True)
    counts = torch.bincount(batch_index, minlength=batch).tolist()
    parts = [_grid_sample(values[b:b + 1], part, dims)
             for b, part in enumerate(torch.split(coords[order], counts)) if counts[b]]
    return torch.cat(parts)[torch.argsort(order)]


def _grid_sample(volume: torch.Tensor, coords: torch.Tensor, dims: list[int],
                 x_offset: torch.Tensor | None = None) -> torch.Tensor:
    """(1, C, X', Y, Z) volume at (N, 3) voxel coordinates of an (X, Y, Z) chunk -> (N, C).

    Coordinates are clamped into the chunk, then shifted by ``x_offset`` (N,) along x (chunks stacked
    along x, ``X' = B * X``).
    """
    columns = []
    for axis in (2, 1, 0):  # grid_sample's last grid axis indexes the volume's last dimension: (z, y, x)
        value = coords[:, axis].clamp(0, dims[axis] - 1)
        if axis == 0 and x_offset is not None:
            value = value + x_offset
        columns.append(value * (2.0 / (volume.shape[2 + axis] - 1)) - 1.0)
    grid = torch.stack(columns, dim=-1).reshape(1, 1, 1, -1, 3)
    sampled = F.grid_sample(volume, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return sampled.reshape(volume.shape[1], -1).transpose(0, 1)
