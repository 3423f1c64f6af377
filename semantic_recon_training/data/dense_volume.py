"""A dense copy of a fused sparse volume over the bounding box of its blocks, for fast chunk cuts and lookups.

Voxel ``(i, j, k)`` of the dense arrays is the volume voxel ``first_voxel + (i, j, k)`` (centre
``(first_voxel + (i, j, k)) * voxel_size``, the convention of :mod:`semantic_recon_ros.core.map.tsdf_volume`).
A scene of 6 x 6 x 3 m at 4 cm takes about 14 MB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from semantic_recon_ros.core.surface_fields import labels_from_scores
from semantic_recon_ros.core.map.tsdf_volume import SemanticTSDFVolume

_CORNERS = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=torch.int64)


@dataclass
class DenseVolume:
    """Dense TSDF, observed mask, color and fused 2D labels of a fused volume (CPU tensors).

    Attributes:
        tsdf: (X, Y, Z) float32 normalized TSDF, 1 where unobserved.
        observed: (X, Y, Z) bool, fusion weight > 0.
        color: (X, Y, Z, 3) uint8 fused RGB, 0 where unobserved.
        labels: (X, Y, Z) int8 class with the most fused 2D label votes, -1 where no votes.
        first_voxel: (3,) int64 volume voxel of dense voxel (0, 0, 0).
        voxel_size: metres.
        truncation: metres.
    """

    tsdf: torch.Tensor
    observed: torch.Tensor
    color: torch.Tensor
    labels: torch.Tensor
    first_voxel: torch.Tensor
    voxel_size: float
    truncation: float

    @classmethod
    def from_volume(cls, volume: SemanticTSDFVolume) -> "DenseVolume":
        """Copy the blocks of ``volume`` into dense arrays spanning their bounding box."""
        cfg, grid = volume.config, volume.grid
        if grid.num_blocks == 0:
            raise ValueError("the volume is empty (no frame was fused)")
        blocks = grid.block_coords()
        low = blocks.min(dim=0).values
        extent = (blocks.max(dim=0).values - low + 1).tolist()
        first = low[None].to(grid.device)
        slots = grid.box_slots(first, extent)  # (1, nx * ny * nz)
        boxes = grid.read_boxes(("tsdf", "weight", "color"), first, extent, slots=slots)
        # labels per allocated block (K scores per voxel only there), then as a box
        present = slots[0] >= 0
        label, _ = labels_from_scores(grid.layer("semantic")[slots[0][present]].flatten(0, 1))
        per_block = torch.full((slots.shape[1], cfg.voxels_per_block), -1, dtype=torch.int64, device=grid.device)
        per_block[present] = label.view(-1, cfg.voxels_per_block)
        labels = grid.to_boxes(per_block[None, ..., None], extent)[0, 0]
        return cls(tsdf=boxes["tsdf"][0, 0].cpu().contiguous(), observed=(boxes["weight"][0, 0] > 0).cpu().contiguous(),
                   color=boxes["color"][0].permute(1, 2, 3, 0).round().clamp(0, 255).to(torch.uint8).cpu().contiguous(),
                   labels=labels.to(torch.int8).cpu().contiguous(), first_voxel=low.cpu() * cfg.block_size,
                   voxel_size=float(cfg.voxel_size), truncation=float(cfg.truncation))

    def surface_voxels(self) -> torch.Tensor:
        """(N, 3) int64 volume voxels that are observed with ``|sdf| < voxel_size`` (the surface shell)."""
        surface = self.observed & (self.tsdf.abs() * self.truncation < self.voxel_size)
        return surface.nonzero() + self.first_voxel

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.tsdf.shape)

    def crop(self, first_voxel: torch.Tensor | Sequence[int], dims: Sequence[int]) -> dict[str, torch.Tensor]:
        """Dense ``dims`` box starting at volume voxel ``first_voxel``: ``tsdf`` (X, Y, Z) (1 outside),
        ``observed`` (X, Y, Z) (False outside), ``color`` (X, Y, Z, 3) (0 outside), ``labels`` (X, Y, Z)
        (-1 outside)."""
        start = torch.as_tensor(first_voxel, dtype=torch.int64) - self.first_voxel
        dims = [int(n) for n in dims]
        out = {"tsdf": torch.ones(dims, dtype=torch.float32), "observed": torch.zeros(dims, dtype=torch.bool),
               "color": torch.zeros((*dims, 3), dtype=torch.uint8), "labels": torch.full(dims, -1, dtype=torch.int8)}
        src, dst = [], []
        for s, d, n in zip(start.tolist(), dims, self.shape):
            lo, hi = max(s, 0), min(s + d, n)
            if hi <= lo:
                return out
            src.append(slice(lo, hi))
            dst.append(slice(lo - s, hi - s))
        for name in out:
            out[name][tuple(dst)] = getattr(self, name)[tuple(src)]
        return out

    def interpolate(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Trilinear TSDF at (N, 3) world points: ``tsdf`` (N,) float32 and ``known`` (N,) bool (all 8
        surrounding voxels observed; ``tsdf`` is meaningless elsewhere)."""
        q = points.to(torch.float64) / self.voxel_size - self.first_voxel.to(torch.float64)
        base = torch.floor(q)
        fraction = (q - base).to(torch.float32)
        corners = base.to(torch.int64)[:, None, :] + _CORNERS  # (N, 8, 3)
        size = torch.tensor(self.shape, dtype=torch.int64)
        inside = ((corners >= 0) & (corners < size)).all(dim=2)
        corners = torch.minimum(corners.clamp(min=0), size - 1)
        flat = (corners[..., 0] * size[1] + corners[..., 1]) * size[2] + corners[..., 2]
        tsdf = self.tsdf.reshape(-1)[flat]
        known = (inside & self.observed.reshape(-1)[flat]).all(dim=1)
        weights = torch.where(_CORNERS.bool(), fraction[:, None, :], 1.0 - fraction[:, None, :]).prod(dim=2)
        return (weights * tsdf).sum(dim=1), known
