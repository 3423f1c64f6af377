"""RGB-only reconstruction over the live map: an Atlas network run chunk by chunk on the back-projected features.

RGB-only mapping (:class:`~.mapper.Mapper` with ``rgb_only_max_range``) fills the map's ``features`` layer with
the images' features (:mod:`.rgb_only_features`, averaged along the camera rays by
:meth:`~.map.tsdf_volume.SemanticTSDFVolume.integrate_features`; ``feature_weight`` counts the views) and observes
no geometry at all. :class:`RgbOnlyCompletionEngine` runs an :class:`~.models.atlas_net.AtlasNet` over that map
with the machinery of the S4R completion (:class:`~.completion.CompletionEngine`: the chunk grid, overlap-tile
cores, most recently changed chunks first, time budgets, the map lock held only while reading and writing, reruns
of the chunks whose input changed); what differs:

* active chunks: their core holds a voxel seen by a view (``feature_weight > 0``), not observed surface;
* input: ``features`` (n, volume_channels, S, S, S) and ``observed = feature_weight > 0``
  (:meth:`~.models.atlas_net.AtlasNet.reconstruct`);
* predictions, written only where a view saw the voxel (``pred_weight`` 1 there, 0 elsewhere, so the "completed"
  surface never runs into space no image covers):

  - ``pred_tsdf``: the network's normalized TSDF,
  - ``pred_semantic``: the softmax of its class logits,
  - ``pred_color``: the mean RGB of the views (feature channels 0..2, in [0, 1]),
  - ``pred_confidence``: the network's top class probability, 0 where no view saw the voxel. It is not a
    calibrated surface probability (unlike the S4R engine's, :mod:`.completion_confidence`); the map of an RGB-only
    mapper is the "completed" source (every prediction, :mod:`.surface_fields`), where it is only carried along
    as the vertices' and voxels' ``surface_confidence``, and new blocks are allocated where a predicted surface
    reaches ``completion.min_confidence`` (blocks the views saw exist already).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .completion import CompletionEngine
from .config.completion import CompletionConfig
from .config.volume import VolumeConfig
from .map.tsdf_volume import SemanticTSDFVolume
from .models.atlas_net import AtlasNet
from .models.model_config import COLOR_CHANNELS, AtlasNetConfig


@dataclass
class FeatureChunkBatch:
    """Chunks of an RGB-only map read for the Atlas network.

    Attributes:
        chunks: (n, 3) int64 chunk grid coordinates.
        versions: (n,) int64 newest block version in each chunk's input when it was read.
        features: (n, volume_channels, S, S, S) back-projected feature means (0 where no view saw the voxel).
        observed: (n, 1, S, S, S) float, 1 where at least one view saw the voxel.
    """

    chunks: torch.Tensor
    versions: torch.Tensor
    features: torch.Tensor
    observed: torch.Tensor

    def select(self, keep: torch.Tensor) -> "FeatureChunkBatch":
        """The chunks where ``keep`` ((n,) bool) holds."""
        return FeatureChunkBatch(self.chunks[keep], self.versions[keep], self.features[keep], self.observed[keep])


def load_atlas_network(path: str | Path, volume_config: VolumeConfig, class_names, device) -> AtlasNet:
    """The Atlas network of checkpoint ``path`` on ``device``, checked against the map settings (classes, voxel size,
    truncation). Raises FileNotFoundError for a missing file and ValueError naming the file when it is no Atlas
    checkpoint or does not fit the map."""
    from .models import load_checkpoint  # the models package is only needed with a network

    network, info = load_checkpoint(path, device, expected_class_names=class_names,
                                    expected_voxel_size=volume_config.voxel_size,
                                    expected_truncation=volume_config.truncation)
    if info.model != "atlas":
        raise ValueError(f"{path}: model {info.model!r} completes a depth-fused RGB-D map; RGB-only mapping needs "
                         "an Atlas checkpoint (model 'atlas')")
    return network


def rgb_only_volume_config(volume_config: VolumeConfig, network_config: AtlasNetConfig) -> VolumeConfig:
    """``volume_config`` with ``feature_dim`` set to the network's ``volume_channels`` when it is 0 (unset); raises
    ValueError naming ``volume.feature_dim`` when it is set to another value."""
    channels = network_config.volume_channels
    if volume_config.feature_dim == 0:
        return replace(volume_config, feature_dim=channels)
    if volume_config.feature_dim != channels:
        raise ValueError(f"volume.feature_dim is {volume_config.feature_dim}, but the Atlas checkpoint's "
                         f"{network_config.feature_source!r} features take {channels} channels per voxel: set "
                         f"volume.feature_dim to {channels}, or to 0 to take it from the checkpoint")
    return volume_config


class RgbOnlyCompletionEngine(CompletionEngine):
    """Keeps the prediction layers of an RGB-only map up to date with an Atlas network (see the module docstring).

    Args:
        network: the Atlas network (``reconstruct`` is called on chunks of ``config.chunk_size`` voxels, a multiple
            of 16).
        volume: the map; its ``feature_dim`` must be the network's ``volume_channels``.
        config: chunking and scheduling, as for the S4R engine.
    """

    ACTIVITY_LAYERS = ("feature_weight",)

    def __init__(self, network: AtlasNet, volume: SemanticTSDFVolume, config: CompletionConfig) -> None:
        channels = network.config.volume_channels
        if volume.config.feature_dim != channels:
            raise ValueError(f"the map keeps {volume.config.feature_dim} feature channels per voxel, the Atlas "
                             f"network reads {channels} (volume.feature_dim)")
        super().__init__(network, volume, config)

    def resolve_network_dtype(self) -> torch.dtype:
        """float32: ``completion.precision`` is the S4R network's; Atlas in bfloat16 is not measured."""
        return torch.float32

    @classmethod
    def from_checkpoint(cls, path, volume: SemanticTSDFVolume, config: CompletionConfig) -> "RgbOnlyCompletionEngine":
        """Load an Atlas checkpoint for ``volume`` (ValueError when it is another model or does not fit the map's
        classes, voxel size, truncation or feature channels)."""
        return cls(load_atlas_network(path, volume.config, volume.class_names, volume.device), volume, config)

    def active_voxels(self, layers: dict[str, torch.Tensor]) -> torch.Tensor:
        """Voxels seen by at least one view."""
        return layers["feature_weight"] > 0

    def gather(self, chunks: torch.Tensor, versions: torch.Tensor) -> FeatureChunkBatch:
        """Read the features of ``chunks`` from the map (hold the map lock around this)."""
        boxes = self.read_chunks(chunks, ("features", "feature_weight"))
        return FeatureChunkBatch(chunks, versions, boxes["features"], (boxes["feature_weight"] > 0).float())

    @torch.inference_mode()
    def predict(self, batch: FeatureChunkBatch) -> dict[str, torch.Tensor]:
        """Run the network; returns the chunks' core crops (c = core size): tsdf (n, 1, c, c, c), color (n, 3, ...),
        semantic (n, K, ...) class probabilities, confidence (n, 1, ...) and weight (n, 1, ...), 1 where a view saw
        the voxel (see the module docstring)."""
        out = self.network.reconstruct(batch.features, batch.observed > 0)
        seen = self.crop_cores(batch.observed)
        semantic = torch.softmax(self.crop_cores(out["semantic_logits"]), dim=1)
        color = self.crop_cores(batch.features[:, :COLOR_CHANNELS]).clamp(0.0, 1.0)
        return {"tsdf": self.crop_cores(out["tsdf"]), "color": color, "semantic": semantic,
                "confidence": semantic.amax(dim=1, keepdim=True) * seen, "weight": seen}
