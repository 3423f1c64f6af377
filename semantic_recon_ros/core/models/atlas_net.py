"""Atlas-style RGB-only reconstruction: 2D features -> back-projection -> 3D encoder-decoder.

Each posed RGB image gives stride-4 features ``f`` (:meth:`AtlasNet.image_moments`: its RGB plus, with the
``learned`` feature source, the 2D backbone's features; :mod:`..rgb_only_features` for every source);
back-projection averages ``f`` and ``f * f`` along the camera rays into a dense voxel grid, so each voxel knows
the mean of the views' features and how much they disagree (a surface voxel sees the same point in every view,
a voxel in free space sees different ones); a 3D encoder-decoder regresses the normalized TSDF
(tanh) and semantic logits with a head at every decoder scale, coarse (1/8 resolution) to fine
(full resolution). Coarse-to-fine masking: at each finer scale, voxels that the coarser scale
predicted at ``|tsdf| >= mask_threshold`` (0.99 of the truncation: surely empty or surely behind
a surface) are clamped to the sign of that prediction (+-1) and excluded (mask False), so losses
skip them and their values are fixed. This lets the map be built from RGB alone.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..camera import PinholeCamera
from .atlas_backbone2d import FEATURE_STRIDE, ResNetFPN2d
from .atlas_backprojection import backproject_to_grid, view_directions
from .conv3d_blocks import NUM_LEVELS, UNetDecoder3d, UNetEncoder3d, check_grid_dims, level_widths
from .fast_conv import Conv3d
from .model_config import AtlasNetConfig

VARIANCE_FLOOR = 1e-6  # (1e-3 of a feature unit)^2: finite log where the views agree exactly


def log_spread(mean: torch.Tensor, square: torch.Tensor) -> torch.Tensor:
    """Means of ``f`` and ``f * f`` (same shapes) -> the log of the standard deviation of ``f``, floored at
    ``sqrt(VARIANCE_FLOOR)``: the spread the network reads."""
    return 0.5 * torch.log((square - mean * mean).clamp(min=0) + VARIANCE_FLOOR)


def image_moments(config: AtlasNetConfig, images: torch.Tensor, extra: torch.Tensor | None = None,
                  backbone: nn.Module | None = None, directions: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pixel features to back-project: (V, 3, H, W) RGB in [0, 1] (H, W multiples of 4) -> (V,
    volume_channels, H/4, W/4), ``cat(f, f * f)`` with ``f = cat(RGB at stride 4, directions, extra)``.

    ``directions``: (V, 3, H/4, W/4) viewing directions (:func:`.atlas_backprojection.view_directions`), required
    with ``config.view_directions``. ``extra``: the 'deeplab' source's (V, K, H/4, W/4) class probabilities;
    computed by ``backbone`` (the network's 2D backbone) for 'learned'; none for 'color'.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (V, 3, H, W), got {tuple(images.shape)}")
    source = config.feature_source
    if source == "learned":
        if backbone is None:
            raise ValueError("feature source 'learned' needs the network's 2D backbone")
        extra = backbone(images)
    elif (extra is None) != (source == "color"):
        raise ValueError(f"feature source {source!r} " + ("takes no extra features" if source == "color" else
                         "needs the segmenter's class probabilities as extra features"))
    rgb = F.avg_pool2d(images, FEATURE_STRIDE)
    if config.view_directions != (directions is not None):
        raise ValueError("view directions are " + ("required" if config.view_directions else "not used") +
                         " by this config")
    parts = [rgb] + ([directions.to(rgb.dtype)] if directions is not None else []) \
        + ([extra.to(rgb.dtype)] if extra is not None else [])
    f = torch.cat(parts, dim=1)
    if f.shape[1] != config.image_channels:
        raise ValueError(f"image features have {f.shape[1]} channels, the config expects {config.image_channels}")
    return torch.cat((f, f * f), dim=1)


class AtlasNet(nn.Module):
    """2D ResNet-FPN backbone + 3D U-Net (one encoder, one decoder) with per-scale TSDF/semantic heads."""

    def __init__(self, config: AtlasNetConfig) -> None:
        super().__init__()
        self.config = config
        widths = level_widths(config.base_width)
        self.backbone = (ResNetFPN2d(config.backbone_width, config.feature_channels)
                         if config.feature_source == "learned" else None)
        self.encoder = UNetEncoder3d(config.volume_channels + 1, config.base_width)
        self.decoder = UNetDecoder3d(config.base_width)
        self.heads = nn.ModuleList(Conv3d(widths[level], 1 + config.num_classes, 1)
                                   for level in range(NUM_LEVELS - 1, -1, -1))

    def image_moments(self, images: torch.Tensor, extra: torch.Tensor | None = None,
                      directions: torch.Tensor | None = None) -> torch.Tensor:
        """:func:`image_moments` of this network's feature source (its backbone computes 'learned' features)."""
        return image_moments(self.config, images, extra, self.backbone, directions)

    def volume_statistics(self, feature_volume: torch.Tensor) -> torch.Tensor:
        """(B, 2C, ...) means of ``f`` and ``f * f`` -> (B, 2C, ...) mean of ``f`` and the log of its standard
        deviation (floored at 1e-3). The log keeps the contrast that matters: on a surface the views agree to a few
        thousandths, a few centimetres off it they disagree ten times more, and in free space a hundred times."""
        channels = self.config.image_channels
        mean, square = feature_volume[:, :channels].float(), feature_volume[:, channels:].float()
        return torch.cat((mean, log_spread(mean, square)), dim=1).to(feature_volume.dtype)

    def reconstruct(self, feature_volume: torch.Tensor, observed: torch.Tensor) -> dict[str, torch.Tensor | list]:
        """Regress TSDF and semantics from a grid of averaged features.

        Args:
            feature_volume: (B, volume_channels, X, Y, Z) back-projected means of ``f`` and ``f * f`` (see
                :meth:`image_moments`; X, Y, Z multiples of 16).
            observed: (B, 1, X, Y, Z) bool or {0, 1}: at least one view saw the voxel.
        Returns:
            ``"tsdf"`` (B, 1, X, Y, Z) in [-1, 1] and ``"semantic_logits"`` (B, K, X, Y, Z): the finest
            scale; ``"tsdf_scales"``, ``"semantic_logits_scales"``, ``"mask_scales"``: lists over the
            scales coarse to fine, scale ``s`` having dims ``(X, Y, Z) / 2**(3 - s)``; masks are bool
            (B, 1, ...) (True = voxel predicted at this scale; False = clamped by a coarser scale).
        """
        channels = self.config.volume_channels
        if feature_volume.dim() != 5 or feature_volume.shape[1] != channels:
            raise ValueError(f"feature_volume must be (B, {channels}, X, Y, Z), got {tuple(feature_volume.shape)}")
        check_grid_dims(feature_volume.shape[2:], "AtlasNet feature volume")
        if tuple(observed.shape) != (feature_volume.shape[0], 1, *feature_volume.shape[2:]):
            raise ValueError(f"observed must be (B, 1, X, Y, Z) matching the feature volume, "
                             f"got {tuple(observed.shape)}")
        observed = observed.to(feature_volume.dtype)
        statistics = self.volume_statistics(feature_volume) * observed
        encoded = self.encoder(torch.cat((statistics, observed), dim=1))
        decoded = self.decoder(encoded[NUM_LEVELS], encoded[:NUM_LEVELS])
        tsdf_scales, logits_scales, mask_scales = [], [], []
        for head, features in zip(self.heads, decoded):
            prediction = head(features)
            tsdf = torch.tanh(prediction[:, :1])
            if tsdf_scales:
                keep = mask_scales[-1] & (tsdf_scales[-1].abs() < self.config.mask_threshold)
                mask = F.interpolate(keep.to(tsdf.dtype), scale_factor=2, mode="nearest") > 0.5
                clamped = torch.sign(F.interpolate(tsdf_scales[-1], scale_factor=2, mode="nearest"))
                tsdf = torch.where(mask, tsdf, clamped)
            else:
                mask = torch.ones_like(tsdf, dtype=torch.bool)
            tsdf_scales.append(tsdf)
            logits_scales.append(prediction[:, 1:])
            mask_scales.append(mask)
        return {"tsdf": tsdf_scales[-1], "semantic_logits": logits_scales[-1], "tsdf_scales": tsdf_scales,
                "semantic_logits_scales": logits_scales, "mask_scales": mask_scales}

    def forward(self, images: torch.Tensor, camera: PinholeCamera, T_world_cam: np.ndarray | torch.Tensor,
                origins: np.ndarray | torch.Tensor, voxel_size: float,
                dims: Sequence[int]) -> dict[str, torch.Tensor | list]:
        """End to end (differentiable, for training): images of B grids -> per-grid reconstruction.

        For the 'color' and 'learned' feature sources ('deeplab' needs the segmenter: back-project its features
        with :mod:`..rgb_only_features` and call :meth:`reconstruct`).

        Args:
            images: (B, V, 3, H, W) RGB in [0, 1]; V views per grid, all taken with ``camera``.
            camera: intrinsics of the (H, W) images.
            T_world_cam: (B, V, 4, 4) camera-to-world poses (optical frame).
            origins: (B, 3) world position of voxel (0, 0, 0) of each grid; ``voxel_size`` metres;
                ``dims`` (X, Y, Z), multiples of 16.
        Returns:
            :meth:`reconstruct`'s dict plus ``"observed"`` (B, 1, X, Y, Z) bool (seen by a view).
        """
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be (B, V, 3, H, W), got {tuple(images.shape)}")
        if camera.shape != tuple(images.shape[-2:]):
            raise ValueError(f"camera is {camera.width}x{camera.height}, images are "
                             f"{images.shape[-1]}x{images.shape[-2]}")
        check_grid_dims(dims, "AtlasNet grid")
        if self.config.feature_source == "deeplab":
            raise ValueError("feature source 'deeplab' needs the segmenter's class probabilities: back-project "
                             "them (rgb_only_features) and call reconstruct()")
        batch, views = images.shape[:2]
        poses = torch.as_tensor(T_world_cam).reshape(batch, views, 4, 4)
        origins = torch.as_tensor(origins).reshape(batch, 3)
        grid_camera = camera.scaled(camera.width // FEATURE_STRIDE, camera.height // FEATURE_STRIDE)
        directions = (view_directions(grid_camera, poses.reshape(-1, 4, 4), images.device)
                      if self.config.view_directions else None)
        features = self.image_moments(images.flatten(0, 1), directions=directions)
        features = features.unflatten(0, (batch, views))
        volumes, counts = zip(*(backproject_to_grid(features[b], grid_camera, poses[b], origins[b], voxel_size, dims)
                                for b in range(batch)))
        observed = torch.stack(counts)[:, None] > 0
        out = self.reconstruct(torch.stack(volumes), observed)
        out["observed"] = observed
        return out
