"""The fixed grid of training chunks laid over the fusion volume's voxel grid.

Chunk ``c = (a, b, d)`` (integers) covers the voxels ``c * stride + [0, dims)`` per axis, so its voxel
``(0, 0, 0)`` is the volume voxel ``c * stride`` with centre ``c * stride * voxel_size`` in the world frame
(the volume's convention, see :mod:`semantic_recon_ros.core.map.tsdf_volume`). With ``stride < dims`` chunks
overlap. A point belongs to a chunk when it lies in the box spanned by the chunk's voxel centres,
``[c * stride, c * stride + dims - 1]`` in voxel units: the box where the chunk's trilinear field (and
the renderer) is defined.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from semantic_recon_ros.core.map.block_index import pack_coords, unpack_keys


@dataclass(frozen=True)
class ChunkGrid:
    """Chunk size and spacing in voxels (per axis x, y, z) and the voxel size in metres."""

    dims: tuple[int, int, int]
    stride: tuple[int, int, int]
    voxel_size: float

    def __post_init__(self) -> None:
        if len(self.dims) != 3 or len(self.stride) != 3:
            raise ValueError(f"chunk dims and stride need 3 values each, got {self.dims}, {self.stride}")
        if min(self.dims) < 2 or min(self.stride) < 1 or any(s > d for s, d in zip(self.stride, self.dims)):
            raise ValueError(f"need dims >= 2 and 1 <= stride <= dims per axis, got dims {self.dims}, "
                             f"stride {self.stride}")

    def first_voxel(self, chunks: torch.Tensor) -> torch.Tensor:
        """(N, 3) chunk coords -> (N, 3) int64 volume voxel of each chunk's voxel (0, 0, 0)."""
        return chunks.to(torch.int64) * torch.tensor(self.stride, dtype=torch.int64, device=chunks.device)

    def origin(self, chunks: torch.Tensor) -> torch.Tensor:
        """(N, 3) chunk coords -> (N, 3) float64 world centre of each chunk's voxel (0, 0, 0), metres."""
        return self.first_voxel(chunks).to(torch.float64) * self.voxel_size

    def voxel_coords(self, chunk: torch.Tensor) -> torch.Tensor:
        """(3,) chunk coords -> (X * Y * Z, 3) int64 volume voxels of the chunk, x slowest (C order)."""
        axes = [torch.arange(n, dtype=torch.int64, device=chunk.device) for n in self.dims]
        local = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
        return local + self.first_voxel(chunk.reshape(1, 3))

    def containing(self, voxel_coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Chunks whose box of voxel centres contains each point.

        Args:
            voxel_coords: (N, 3) continuous (or integer) coordinates in volume voxel units (world / voxel_size).
        Returns:
            ``point`` (M,) index of the point and ``chunk`` (M, 3) int64 coords, one row per (point, chunk)
            pair, grouped by offset (not sorted).
        """
        device = voxel_coords.device
        q = voxel_coords.to(torch.float64)
        dims = torch.tensor(self.dims, dtype=torch.float64, device=device)
        stride = torch.tensor(self.stride, dtype=torch.float64, device=device)
        low = torch.ceil((q - (dims - 1)) / stride).to(torch.int64)
        high = torch.floor(q / stride).to(torch.int64)
        span = [-(-d // s) + 1 for d, s in zip(self.dims, self.stride)]
        points, chunks = [], []
        for offset in itertools.product(*(range(n) for n in span)):
            chunk = low + torch.tensor(offset, dtype=torch.int64, device=device)
            inside = (chunk <= high).all(dim=1).nonzero().squeeze(1)
            points.append(inside)
            chunks.append(chunk[inside])
        return torch.cat(points), torch.cat(chunks)

    def count(self, voxel_coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Points per chunk: ((C, 3) chunk coords sorted by key, (C,) int64 counts) for chunks with >= 1 point."""
        _, chunks = self.containing(voxel_coords)
        keys, counts = torch.unique(pack_coords(chunks), return_counts=True)
        return unpack_keys(keys), counts
