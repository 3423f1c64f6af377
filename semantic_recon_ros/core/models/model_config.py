"""Configurations of the learned models (one parameter table each, see ``config_fields``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config.fields import check_ranges, parameter


@dataclass
class S4RNetConfig:
    """Two-encoder / three-decoder 3D U-Net completing TSDF, color and semantics of a voxel chunk."""

    num_classes: int = parameter(13, "Number of semantic classes K (length of the class list).", 1, 1024)
    base_width: int = parameter(
        12, "Channels at full resolution; level l has base_width * 2**l (4 levels, 16x at the bottleneck).", 2, 64)
    use_color: bool = parameter(
        True, "Use the RGB encoder and predict color; false gives the color-blind (depth-only) variant.")
    fusion_blocks: int = parameter(
        2, "Residual blocks of the bottleneck conv bank that fuses geometry and color codes.", 0, 8)
    label_input: bool = parameter(
        False, "Also take the fused 2D labels of the input (one-hot, zero where none) in the geometry encoder, "
               "plus a learned per-class prior added to the semantic logits where a voxel has a fused label.")

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass
class AtlasNetConfig:
    """RGB-only reconstruction: 2D features back-projected into a voxel grid, then a 3D encoder-decoder."""

    num_classes: int = parameter(13, "Number of semantic classes K (length of the class list).", 1, 1024)
    backbone_width: int = parameter(
        16, "Channels of the first 2D ResNet stage (stages have 1, 2, 4, 8 times this).", 4, 128)
    feature_channels: int = parameter(
        16, "Channels of the 2D feature map (stride 4) that is back-projected into voxels.", 1, 256)
    base_width: int = parameter(
        12, "Channels of the 3D network at full resolution; level l has base_width * 2**l.", 2, 64)
    mask_threshold: float = parameter(
        0.99, "Voxels whose |TSDF| (normalized by the truncation) reaches this at a coarser scale are "
              "clamped to +-1 and excluded at finer scales.", 0.5, 1.0)

    def __post_init__(self) -> None:
        check_ranges(self)
