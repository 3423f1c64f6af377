"""Which surface a mesh or voxel map shows: fused observations, network predictions, or both.

``source`` is one of :data:`SURFACE_SOURCES`:

* ``observed``: voxels with fusion weight above ``min_weight``, their fused distance and color;
* ``completed``: every voxel the completion network predicted, its predicted distance and color (the network
  alone, no confidence filter);
* ``both``: observed voxels as fused and, where unobserved, the network's trusted predictions;
* ``additions``: what ``both`` adds to ``observed``: the network's trusted predictions where nothing was
  observed (meshes keep the cubes of ``both`` with at least one unobserved corner, so the ``observed`` and
  ``additions`` meshes together are the ``both`` mesh).

A prediction is *trusted* where its calibrated confidence (``pred_confidence``, :mod:`.completion_confidence`)
reaches ``completion.min_confidence``. Untrusted voxels are left out altogether, free-space predictions too: a
sign change between the back of an observed wall's truncation band and a predicted voxel behind it would
otherwise be meshed as a false shell.

Class scores: where a voxel has fused 2D label votes and a prediction, the network's probabilities replace the
votes when the network's top class probability exceeds ``completion.label_override_probability``; voxels without
votes take the prediction; "completed" shows the network's classes only. (The former rule, fused votes always
winning, cost the map most of the floors the network recognizes.) Distances are read as full per-slot pools
(cheap: one float per voxel); colors and class scores only at the voxels a caller asks for, since full-pool
copies of those (3 and K floats per voxel) would dominate meshing.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .config.completion import CompletionConfig
from .config.mapper import SURFACE_SOURCES
from .map.tsdf_volume import SemanticTSDFVolume

PREDICTION_LAYERS = ("pred_tsdf", "pred_color", "pred_semantic", "pred_confidence", "pred_weight")


class BlockFields(NamedTuple):
    """A source's fields on some blocks: each (n, V), V voxels per block in storage order.

    Attributes:
        tsdf: normalized signed distance of the source.
        valid: bool, voxels the source defines.
        observed: bool, voxels with fusion weight above the fields' ``min_weight``.
    """

    tsdf: torch.Tensor
    valid: torch.Tensor
    observed: torch.Tensor


class InterpolatedAttributes(NamedTuple):
    """What :meth:`SurfaceFields.interpolated` gives each of N points: rgb (N, 3) uint8; label (N,) int64 (-1 where
    all class scores are 0); confidence (N,) float32, the label's share of the scores; surface_confidence (N,)
    float32 (None for the "observed" source)."""

    rgb: torch.Tensor
    label: torch.Tensor
    confidence: torch.Tensor
    surface_confidence: torch.Tensor | None


# kernel codes of the sources (vertex_attributes in integrate.cpp): "both" and "additions" read voxels alike
KERNEL_SOURCE_CODES = {"observed": 0, "completed": 1, "both": 2, "additions": 2}


class SurfaceFields:
    """The fields of one ``source`` over the volume's block pool (slot-major, V voxels per slot).

    Per-block fields (:meth:`blocks`) and per-voxel values (``*_at``) are computed only where asked, so meshing a
    few changed blocks costs nothing per block of the rest of the map.

    Args:
        volume: the map.
        source: one of :data:`SURFACE_SOURCES`.
        min_weight: observed voxels count only with fusion weight above this.
        completion: ``min_confidence`` and ``label_override_probability`` (default: :class:`CompletionConfig`'s).
    """

    def __init__(self, volume: SemanticTSDFVolume, source: str = "observed", min_weight: float = 0.0,
                 completion: CompletionConfig | None = None) -> None:
        if source not in SURFACE_SOURCES:
            raise ValueError(f"surface source must be one of {SURFACE_SOURCES}, got {source!r}")
        grid = volume.grid
        self.has_predictions = all(grid.has_layer(name) for name in PREDICTION_LAYERS)
        if source != "observed" and not self.has_predictions:
            raise ValueError(f"surface source {source!r} needs the completion network's predictions; none are loaded")
        self.source = source
        self.min_weight = float(min_weight)
        self.completion = completion or CompletionConfig()
        self._volume = volume
        self.device = volume.device
        self._layers = {name: grid.layer(name) for name in grid.layer_names}

    def blocks(self, slots: torch.Tensor | None = None) -> BlockFields:
        """The source's distance and validity on the blocks ``slots`` ((n,) int64; default: the whole pool)."""
        pick = (lambda name: self._layers[name]) if slots is None else (lambda name: self._layers[name][slots])
        observed = pick("weight") > self.min_weight
        if self.source == "observed":
            return BlockFields(pick("tsdf"), observed, observed)
        predicted = pick("pred_weight") > 0
        if self.source == "completed":
            return BlockFields(pick("pred_tsdf"), predicted, observed)
        trusted = predicted & (pick("pred_confidence") >= self.completion.min_confidence)
        return BlockFields(torch.where(observed, pick("tsdf"), pick("pred_tsdf")), observed | trusted, observed)

    @property
    def tsdf(self) -> torch.Tensor:
        """(slots, V) normalized signed distance of the source over the whole pool."""
        return self.blocks().tsdf

    @property
    def valid(self) -> torch.Tensor:
        """(slots, V) bool, voxels the source defines, over the whole pool."""
        return self.blocks().valid

    def _at(self, name: str, voxels: torch.Tensor) -> torch.Tensor:
        """Layer ``name`` at the (N,) flat voxel indices: (N,) or (N, C) (index_select: 3x faster than indexing
        for rows of C values)."""
        layer = self._layers[name]
        return torch.index_select(layer.view(-1, *layer.shape[2:]), 0, voxels)

    def _observed_at(self, voxels: torch.Tensor) -> torch.Tensor:
        return self._at("weight", voxels) > self.min_weight

    def tsdf_at(self, voxels: torch.Tensor) -> torch.Tensor:
        """(N,) flat voxel indices -> (N,) the source's normalized signed distance."""
        fused = self._at("tsdf", voxels)
        if self.source == "observed":
            return fused
        predicted = self._at("pred_tsdf", voxels)
        if self.source == "completed":
            return predicted
        return torch.where(self._observed_at(voxels), fused, predicted)

    def color_at(self, voxels: torch.Tensor) -> torch.Tensor:
        """(N,) flat voxel indices -> (N, 3) float RGB 0..255: fused where observed (predicted for "completed"; the
        "observed" source is asked for observed voxels only)."""
        fused = self._at("color", voxels)
        if not self.has_predictions or self.source == "observed":
            return fused
        predicted = self._at("pred_color", voxels) * 255.0
        if self.source == "completed":
            return predicted
        return torch.where(self._observed_at(voxels)[:, None], fused, predicted)

    def scores_at(self, voxels: torch.Tensor) -> torch.Tensor:
        """(N,) flat voxel indices -> (N, K) class scores (see the module docstring; all 0 where the voxel has
        neither votes nor a prediction)."""
        votes = self._at("semantic", voxels)
        if not self.has_predictions:
            return votes
        probabilities = self._at("pred_semantic", voxels)
        use_prediction = self._at("pred_weight", voxels) > 0
        if self.source == "completed":
            return torch.where(use_prediction[:, None], probabilities, torch.zeros_like(votes))
        unvoted = votes.sum(dim=1) <= 0
        sure = probabilities.amax(dim=1) > self.completion.label_override_probability
        return torch.where((use_prediction & (unvoted | sure))[:, None], probabilities, votes)

    def surface_confidence_at(self, voxels: torch.Tensor) -> torch.Tensor:
        """(N,) flat voxel indices -> (N,) float32: 1 where the source shows observed data, else the calibrated
        confidence of the network's prediction (0 where there is none)."""
        observed = self._observed_at(voxels)
        if not self.has_predictions:
            return observed.float()
        confidence = self._at("pred_confidence", voxels)
        if self.source == "completed":
            return confidence
        return torch.where(observed, torch.ones_like(confidence), confidence)


    def interpolated(self, voxels: torch.Tensor, t: torch.Tensor) -> InterpolatedAttributes:
        """Attributes of N points each between two voxels (a mesh vertex on its edge): ``voxels`` (N, 2) flat voxel
        indices, ``t`` (N,) float32 position between them (0: at the first). Color, class scores and surface
        confidence are interpolated linearly from the two voxels' values (``*_at``); then the color is rounded to
        uint8 and the scores give a label and its share (:func:`labels_from_scores`). On the CPU the compiled kernel
        computes the same in one pass (without the (N, K) intermediates; floats may differ in the last bit)."""
        ops = self._volume.kernel_ops
        if ops is not None:
            layers = self._layers
            predicted = [layers[name] if self.has_predictions else None
                         for name in ("pred_color", "pred_semantic", "pred_weight", "pred_confidence")]
            rgb, label, confidence, surface_confidence = ops.vertex_attributes(
                voxels.contiguous(), t.contiguous(), layers["color"], layers["semantic"], layers["weight"],
                *predicted, KERNEL_SOURCE_CODES[self.source], self.min_weight,
                self.completion.label_override_probability)
            return InterpolatedAttributes(rgb, label, confidence,
                                          None if self.source == "observed" else surface_confidence)
        flat = voxels.reshape(-1)
        color = self.color_at(flat).view(-1, 2, 3)
        rgb = torch.lerp(color[:, 0], color[:, 1], t[:, None]).round_().clamp_(0, 255).to(torch.uint8)
        scores = self.scores_at(flat).view(t.numel(), 2, -1)
        label, confidence = labels_from_scores(torch.lerp(scores[:, 0], scores[:, 1], t[:, None]))
        surface_confidence = None
        if self.source != "observed":
            ends = self.surface_confidence_at(flat).view(-1, 2)
            surface_confidence = torch.lerp(ends[:, 0], ends[:, 1], t)
        return InterpolatedAttributes(rgb, label, confidence, surface_confidence)


def labels_from_scores(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) class scores -> ((N,) int64 argmax label, -1 where all scores are 0; (N,) winning share)."""
    total = scores.sum(dim=1)
    best, label = scores.max(dim=1)
    labeled = total > 0
    label = torch.where(labeled, label, torch.full_like(label, -1))
    confidence = torch.where(labeled, best / total.clamp(min=1e-12), torch.zeros_like(best))
    return label, confidence
