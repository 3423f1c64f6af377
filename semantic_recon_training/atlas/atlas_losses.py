"""The losses of Atlas training, weighted by name: Atlas' multi-scale log-L1 on the TSDF and a voxel cross-entropy
on the fused 2D (pseudo-)labels of the target surface. Depth is a training signal only: both targets come from the
fusion of the depth frames, never from 3D labels."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from semantic_recon_ros.core.config.fields import check_ranges, parameter

from ..fitting.losses import LossResult, log_tsdf_l1, voxel_cross_entropy


@dataclass
class AtlasLossWeights:
    """Weight of each named loss in the total; 0 switches a loss off."""

    tsdf: float = parameter(
        1.0, "Atlas' log-transformed L1 against the target fusion's TSDF, summed over the four scales, on target "
             "voxels observed by depth and not clamped by a coarser scale.", 0.0, None)
    semantic: float = parameter(
        0.25, "Cross-entropy against the fused 2D pseudo-labels on the target surface (|tsdf| < 1), finest scale.",
        0.0, None)

    def __post_init__(self) -> None:
        check_ranges(self)


def atlas_losses(prediction: dict, batch: dict, weights: AtlasLossWeights) -> tuple[torch.Tensor, dict]:
    """The weighted total and the named terms of one batch.

    Args:
        prediction: :meth:`AtlasNet.reconstruct`'s dict (``tsdf_scales``, ``mask_scales``, ``semantic_logits``).
        batch: ``target_tsdf`` (B, 1, X, Y, Z), ``target_observed`` (B, 1, X, Y, Z) bool, ``target_labels``
            (B, X, Y, Z) int64 (-1 unlabeled).
    """
    terms: dict[str, torch.Tensor] = {}
    total = prediction["tsdf"].new_zeros(())
    results: dict[str, LossResult] = {}
    if weights.tsdf > 0:
        results["tsdf"] = log_tsdf_l1(prediction["tsdf_scales"], batch["target_tsdf"], batch["target_observed"],
                                      prediction["mask_scales"], name="tsdf")
    if weights.semantic > 0:
        surface = batch["target_observed"][:, 0] & (batch["target_tsdf"][:, 0].abs() < 1.0)
        labels = torch.where(surface, batch["target_labels"], torch.full_like(batch["target_labels"], -1))
        loss, named = voxel_cross_entropy(prediction["semantic_logits"], labels)
        results["semantic"] = (loss, {"semantic": named["gt_semantic"],
                                      "semantic_voxels": named["gt_semantic_voxels"]})
    for name, (loss, named) in results.items():
        total = total + getattr(weights, name) * loss
        terms.update(named)
    terms["total"] = total.detach()
    return total, terms
