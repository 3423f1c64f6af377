"""S4R-style 3D U-Net: complete TSDF, color and semantics of a dense voxel chunk.

A geometry encoder (TSDF + observed mask) and a color encoder (RGB) each reduce the chunk four
times by stride-2 convolutions; a conv bank fuses the two bottleneck codes; three decoders (TSDF,
color, semantics) climb back to full resolution, each adding the skip features of BOTH encoders at
every level. With ``use_color = False`` (the color-blind variant) the color encoder and decoder do
not exist. Chunk dims must be multiples of 16 (e.g. 64 x 64 x 128 -> a 4 x 4 x 8 bottleneck with
``16 * base_width`` channels: 128 at base width 8, 192 at the default 12).

Residual blocks sit at levels 1-4 and in the decoders' levels 3-1; the full-resolution level has a
single conv in each encoder and decoder, because it dominates the cost (see bench/bench_models.py).

With ``label_input`` the geometry encoder also reads the input's fused 2D labels (class ids, fed as K
one-hot channels, zero where a voxel has none), and a learned per-class gain adds the fused label to the semantic logits:
``logits += label_gain * one_hot``. Both start at zero, so a label-input network made from a trained one
(:meth:`S4RNet.with_label_input`) computes exactly what that one did until it is trained further.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from .conv3d_blocks import (NUM_LEVELS, ConvNormAct3d, ResidualBlock3d, UNetDecoder3d, UNetEncoder3d,
                            check_grid_dims, level_widths)
from .fast_conv import Conv3d
from .model_config import S4RNetConfig


class S4RNet(nn.Module):
    """Two encoders, a fusion bank and three decoders (one encoder and two decoders when color-blind)."""

    def __init__(self, config: S4RNetConfig) -> None:
        super().__init__()
        self.config = config
        widths = level_widths(config.base_width)
        encoders = 2 if config.use_color else 1
        self.geometry_encoder = UNetEncoder3d(2 + (config.num_classes if config.label_input else 0), config.base_width)
        self.color_encoder = UNetEncoder3d(3, config.base_width) if config.use_color else None
        self.fusion = nn.Sequential(
            ConvNormAct3d(encoders * widths[NUM_LEVELS], widths[NUM_LEVELS], kernel_size=1),
            *(ResidualBlock3d(widths[NUM_LEVELS]) for _ in range(config.fusion_blocks)),
        )
        self.tsdf_decoder = UNetDecoder3d(config.base_width)
        self.tsdf_head = Conv3d(widths[0], 1, 1)
        self.color_decoder = UNetDecoder3d(config.base_width) if config.use_color else None
        self.color_head = Conv3d(widths[0], 3, 1) if config.use_color else None
        self.semantic_decoder = UNetDecoder3d(config.base_width)
        self.semantic_head = Conv3d(widths[0], config.num_classes, 1)
        self.label_gain = nn.Parameter(torch.zeros(config.num_classes)) if config.label_input else None

    @torch.no_grad()
    def with_label_input(self) -> "S4RNet":
        """A label-input copy of this (label-free) network that computes the same outputs (new weights zero)."""
        if self.config.label_input:
            raise ValueError("this S4RNet already takes labels")
        network = S4RNet(replace(self.config, label_input=True))
        state = self.state_dict()
        stem = "geometry_encoder.stem.conv.weight"
        widened = torch.zeros_like(network.state_dict()[stem])
        widened[:, :state[stem].shape[1]] = state[stem]
        state[stem] = widened
        state["label_gain"] = torch.zeros(self.config.num_classes)
        network.load_state_dict(state)
        return network

    def forward(self, tsdf: torch.Tensor, observed: torch.Tensor,
                color: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Complete one batch of chunks.

        Args:
            tsdf: (B, 1, X, Y, Z) truncated signed distance divided by the truncation, in [-1, 1].
            observed: (B, 1, X, Y, Z) bool or {0, 1}: voxel was observed. TSDF and color of
                unobserved voxels are ignored (zeroed before the encoders).
            color: (B, 3, X, Y, Z) RGB in [0, 1]; required with color, must be None color-blind.
            labels: (B, X, Y, Z) integer fused 2D labels of the input (class ids; -1 or anything outside
                [0, K) where a voxel has none; None: none anywhere); only with ``label_input``.
        Returns:
            ``{"tsdf": (B, 1, X, Y, Z) in (-1, 1) (tanh), "color": (B, 3, X, Y, Z) in (0, 1)
            (sigmoid; absent when color-blind), "semantic_logits": (B, K, X, Y, Z)}``.
        """
        observed = self._check_inputs(tsdf, observed, color, labels)
        K = self.config.num_classes
        label_ids = label_index(labels, K) if labels is not None else None
        geometry = self.geometry_encoder(geometry_channels(tsdf, observed, K if self.label_gain is not None else 0,
                                                          label_ids))
        skips = geometry[:NUM_LEVELS]
        codes = [geometry[NUM_LEVELS]]
        if self.color_encoder is not None:
            color_features = self.color_encoder(color * observed)
            skips = [g + c for g, c in zip(skips, color_features)]  # computed once, shared by the decoders
            codes.append(color_features[NUM_LEVELS])
        bottleneck = self.fusion(torch.cat(codes, dim=1))
        out = {"tsdf": torch.tanh(self.tsdf_head(self.tsdf_decoder(bottleneck, skips)[-1]))}
        if self.color_decoder is not None:
            out["color"] = torch.sigmoid(self.color_head(self.color_decoder(bottleneck, skips)[-1]))
        out["semantic_logits"] = self.semantic_head(self.semantic_decoder(bottleneck, skips)[-1])
        if self.label_gain is not None and label_ids is not None:
            # + label_gain * one-hot labels: on each voxel's label channel of the head's fresh output, indexed with
            # the classes last (contiguous on the fast path, whose outputs are channels_last_3d)
            index, valid = label_ids
            gain = torch.where(valid, self.label_gain[index], 0.0).to(out["semantic_logits"].dtype)
            out["semantic_logits"].movedim(1, -1).scatter_add_(-1, index[..., None], gain[..., None])
        return out

    def _check_inputs(self, tsdf: torch.Tensor, observed: torch.Tensor, color: torch.Tensor | None,
                      labels: torch.Tensor | None) -> torch.Tensor:
        if tsdf.dim() != 5 or tsdf.shape[1] != 1:
            raise ValueError(f"tsdf must be (B, 1, X, Y, Z), got {tuple(tsdf.shape)}")
        check_grid_dims(tsdf.shape[2:], "S4RNet input chunk")
        if tuple(observed.shape) != tuple(tsdf.shape):
            raise ValueError(f"observed must match tsdf {tuple(tsdf.shape)}, got {tuple(observed.shape)}")
        if self.config.use_color:
            expected = (tsdf.shape[0], 3, *tsdf.shape[2:])
            if color is None or tuple(color.shape) != expected:
                got = None if color is None else tuple(color.shape)
                raise ValueError(f"color must be {expected} for the color S4RNet, got {got}")
        elif color is not None:
            raise ValueError("the color-blind S4RNet (use_color = False) takes no color input")
        if labels is not None:
            if not self.config.label_input:
                raise ValueError("this S4RNet (label_input = False) takes no labels")
            expected = (tsdf.shape[0], *tsdf.shape[2:])
            if tuple(labels.shape) != expected or labels.dtype.is_floating_point:
                raise ValueError(f"labels must be {expected} integer class ids, got {tuple(labels.shape)} "
                                 f"{labels.dtype}")
        return observed.to(tsdf.dtype)


