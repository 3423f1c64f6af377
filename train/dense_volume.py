"""A dense copy of a fused sparse volume over the bounding box of its blocks, for fast chunk cuts and lookups.

Voxel ``(i, j, k)`` of the dense arrays is the volume voxel ``first_voxel + (i, j, k)`` (centre
``(first_voxel + (i, j, k)) * voxel_size``, the convention of :mod:`semantic_recon_ros.core.tsdf_volume`).
A scene of 6 x 6 x 3 m at 4 cm takes about 14 MB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from semantic_recon_ros.core.surface_fields import labels_from_scores
from semantic_recon_ros.core.tsdf_volume import SemanticTSDFVolume

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
        cfg = volume.config
        B = cfg.block_size
        slots = volume.index.slots
        if slots.numel() == 0:
            raise ValueError("the volume is empty (no frame was fused)")
        blocks = volume.block_coords[slots].cpu()
        low = blocks.min(dim=0).values
        extent = (blocks.max(dim=0).values - low + 1).tolist()
        layers = {name: volume.layers[name][slots].cpu() for name in ("tsdf", "weight", "color", "semantic")}
        cells = blocks - low  # (n, 3) block position in the dense grid
        index = (cells[:, 0] * extent[1] + cells[:, 1]) * extent[2] + cells[:, 2]

        def densify(values: torch.Tensor, fill: float, dtype: torch.dtype) -> torch.Tensor:
            """(n, V, C) per-block values (local order (x * B + y) * B + z) -> (X, Y, Z, C) dense."""
            channels = values.shape[2]
            blocked = torch.full((extent[0] * extent[1] * extent[2], B ** 3, channels), fill, dtype=dtype)
            blocked[index] = values.to(dtype)
            blocked = blocked.view(*extent, B, B, B, channels).permute(0, 3, 1, 4, 2, 5, 6)
            return blocked.reshape(extent[0] * B, extent[1] * B, extent[2] * B, channels)

        tsdf = densify(layers["tsdf"][..., None], 1.0, torch.float32)[..., 0].contiguous()
        observed = densify((layers["weight"] > 0)[..., None], False, torch.bool)[..., 0].contiguous()
        color = densify(layers["color"].round().clamp(0, 255), 0, torch.uint8)
        label, _ = labels_from_scores(layers["semantic"].flatten(0, 1))
        labels = densify(label.view(len(slots), -1, 1), -1, torch.int8)[..., 0].contiguous()
        return cls(tsdf, observed, color, labels, low * B, float(cfg.voxel_size), float(cfg.truncation))

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
