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


FEATURE_SOURCES = ("color", "deeplab", "learned")
COLOR_CHANNELS = 3  # every feature source starts with the image's RGB in [0, 1]
DIRECTION_CHANNELS = 3  # then, with view_directions, the unit viewing direction toward the camera (world frame)


@dataclass
class AtlasNetConfig:
    """RGB-only reconstruction: 2D features back-projected into a voxel grid, then a 3D encoder-decoder.

    Each image gives per-pixel features ``f`` (stride 4): its RGB in [0, 1], with ``view_directions`` the pixel's
    unit viewing direction toward the camera (world frame), then what ``feature_source`` adds.
    Voxels keep the running means of ``f`` and ``f * f`` over the views that see them (:attr:`volume_channels`),
    from which the network takes the mean and the spread of the views' features.
    """

    num_classes: int = parameter(13, "Number of semantic classes K (length of the class list).", 1, 1024)
    feature_source: str = parameter(
        "learned", "2D features: 'color' (RGB alone), 'deeplab' (RGB + the 2D segmenter's class probabilities, "
                   "frozen) or 'learned' (RGB + the ResNet-FPN backbone, trained end to end).")
    view_directions: bool = parameter(
        True, "Add each pixel's viewing direction (world frame, unit vector toward the camera) to its features, so "
              "the voxels' means tell from which side the views saw them: in front of a surface or behind it.")
    backbone_width: int = parameter(
        16, "Channels of the first 2D ResNet stage (stages have 1, 2, 4, 8 times this); 'learned' only.", 4, 128)
    feature_channels: int = parameter(
        16, "Channels of the learned 2D feature map (stride 4) added to the RGB; 'learned' only.", 1, 256)
    base_width: int = parameter(
        12, "Channels of the 3D network at full resolution; level l has base_width * 2**l.", 2, 64)
    mask_threshold: float = parameter(
        0.99, "Voxels whose |TSDF| (normalized by the truncation) reaches this at a coarser scale are "
              "clamped to +-1 and excluded at finer scales.", 0.5, 1.0)

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.feature_source not in FEATURE_SOURCES:
            raise ValueError(f"feature_source must be one of {FEATURE_SOURCES}, got {self.feature_source!r}")

    @property
    def image_channels(self) -> int:
        """Channels of one image's features ``f``: RGB, the viewing direction, then the class probabilities or the
        learned features."""
        extra = {"color": 0, "deeplab": self.num_classes, "learned": self.feature_channels}[self.feature_source]
        return COLOR_CHANNELS + (DIRECTION_CHANNELS if self.view_directions else 0) + extra

    @property
    def volume_channels(self) -> int:
        """Channels per voxel of the back-projected features: the means of ``f`` and of ``f * f``."""
        return 2 * self.image_channels
