"""3D building blocks shared by the S4R U-Net and the Atlas volume network.

Every tensor is a dense voxel grid (B, C, X, Y, Z). The encoder halves the resolution four times
(level ``l`` has resolution ``dims / 2**l`` and ``base_width * 2**l`` channels); the decoder goes
back up with additive skip connections (LinkNet/FPN style: the upsampled decoder features and the
encoder features of the same level are summed, which keeps channel counts small and avoids a
full-resolution channel concatenation, slow on CPU).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .fast_conv import Conv3d, conv_norm_act

NUM_LEVELS = 4
GRID_MULTIPLE = 2 ** NUM_LEVELS


def level_widths(base_width: int) -> list[int]:
    """Channels of levels 0..NUM_LEVELS: ``base_width * 2**l``."""
    return [base_width * 2 ** level for level in range(NUM_LEVELS + 1)]


def check_grid_dims(dims: Sequence[int], what: str = "voxel grid") -> None:
    """Raise ValueError unless every grid dimension is a positive multiple of ``GRID_MULTIPLE`` (16)."""
    dims = tuple(int(d) for d in dims)
    if len(dims) != 3 or any(d <= 0 or d % GRID_MULTIPLE for d in dims):
        raise ValueError(f"{what} dims {dims} must be three positive multiples of {GRID_MULTIPLE} "
                         f"(the network halves the resolution {NUM_LEVELS} times)")


class ConvNormAct3d(nn.Module):
    """Conv (k x k x k, given stride) -> BatchNorm -> ReLU. (B, C_in, X, Y, Z) -> (B, C_out, X/s, Y/s, Z/s)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.conv = Conv3d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                           bias=False)
        self.norm = nn.BatchNorm3d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_norm_act(x, self.conv, self.norm, relu=True)


class ResidualBlock3d(nn.Module):
    """Two 3x3x3 conv + BatchNorm layers with an identity shortcut, then ReLU. Shape preserving."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = Conv3d(channels, channels, 3, padding=1, bias=False)
        self.norm1 = nn.BatchNorm3d(channels)
        self.conv2 = Conv3d(channels, channels, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm3d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = conv_norm_act(x, self.conv1, self.norm1, relu=True)
        return conv_norm_act(y, self.conv2, self.norm2, relu=True, residual=x)


class UpsampleReduce3d(nn.Module):
    """Halve the channels at the coarse resolution (1x1x1 conv), then nearest-neighbour upsample x2.

    (B, C_in, X, Y, Z) -> (B, C_out, 2X, 2Y, 2Z).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.reduce = ConvNormAct3d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.reduce(x), scale_factor=2, mode="nearest")


class UNetEncoder3d(nn.Module):
    """Stem conv at full resolution, then per level a stride-2 conv and a residual block.

    Input (B, C_in, X, Y, Z) with X, Y, Z multiples of 16. Returns the features of levels
    0..4: level ``l`` is (B, base_width * 2**l, X / 2**l, Y / 2**l, Z / 2**l).
    """

    def __init__(self, in_channels: int, base_width: int) -> None:
        super().__init__()
        widths = level_widths(base_width)
        self.stem = ConvNormAct3d(in_channels, widths[0])
        self.levels = nn.ModuleList(
            nn.Sequential(ConvNormAct3d(widths[level - 1], widths[level], stride=2), ResidualBlock3d(widths[level]))
            for level in range(1, NUM_LEVELS + 1)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = [self.stem(x)]
        for level in self.levels:
            features.append(level(features[-1]))
        return features


class UNetDecoder3d(nn.Module):
    """Coarse-to-fine decoder with additive skip connections.

    At level ``l`` (3 down to 0): ``x = refine_l(upsample(x) + skips[l])``, where ``refine_l`` is a
    residual block, except at full resolution (level 0) where it is a single conv (the full-resolution
    level dominates the cost). Inputs: the bottleneck (B, 16 w, X/16, Y/16, Z/16) and the skip features
    of levels 0..3 (level ``l``: (B, w * 2**l, X / 2**l, ...), e.g. an encoder's features or the sum of
    several encoders' features). Returns the decoder features of levels 3, 2, 1, 0 (coarse to fine).
    """

    def __init__(self, base_width: int) -> None:
        super().__init__()
        widths = level_widths(base_width)
        levels = range(NUM_LEVELS - 1, -1, -1)
        self.upsample = nn.ModuleList(UpsampleReduce3d(widths[level + 1], widths[level]) for level in levels)
        self.refine = nn.ModuleList(
            ResidualBlock3d(widths[level]) if level > 0 else ConvNormAct3d(widths[level], widths[level])
            for level in levels
        )

    def forward(self, bottleneck: torch.Tensor, skips: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        x = bottleneck
        outputs = []
        for index, (upsample, refine) in enumerate(zip(self.upsample, self.refine)):
            x = refine(upsample(x) + skips[NUM_LEVELS - 1 - index])
            outputs.append(x)
        return outputs
