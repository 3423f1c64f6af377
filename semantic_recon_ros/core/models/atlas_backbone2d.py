"""Light ResNet-18-style 2D backbone with an FPN top-down path, trained from scratch.

Image (V, 3, H, W) RGB in [0, 1], H and W multiples of 4 -> per-pixel features (V, C, H/4, W/4).
Stages at strides 4, 8, 16, 32 have ``w, 2w, 4w, 8w`` channels (``w = backbone_width``) and two
basic residual blocks each, as ResNet-18; the FPN adds 1x1 lateral projections top-down and a 3x3
output conv at stride 4.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

FEATURE_STRIDE = 4


class ConvNormAct2d(nn.Sequential):
    """Conv2d -> BatchNorm -> ReLU (optional). (V, C_in, H, W) -> (V, C_out, H/s, W/s)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 relu: bool = True) -> None:
        layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
                  nn.BatchNorm2d(out_channels)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class BasicBlock2d(nn.Module):
    """ResNet basic block: two 3x3 convs, shortcut projected (1x1, strided) when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvNormAct2d(in_channels, out_channels, stride=stride)
        self.conv2 = ConvNormAct2d(out_channels, out_channels, relu=False)
        self.shortcut = (nn.Identity() if stride == 1 and in_channels == out_channels
                         else ConvNormAct2d(in_channels, out_channels, kernel_size=1, stride=stride, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResNetFPN2d(nn.Module):
    """ResNet-18-like encoder (widths w..8w) + FPN decoder to one stride-4 feature map of C channels."""

    def __init__(self, backbone_width: int, feature_channels: int) -> None:
        super().__init__()
        w = backbone_width
        widths = [w, 2 * w, 4 * w, 8 * w]
        self.stem = nn.Sequential(ConvNormAct2d(3, w, stride=2), ConvNormAct2d(w, w, stride=2))
        self.stages = nn.ModuleList()
        for index, width in enumerate(widths):
            in_width = widths[index - 1] if index else w
            stride = 2 if index else 1
            self.stages.append(nn.Sequential(BasicBlock2d(in_width, width, stride), BasicBlock2d(width, width)))
        self.laterals = nn.ModuleList(nn.Conv2d(width, feature_channels, 1) for width in widths)
        self.output = nn.Conv2d(feature_channels, feature_channels, 3, padding=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(V, 3, H, W) RGB in [0, 1] -> (V, C, H/4, W/4) features."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (V, 3, H, W), got {tuple(images.shape)}")
        if images.shape[2] % FEATURE_STRIDE or images.shape[3] % FEATURE_STRIDE:
            raise ValueError(f"image height and width must be multiples of {FEATURE_STRIDE}, "
                             f"got {tuple(images.shape[2:])}")
        x = self.stem((images - 0.5) / 0.25)
        stage_outputs = []
        for stage in self.stages:
            x = stage(x)
            stage_outputs.append(x)
        top = self.laterals[-1](stage_outputs[-1])
        for lateral, features in zip(reversed(self.laterals[:-1]), reversed(stage_outputs[:-1])):
            top = lateral(features) + F.interpolate(top, size=features.shape[-2:], mode="nearest")
        return self.output(top)
