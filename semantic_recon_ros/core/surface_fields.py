"""Which surface a mesh or voxel map shows: fused observations, network predictions, or both.

``source`` is one of :data:`SURFACE_SOURCES`:

* ``observed``: voxels with fusion weight above ``min_weight``, their fused distance and color;
* ``completed``: voxels the completion network predicted, their predicted distance and color;
* ``both``: observed voxels as fused, and where unobserved, the predicted ones.

Class scores come from the fused 2D label votes wherever a voxel has votes (observations win, as for
distances), from the network's prediction elsewhere; "completed" shows the network's classes only.
Distances are read as full per-slot pools (cheap: one float per voxel); colors and class
scores only at the voxels a caller asks for, since full-pool copies of those (3 and K floats per
voxel) would dominate meshing.
"""

from __future__ import annotations

import torch

from .config.mapper import SURFACE_SOURCES
from .map.tsdf_volume import SemanticTSDFVolume
PREDICTION_LAYERS = ("pred_tsdf", "pred_color", "pred_semantic", "pred_weight")


class SurfaceFields:
    """The fields of one ``source`` over the volume's block pool (slot-major, V voxels per slot).

    Attributes:
        tsdf: (slots, V) normalized signed distance of the source.
        valid: (slots, V) bool, voxels the source defines.
        observed: (slots, V) bool, voxels with fusion weight above ``min_weight``.
    """

    def __init__(self, volume: SemanticTSDFVolume, source: str = "observed", min_weight: float = 0.0) -> None:
        if source not in SURFACE_SOURCES:
            raise ValueError(f"surface source must be one of {SURFACE_SOURCES}, got {source!r}")
        grid = volume.grid
        layers = {name: grid.layer(name) for name in grid.layer_names}
        self.has_predictions = all(grid.has_layer(name) for name in PREDICTION_LAYERS)
        if source != "observed" and not self.has_predictions:
            raise ValueError(f"surface source {source!r} needs the completion network's predictions; none are loaded")
        self.source = source
        self._layers = layers
        self._num_classes = volume.num_classes
        self.observed = layers["weight"] > min_weight
        if source == "observed":
            self.tsdf, self.valid = layers["tsdf"], self.observed
        elif source == "completed":
            self.tsdf, self.valid = layers["pred_tsdf"], layers["pred_weight"] > 0
        else:
            self.tsdf = torch.where(self.observed, layers["tsdf"], layers["pred_tsdf"])
            self.valid = self.observed | (layers["pred_weight"] > 0)

    def color_at(self, voxels: torch.Tensor) -> torch.Tensor:
        """(N,) flat voxel indices -> (N, 3) float RGB 0..255: fused where observed (predicted for "completed")."""
        fused = self._layers["color"].view(-1, 3)[voxels]
        if not self.has_predictions:
            return fused
        predicted = self._layers["pred_color"].view(-1, 3)[voxels] * 255.0
        if self.source == "completed":
            return predicted
        return torch.where(self.observed.view(-1)[voxels, None], fused, predicted)

    def scores_at(self, voxels: torch.Tensor) -> torch.Tensor:
        """(N,) flat voxel indices -> (N, K) class scores: the fused label votes where a voxel has any, else
        the predicted probabilities where the network predicted (all 0 where neither); for "completed" the
        predicted probabilities only."""
        K = self._num_classes
        votes = self._layers["semantic"].view(-1, K)[voxels]
        if not self.has_predictions:
            return votes
        use_prediction = self._layers["pred_weight"].view(-1)[voxels] > 0
        if self.source == "completed":
            otherwise = torch.zeros_like(votes)
        else:
            use_prediction &= votes.sum(dim=1) <= 0
            otherwise = votes
        return torch.where(use_prediction[:, None], self._layers["pred_semantic"].view(-1, K)[voxels], otherwise)


def labels_from_scores(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) class scores -> ((N,) int64 argmax label, -1 where all scores are 0; (N,) winning share)."""
    total = scores.sum(dim=1)
    best, label = scores.max(dim=1)
    labeled = total > 0
    label = torch.where(labeled, label, torch.full_like(label, -1))
    confidence = torch.where(labeled, best / total.clamp(min=1e-12), torch.zeros_like(best))
    return label, confidence
