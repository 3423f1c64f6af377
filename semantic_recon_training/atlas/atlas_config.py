"""The run config of Atlas training: typed dataclasses with defaults, filled from YAML like the S4R run config.

Sections (``semantic_recon_training/configs/atlas*.yaml``)::

    data:        DataConfig            scenes, label source, caches, train / validation split (as for S4R)
    extraction:  AtlasExtractionConfig how a sequence becomes feature-volume chunks
    model:       AtlasNetConfig        (semantic_recon_ros.core.models)
    losses:      AtlasLossWeights      (semantic_recon_training.atlas.atlas_losses)
    augmentation: AtlasAugmentationConfig random crops of the cached chunks
    optimizer:   OptimizerConfig
    trainer:     TrainerConfig

Layered like every run config: ``base: <file>`` then the keys that differ (:func:`..fitting.training_config.
read_config_layers`). A scene's ``extraction`` overrides in ``data.sequences`` apply to this section.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from semantic_recon_ros.core.config.fields import check_ranges, parameter
from semantic_recon_ros.core.config.volume import VolumeConfig
from semantic_recon_ros.core.models import AtlasNetConfig

from ..fitting.training_config import (DataConfig, OptimizerConfig, RunConfigMethods, TrainerConfig,
                                       read_run_config, run_config_sections)
from .atlas_losses import AtlasLossWeights


SPACE_VOXEL_FACTOR = 4  # voxel size of the free / occluded space volume relative to the map's


@dataclass
class AtlasExtractionConfig:
    """How a posed RGB-D sequence is cut into Atlas training chunks (see :mod:`.atlas_extraction`)."""

    voxel_size: float = parameter(0.04, "Voxel edge length in metres.", 0.005, 0.5)
    truncation_voxels: float = parameter(4.0, "TSDF truncation in voxels.", 1.0, 16.0)
    block_size: int = parameter(8, "Block edge of the volumes, in voxels.", 2, 32)
    chunk_size: int = parameter(48, "Chunk edge in voxels (a multiple of 16).", 16, 256)
    chunk_stride: int = parameter(24, "Spacing of the chunk grid in voxels.", 1, 256)
    frame_stride: int = parameter(1, "Use every n-th frame of the sequence.", 1, 10_000)
    max_frames: int = parameter(0, "At most this many frames after striding (0 = all).", 0, None)
    min_depth: float = parameter(0.1, "Depth readings closer than this (metres) are ignored (target fusion).",
                                 0.0, 100.0)
    max_depth: float = parameter(5.0, "Depth readings farther than this (metres) are ignored (target fusion).",
                                 0.01, 100.0)
    max_range: float = parameter(
        3.0, "Features fill each camera ray up to this distance (metres), as the node's rgb_only_max_range.",
        0.1, 100.0)
    min_surface_voxels: int = parameter(
        400, "Chunks need at least this many target surface voxels (|sdf| < 1 voxel) seen by a view.", 1, None)
    space_targets: bool = parameter(
        True, "Also supervise voxels beyond the truncation band: +1 in front of the observed depth (free space), -1 "
              "behind it (occluded), from a coarse projective TSDF with a long truncation (see atlas_extraction).")
    views_per_chunk: int = parameter(
        8, "Views stored per chunk (RGB at view_downscale) for the 'learned' feature source.", 1, 64)
    view_downscale: int = parameter(2, "Stored views have the frame resolution divided by this.", 1, 16)

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.chunk_size % 16:
            raise ValueError(f"chunk_size must be a multiple of 16, got {self.chunk_size}")
        if not self.min_depth < self.max_range <= self.max_depth:
            raise ValueError(f"max_range ({self.max_range}) must lie in (min_depth, max_depth] = "
                             f"({self.min_depth}, {self.max_depth}]")

    @property
    def truncation(self) -> float:
        return self.voxel_size * self.truncation_voxels

    def space_volume_config(self) -> VolumeConfig:
        """The coarse volume whose sign tells free from occluded space: 4x the voxel size, truncation 16 of its
        voxels (2.56 m at 4 cm)."""
        return VolumeConfig(voxel_size=SPACE_VOXEL_FACTOR * self.voxel_size, truncation_voxels=16.0,
                            block_size=self.block_size, min_depth=self.min_depth, max_depth=self.max_depth)

    def volume_config(self, feature_dim: int = 0) -> VolumeConfig:
        """The fusion volume: the target's (``feature_dim`` 0) or the features' volume."""
        return VolumeConfig(voxel_size=self.voxel_size, truncation_voxels=self.truncation_voxels,
                            block_size=self.block_size, min_depth=self.min_depth, max_depth=self.max_depth,
                            feature_dim=feature_dim)


@dataclass
class AtlasAugmentationConfig:
    """How training samples are drawn from the cached chunks."""

    crop_size: int = parameter(
        32, "Training samples are crops of this edge (voxels, a multiple of 16) at a random offset inside each cached "
            "chunk; 0 = the whole chunk. The chunk grid is fixed in the world, so without crops the network learns "
            "where surfaces lie relative to the chunk's borders (the floor height) and fails on chunks placed "
            "elsewhere, as the map's are.", 0, 256)

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.crop_size % 16:
            raise ValueError(f"crop_size must be a multiple of 16, got {self.crop_size}")


@dataclass
class AtlasRunConfig(RunConfigMethods):
    """Everything the ``atlas-*`` training commands need (sections as in the module docstring)."""

    data: DataConfig = field(default_factory=DataConfig)
    extraction: AtlasExtractionConfig = field(default_factory=AtlasExtractionConfig)
    model: AtlasNetConfig = field(default_factory=AtlasNetConfig)
    losses: AtlasLossWeights = field(default_factory=AtlasLossWeights)
    augmentation: AtlasAugmentationConfig = field(default_factory=AtlasAugmentationConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


def atlas_config_from_dict(values: dict, source: str = "config") -> AtlasRunConfig:
    """Build an :class:`AtlasRunConfig` from nested mappings (missing sections and keys take their defaults)."""
    return run_config_sections(AtlasRunConfig, values, source)


def load_atlas_config(path: str | Path) -> AtlasRunConfig:
    """Read a YAML Atlas run config and its bases (FileNotFoundError / ValueError naming the file)."""
    return read_run_config(path, atlas_config_from_dict)
