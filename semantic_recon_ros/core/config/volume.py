"""Configuration of the sparse semantic TSDF volume (one parameter table, see config_fields)."""

from __future__ import annotations

from dataclasses import dataclass

from .fields import check_ranges, parameter


@dataclass
class VolumeConfig:
    """How frames are fused into the block-sparse TSDF + color + semantic volume."""

    voxel_size: float = parameter(0.04, "Voxel edge length in metres.", 0.005, 0.5)
    block_size: int = parameter(8, "Voxels per block edge; blocks are allocated lazily where depth falls.", 2, 32)
    truncation_voxels: float = parameter(
        4.0, "TSDF truncation distance in voxels (truncation in metres = voxel_size * this).", 1.0, 16.0)
    max_weight: float = parameter(
        64.0, "Cap on the per-voxel fusion weight (and on label votes); lower adapts faster to change.", 1.0, 1e6)
    min_depth: float = parameter(0.1, "Depth readings closer than this (metres) are ignored.", 0.0, 100.0)
    max_depth: float = parameter(5.0, "Depth readings farther than this (metres) are ignored.", 0.01, 100.0)
    max_blocks: int = parameter(
        200_000, "Memory bound: at most this many blocks; the farthest from the camera are dropped first.", 1, 10**8)
    clearing_radius: float = parameter(
        0.0, "Blocks farther than this (metres) from the camera are dropped after each frame; 0 keeps all.", 0.0, 1e4)
    allocation_stride: int = parameter(
        4, "Use every n-th depth pixel (in x and y) to decide which blocks to allocate.", 1, 16)
    feature_dim: int = parameter(
        0, "Channels of the per-voxel feature block (RGB-only back-projection); 0 disables it.", 0, 1024)

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.min_depth >= self.max_depth:
            raise ValueError(f"VolumeConfig.min_depth ({self.min_depth}) must be below max_depth ({self.max_depth})")

    @property
    def truncation(self) -> float:
        """Truncation distance in metres."""
        return self.voxel_size * self.truncation_voxels

    @property
    def block_length(self) -> float:
        """Block edge length in metres."""
        return self.voxel_size * self.block_size

    @property
    def voxels_per_block(self) -> int:
        return self.block_size ** 3
