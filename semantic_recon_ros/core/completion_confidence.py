"""A calibrated confidence for every voxel the completion network predicts.

The network's surface is often right next to observed surfaces and where the network is sure of the class, and
mostly wrong farther out: a false shell behind walls and under floors and table tops, sheets running past the
edges of observed surfaces. The confidence of a predicted voxel is the probability that a surface the network
predicts there (``|pred_tsdf| < 1 voxel``) lies within 5 cm of the true surface, as measured on the validation
rooms 905-909 (``python -m semantic_recon_training calibrate``; never on the test rooms). It is a logistic
function of two features of the voxel::

    logit(confidence) = distance_logits[min(distance, D + 1) - 1] + class_probability_weight * class_probability

* ``distance``: Chebyshev distance in voxels to the nearest observed surface voxel (fusion weight > 0 and
  ``|tsdf| < 1 voxel``), counted as 1 on the observed surface itself; ``D + 1`` ("farther") beyond
  ``D = len(distance_logits) - 1`` voxels or beyond what a chunk's margin lets the network see.
* ``class_probability``: the network's largest class probability at the voxel (its semantic certainty also
  tells how well it recognized the geometry there).

The distance term replaces the former fixed ``fill_radius`` (predictions kept within 3 voxels of an observed
surface): a checkpoint without a calibration gets exactly that rule (:meth:`ConfidenceCalibration.uncalibrated`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

UNCALIBRATED_RADIUS = 3  # checkpoints without a calibration: confidence 1 up to this distance, 0 beyond
UNCALIBRATED_MAX_DISTANCE = 8
UNCALIBRATED_LOGIT = 30.0  # sigmoid(30) is 1 in float32, sigmoid(-30) below 1e-13


@dataclass(frozen=True)
class ConfidenceCalibration:
    """The confidence model of the module docstring.

    Attributes:
        distance_logits: ``D + 1`` logits: for distances 1, 2, ..., D voxels, then for anything farther.
        class_probability_weight: weight of the network's largest class probability in the logit.
        fitted_on: what the calibration was fitted on (for reports; "" when not fitted).
    """

    distance_logits: tuple[float, ...]
    class_probability_weight: float
    fitted_on: str = ""

    def __post_init__(self) -> None:
        if len(self.distance_logits) < 2:
            raise ValueError(f"a confidence calibration needs at least 2 distance logits, got {self.distance_logits}")

    @property
    def max_distance(self) -> int:
        """D: the largest distance with a logit of its own."""
        return len(self.distance_logits) - 1

    @classmethod
    def uncalibrated(cls) -> "ConfidenceCalibration":
        """Confidence 1 within :data:`UNCALIBRATED_RADIUS` voxels of an observed surface, 0 beyond."""
        logits = [UNCALIBRATED_LOGIT if d <= UNCALIBRATED_RADIUS else -UNCALIBRATED_LOGIT
                  for d in range(1, UNCALIBRATED_MAX_DISTANCE + 2)]
        return cls(tuple(logits), 0.0, f"not calibrated: 1 within {UNCALIBRATED_RADIUS} voxels of an observed "
                                       "surface, 0 beyond")

    def to_dict(self) -> dict:
        """Plain values (the ``calibration`` entry of a checkpoint)."""
        return {"distance_logits": [float(v) for v in self.distance_logits],
                "class_probability_weight": float(self.class_probability_weight), "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, values: dict) -> "ConfidenceCalibration":
        """Inverse of :meth:`to_dict` (ValueError naming what is missing or wrong)."""
        try:
            return cls(tuple(float(v) for v in values["distance_logits"]), float(values["class_probability_weight"]),
                       str(values.get("fitted_on", "")))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"invalid confidence calibration {values!r}: {error}") from None

    def confidence(self, distance: torch.Tensor, class_probability: torch.Tensor) -> torch.Tensor:
        """(...) int64 distances (0 counts as 1; above D as farther) and (...) class probabilities -> (...) float32."""
        logits = torch.tensor(self.distance_logits, dtype=torch.float32, device=distance.device)
        index = distance.clamp(1, self.max_distance + 1) - 1
        return torch.sigmoid(logits[index] + self.class_probability_weight * class_probability.float())


def surface_distance(surface: torch.Tensor, max_distance: int) -> torch.Tensor:
    """(n, 1, X, Y, Z) bool surface voxels -> (n, 1, X, Y, Z) int64 Chebyshev distance to the nearest one, in
    voxels, up to ``max_distance``; ``max_distance + 1`` where none is that close (also near the box's border,
    for voxels whose neighbourhood the box cuts off)."""
    reached = surface.bool()
    unreached = (~reached).to(torch.int64)
    for _ in range(max_distance):
        reached = _grow_one_cube(reached)
        unreached += ~reached
    return unreached


def _grow_one_cube(mask: torch.Tensor) -> torch.Tensor:
    """(n, 1, X, Y, Z) bool mask grown by one voxel into its 26 neighbours (a 3x3x3 cube: one step along each axis
    in turn), the box's border cutting the cube off."""
    for axis in (2, 3, 4):
        size = mask.shape[axis]
        grown = mask.clone()
        grown.narrow(axis, 1, size - 1).logical_or_(mask.narrow(axis, 0, size - 1))
        grown.narrow(axis, 0, size - 1).logical_or_(mask.narrow(axis, 1, size - 1))
        mask = grown
    return mask


def observed_surface(tsdf: torch.Tensor, observed: torch.Tensor, truncation_voxels: float) -> torch.Tensor:
    """(n, 1, X, Y, Z) normalized TSDF and observed mask (bool or 0/1) -> bool: observed voxels within one voxel
    of the fused surface."""
    return (observed > 0) & (tsdf.abs() < 1.0 / truncation_voxels)
