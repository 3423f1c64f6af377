"""The losses of Atlas training, weighted by name: Atlas' multi-scale log-L1 on the TSDF and a voxel cross-entropy
on the fused 2D (pseudo-)labels of the target surface. Depth is a training signal only: both targets come from the
fusion of the depth frames, never from 3D labels.

Coarse targets: scale ``s`` of the network predicts one value per cell of ``f^3`` fine voxels (``f = 2**(3 - s)``),
and a coarse value clamped at +-1 removes the whole cell from the finer scales (:class:`AtlasNet`'s masking). Each
cell's target is therefore its observed value nearest to the surface (smallest ``|tsdf|``, sign kept), not the value
at one corner: a cell that holds surface anywhere must stay open for the finer scales (with the truncation of 4
voxels, a corner sample says "free" for most 8^3 cells that a wall crosses).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from semantic_recon_ros.core.config.fields import check_ranges, parameter

from torch.nn import functional as F

from ..fitting.losses import LossResult, log_transform, masked_mean, semantic_cross_entropy


@dataclass
class AtlasLossWeights:
    """Weight of each named loss in the total; 0 switches a loss off."""

    tsdf: float = parameter(
        1.0, "Atlas' log-transformed L1 against the target fusion's TSDF, summed over the four scales, on target "
             "voxels observed by depth and not clamped by a coarser scale.", 0.0, None)
    tsdf_region_balance: bool = parameter(
        True, "Average the TSDF loss of three regions alike: the truncation band (|tsdf| < 1), free space (+1) and "
              "occluded space (-1); otherwise one mean over all known voxels, which occluded space (about 3/5 of "
              "them) dominates, so the network learned to predict it everywhere.")
    semantic: float = parameter(
        0.5, "Cross-entropy against the fused 2D pseudo-labels on the target surface (|tsdf| < 1), finest scale.",
        0.0, None)
    semantic_class_balance: float = parameter(
        0.5, "Exponent a of the per-class voxel weights (voxel fraction)^-a of the semantic loss (0 = plain mean; "
             "walls dominate the pseudo-labels, and a plain mean teaches the network to label everything wall).",
        0.0, 1.0)

    def __post_init__(self) -> None:
        check_ranges(self)


def nearest_surface_target(target: torch.Tensor, known: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per cell of ``factor^3`` voxels, the known target value with the smallest magnitude and whether any is known.

    Args: target (B, 1, X, Y, Z) normalized TSDF; known (B, 1, X, Y, Z) bool; X, Y, Z multiples of ``factor``.
    Returns: (B, 1, X/f, Y/f, Z/f) values and bool known.
    """
    if factor == 1:
        return target, known
    magnitude = torch.where(known, target.abs(), torch.full_like(target, 2.0))  # unknown voxels never win
    _, index = F.max_pool3d(-magnitude, factor, return_indices=True)
    values = target.flatten(2).gather(2, index.flatten(2)).view(index.shape)
    return values, F.max_pool3d(known.float(), factor) > 0


def region_balanced_mean(errors: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``errors`` where ``mask`` holds, each of the band (|target| < 1), free (+1) and occluded (-1) regions
    weighing alike (regions without voxels left out)."""
    means = []
    for region in (target.abs() < 1, target >= 1, target <= -1):
        selected = mask & region
        if bool(selected.any()):
            means.append(masked_mean(errors, selected)[0])
    return torch.stack(means).mean() if means else masked_mean(errors, mask)[0]


def multiscale_tsdf_l1(scales: list[torch.Tensor], masks: list[torch.Tensor], target: torch.Tensor,
                       known: torch.Tensor, region_balance: bool = False) -> LossResult:
    """Atlas' log-L1 summed over scales (coarse to fine), each on its known cells that no coarser scale clamped
    (``region_balance``: :func:`region_balanced_mean` instead of one mean)."""
    total = scales[0].new_zeros(())
    terms = {}
    for scale, (prediction, mask) in enumerate(zip(scales, masks)):
        factor = target.shape[2] // prediction.shape[2]
        cell_target, cell_known = nearest_surface_target(target, known, factor)
        errors = (log_transform(prediction) - log_transform(cell_target)).abs()
        loss = (region_balanced_mean(errors, cell_target, cell_known & mask) if region_balance
                else masked_mean(errors, cell_known & mask)[0])
        terms[f"tsdf_scale{scale}"] = loss.detach()
        total = total + loss
    terms["tsdf"] = total.detach()
    return total, terms


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
        results["tsdf"] = multiscale_tsdf_l1(prediction["tsdf_scales"], prediction["mask_scales"],
                                             batch["target_tsdf"], batch["target_observed"],
                                             weights.tsdf_region_balance)
    if weights.semantic > 0:
        surface = batch["target_observed"][:, 0] & (batch["target_tsdf"][:, 0].abs() < 1.0)
        labels = torch.where(surface, batch["target_labels"], torch.full_like(batch["target_labels"], -1))
        results["semantic"] = semantic_cross_entropy(prediction["semantic_logits"].movedim(1, -1), labels, surface,
                                                     class_balance=weights.semantic_class_balance)
    for name, (loss, named) in results.items():
        total = total + getattr(weights, name) * loss
        terms.update(named)
    terms["total"] = total.detach()
    return total, terms
