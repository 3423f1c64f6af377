"""A batch of dense voxel chunks (TSDF + optional color and semantics): what networks emit and renderers read.

Voxel ``(i, j, k)`` of batch element ``b`` has its centre at ``origin[b] + (i, j, k) * voxel_size`` in the
world frame, the convention of :mod:`semantic_recon_ros.core.map.tsdf_volume` (with an origin that is a multiple
of the voxel size, grid voxels are volume voxels). Values between voxel centres are trilinear
interpolations, so the field is defined on the box spanned by the centres
``[origin, origin + (dims - 1) * voxel_size]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DenseGrid:
    """Dense chunks on one device; tensors may require grad.

    Attributes:
        tsdf: (B, 1, X, Y, Z) float signed distance / truncation in [-1, 1] (+ = free space).
        origin: (B, 3) world position of the centre of voxel (0, 0, 0) of each chunk, metres.
        voxel_size: voxel edge length in metres.
        truncation: truncation distance in metres (``tsdf * truncation`` is the signed distance).
        color: optional (B, 3, X, Y, Z) float RGB in [0, 1].
        semantic: optional (B, K, X, Y, Z) float per-class logits or probabilities.
    """

    tsdf: torch.Tensor
    origin: torch.Tensor
    voxel_size: float
    truncation: float
    color: torch.Tensor | None = None
    semantic: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.tsdf, torch.Tensor) or self.tsdf.ndim != 5 or self.tsdf.shape[1] != 1:
            raise ValueError(f"DenseGrid.tsdf must be a (B, 1, X, Y, Z) tensor, got {_describe(self.tsdf)}")
        if not self.tsdf.is_floating_point():
            raise ValueError(f"DenseGrid.tsdf must be floating point, got {self.tsdf.dtype}")
        if min(self.tsdf.shape[2:]) < 2:
            raise ValueError(f"DenseGrid needs at least 2 voxels per axis to interpolate, got {self.shape}")
        batch = self.tsdf.shape[0]
        if not isinstance(self.origin, torch.Tensor) or tuple(self.origin.shape) != (batch, 3):
            raise ValueError(f"DenseGrid.origin must be a ({batch}, 3) tensor, got {_describe(self.origin)}")
        if self.origin.device != self.tsdf.device:
            raise ValueError(f"DenseGrid.origin is on {self.origin.device}, tsdf on {self.tsdf.device}")
        self.voxel_size = float(self.voxel_size)
        self.truncation = float(self.truncation)
        if not self.voxel_size > 0 or not self.truncation > 0:
            raise ValueError(
                f"DenseGrid voxel_size and truncation must be positive, got {self.voxel_size}, {self.truncation}")
        for name, channels in (("color", 3), ("semantic", None)):
            value = getattr(self, name)
            if value is None:
                continue
            expected = (batch, value.shape[1] if channels is None else channels, *self.shape)
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != expected or value.shape[1] < 1:
                raise ValueError(f"DenseGrid.{name} must be a {expected} tensor, got {_describe(value)}")
            if value.device != self.tsdf.device or value.dtype != self.tsdf.dtype:
                raise ValueError(f"DenseGrid.{name} is {value.dtype} on {value.device}, "
                                 f"tsdf is {self.tsdf.dtype} on {self.tsdf.device}")

    @property
    def batch_size(self) -> int:
        return int(self.tsdf.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """Voxel counts ``(X, Y, Z)``."""
        return tuple(int(n) for n in self.tsdf.shape[2:])

    @property
    def num_classes(self) -> int:
        """K, or 0 without semantics."""
        return 0 if self.semantic is None else int(self.semantic.shape[1])

    @property
    def device(self) -> torch.device:
        return self.tsdf.device

    @property
    def dtype(self) -> torch.dtype:
        return self.tsdf.dtype

    def world_to_voxel(self, points: torch.Tensor, batch_index: torch.Tensor) -> torch.Tensor:
        """(N, 3) world points of chunks ``batch_index`` (N,) -> (N, 3) continuous voxel coordinates
        (voxel ``(i, j, k)``'s centre is at coordinates ``(i, j, k)``)."""
        return (points - self.origin[batch_index].to(points.dtype)) / self.voxel_size

    def to(self, device: torch.device | str) -> "DenseGrid":
        """The same grid with every tensor on ``device``."""
        def move(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor.to(device)
        return DenseGrid(move(self.tsdf), move(self.origin), self.voxel_size, self.truncation,
                         move(self.color), move(self.semantic))


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"shape {tuple(value.shape)}"
    return type(value).__name__
