"""Where the trilinear TSDF of a chunk is certainly positive: the empty-space skipping structure of the raycaster.

Cell ``c = (i, j, k)`` is the cube between the voxel centres ``c`` and ``c + 1`` (voxel coordinates). Inside a
cell the TSDF is the trilinear interpolation of its 8 corner voxels, so where all of them are positive the
field is positive on the whole closed cell. Cells are grouped into blocks of ``block_size**3``; block ``b``
covers the voxel-coordinate box ``[b * s, (b + 1) * s]`` (``s`` = block size) and is *occupied* when one of
the voxels in that box is <= 0. A block's radius is its Chebyshev distance, in blocks, to the nearest
occupied block (capped; 0 for occupied blocks), so all blocks within ``radius - 1`` of it are free: the box
``[(b - radius + 1) * s, (b + radius) * s]`` holds no zero crossing, and a ray inside it may leap to its exit.
Blocks outside the chunk count as free (rays end at the chunk's box anyway).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class FreeSpaceMap:
    """Block radii of B chunks (see the module docstring).

    Attributes:
        block_size: cells per block edge.
        block_dims: blocks per chunk along x, y, z: ``ceil((dims - 1) / block_size)``.
        radius: (B * prod(block_dims),) radius of every block, flattened (b, i, j, k), in the dtype of the
            TSDF (small integers).
    """

    block_size: int
    block_dims: tuple[int, int, int]
    radius: torch.Tensor

    @classmethod
    @torch.no_grad()
    def build(cls, tsdf: torch.Tensor, block_size: int, max_radius: int) -> "FreeSpaceMap":
        """From (B, 1, X, Y, Z) TSDF values (never differentiated), radii capped at ``max_radius``."""
        # min over each block's voxels [b * s, (b + 1) * s]: windows of s + 1 voxels every s voxels, after
        # padding every axis to blocks * s + 1 voxels with values that never win
        dims = tsdf.shape[2:]
        blocks = [-(-(n - 1) // block_size) for n in dims]
        pad = [blocks[axis] * block_size + 1 - dims[axis] for axis in range(3)]
        negated = F.pad(-tsdf.detach(), (0, pad[2], 0, pad[1], 0, pad[0]), value=-math.inf)
        block_min = -F.max_pool3d(negated, kernel_size=block_size + 1, stride=block_size)
        reach = (block_min <= 0).to(tsdf.dtype)  # 1 where an occupied block is within the current distance
        radius = torch.zeros_like(reach)
        for _ in range(max_radius):
            radius += 1.0 - reach
            reach = F.max_pool3d(reach, kernel_size=3, stride=1, padding=1)
        return cls(int(block_size), tuple(int(n) for n in reach.shape[2:]), radius.reshape(-1))

    def block_strides(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, int]:
        """(3,) flat-index strides of block (i, j, k), and the stride of the chunk index b."""
        bx, by, bz = self.block_dims
        return torch.tensor([by * bz, bz, 1], device=device, dtype=dtype), bx * by * bz
