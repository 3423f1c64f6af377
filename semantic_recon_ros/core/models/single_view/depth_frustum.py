"""What one depth image tells about its camera's frustum grid: the input of a depth-conditioned single-view network.

Each cell column ``(y, x)`` of the grid (:mod:`.frustum_grid`) reads the depth pixel nearest its centre. Along the
column, a cell in front of that depth is free, a cell within one truncation behind it is in the surface's band, and
the rest (farther behind, or any cell of a column without valid depth) is unknown. The result is two channels per
cell: the projective TSDF (signed z-distance to the depth / truncation, clipped to [-1, 1]; 0 where unknown) and the
known mask. Only image size, not intrinsics, enter: cell columns are uniform in the image.
"""

from __future__ import annotations

import torch

from .config import FrustumGridConfig
from .frustum_grid import cell_centre_depths, column_centre_pixels


def column_depths(depth: torch.Tensor, frustum: FrustumGridConfig) -> torch.Tensor:
    """(B, H, W) z-depth images (metres; 0 or non-finite = invalid) -> (B, Y, X) the depth of the pixel nearest each
    cell column's centre (0 where invalid)."""
    height, width = depth.shape[-2:]
    u, v = (centre.round() for centre in column_centre_pixels(frustum, width, height, depth.device))
    picked = depth[:, v.long().clamp(0, height - 1)][:, :, u.long().clamp(0, width - 1)]
    return torch.where(torch.isfinite(picked) & (picked > 0), picked, torch.zeros_like(picked))


def depth_frustum_channels(depth: torch.Tensor, frustum: FrustumGridConfig) -> torch.Tensor:
    """(B, H, W) z-depth images of the grid's camera (metres; 0 / non-finite = invalid) -> (B, 2, D, Y, X): the
    projective TSDF of the depth (0 where unknown) and the known mask (1 / 0), see the module docstring."""
    if depth.dim() != 3:
        raise ValueError(f"depth must be (B, H, W), got {tuple(depth.shape)}")
    columns = column_depths(depth.float(), frustum)
    signed = columns[:, None] - cell_centre_depths(frustum, depth.device)[None, :, None, None]  # (B, D, Y, X) z-distance to the depth
    known = (columns[:, None] > 0) & (signed > -frustum.truncation)
    tsdf = torch.where(known, (signed / frustum.truncation).clamp(-1.0, 1.0), torch.zeros_like(signed))
    return torch.stack((tsdf, known.float()), dim=1)