def geometry_channels(tsdf: torch.Tensor, observed: torch.Tensor, num_classes: int,
                      label_ids: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """The geometry encoder's input: (B, 2 + K, X, Y, Z) of ``tsdf``'s dtype, channels_last_3d in memory (the
    layout the fast convolutions read, built in place rather than converted).

    Channels: the TSDF of observed voxels, the observed mask ((B, 1, X, Y, Z) each) and, for ``num_classes`` K > 0,
    the one-hot fused labels from :func:`label_index`'s ``label_ids`` (zero where a voxel has none, or everywhere
    for None)."""
    B, _, X, Y, Z = tsdf.shape
    channels = tsdf.new_zeros((B, X, Y, Z, 2 + num_classes))
    channels[..., 0] = (tsdf * observed)[:, 0]
    channels[..., 1] = observed[:, 0]
    if num_classes and label_ids is not None:
        index, valid = label_ids
        channels[..., 2:].scatter_(-1, index[..., None], valid[..., None].to(tsdf.dtype))
    return channels.permute(0, 4, 1, 2, 3)


def label_index(labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, X, Y, Z) class ids (outside [0, K) = none) -> (B, X, Y, Z) int64 class index (0 where none) and bool
    valid."""
    valid = (labels >= 0) & (labels < num_classes)
    return torch.where(valid, labels, 0).long(), valid
