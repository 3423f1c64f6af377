"""Loss terms of self-supervised (and, for ablations, supervised) training, and their weights by name.

Every function returns ``(loss, terms)``: a scalar tensor that carries gradients, and a dict of detached
named diagnostics (the loss itself under its name, plus e.g. pixel counts or per-scale values). Masked
means divide by the number of selected elements; with nothing selected the loss is an exact 0 that is
still connected to the prediction (so a batch can always call ``backward``).

TSDF values are normalized (signed distance / truncation, in [-1, 1], + = free space) unless noted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from semantic_recon_ros.core.config.fields import check_ranges, parameter

LossResult = tuple[torch.Tensor, dict[str, torch.Tensor]]


@dataclass
class LossWeights:
    """Weight of each named loss in the total; 0 switches a loss off (it is then not even computed)."""

    depth: float = parameter(1.0, "L1 between rendered and captured depth (metres) on the chunk's views.", 0.0, None)
    color: float = parameter(0.5, "L1 between rendered and captured RGB (in [0, 1]) on the chunk's views.", 0.0, None)
    semantic: float = parameter(
        0.5, "Cross-entropy of rendered semantics against the views' 2D (pseudo-)labels, near-surface rays only "
             "(S4R eq. 1-3).", 0.0, None)
    virtual_semantic: float = parameter(
        0.0, "Cross-entropy of rendered semantics against the 2D segmenter run on rendered RGB of virtual views "
             "(S4R eq. 4).", 0.0, None)
    observed_tsdf: float = parameter(1.0, "L1 between predicted and input TSDF on observed input voxels.", 0.0, None)
    target_tsdf: float = parameter(
        1.0, "Atlas' log-transformed multi-scale L1 against the fusion of all frames (observed target voxels).",
        0.0, None)
    silhouette: float = parameter(
        0.0, "Soft silhouette IoU loss (SSR) between soft rendered occupancy and observed valid-depth masks.",
        0.0, None)
    unknown_space: float = parameter(
        0.0, "Hinge against surfaces (|tsdf| < unknown_space_band) predicted in voxels farther than "
             "unknown_space_margin voxels from anything the target fusion observed.", 0.0, None)
    gt_tsdf: float = parameter(
        0.0, "Supervised ablation: log-transformed multi-scale L1 against the synthetic ground-truth TSDF.", 0.0, None)
    gt_semantic: float = parameter(
        0.0, "Supervised ablation: voxel cross-entropy against the synthetic ground-truth 3D labels.", 0.0, None)

    def __post_init__(self) -> None:
        check_ranges(self)

    def active(self) -> dict[str, float]:
        """The losses with a positive weight, by name."""
        return {name: weight for name, weight in vars(self).items() if weight > 0}


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of ``values`` where ``mask`` (same shape, bool) holds, and the count; 0 (with graph) if none."""
    count = mask.sum()
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / count.clamp(min=1), count


def depth_l1(rendered_depth: torch.Tensor, captured_depth: torch.Tensor, mask: torch.Tensor) -> LossResult:
    """Mean absolute depth error in metres.

    Args:
        rendered_depth, captured_depth: (...) z-depths in metres (any common shape, e.g. (B, V, H, W)).
        mask: (...) bool, pixels compared (rendered hit and captured surface both valid).
    """
    loss, count = masked_mean((rendered_depth - captured_depth).abs(), mask)
    return loss, {"depth": loss.detach(), "depth_pixels": count.detach().float()}


def color_l1(rendered_color: torch.Tensor, captured_color: torch.Tensor, mask: torch.Tensor) -> LossResult:
    """Mean absolute RGB error (colors in [0, 1], averaged over channels).

    Args:
        rendered_color, captured_color: (..., 3).
        mask: (...) bool pixels compared.
    """
    loss, count = masked_mean((rendered_color - captured_color).abs().mean(dim=-1), mask)
    return loss, {"color": loss.detach(), "color_pixels": count.detach().float()}


def semantic_cross_entropy(rendered_logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
                           name: str = "semantic", class_balance: float = 0.0) -> LossResult:
    """Cross-entropy of rendered semantics against 2D labels, normalized by the valid pixels.

    ``L = -1/|P| sum_{p in P} log softmax(s_p)[l_p]`` over ``P`` = pixels in ``mask`` whose label is in
    ``[0, K)``, where ``s_p`` are the class logits interpolated at the ray's surface hit (S4R eq. 1-3: the
    rendered class distribution is their softmax). Taking logits, not probabilities, keeps the gradient of
    confidently wrong pixels.

    Args:
        rendered_logits: (..., K) rendered class logits.
        labels: (...) int64 class ids, -1 (or any id outside ``[0, K)``) unlabeled.
        mask: (...) bool, pixels that may contribute (e.g. rendered hit near the observed surface).
        name: key of the loss in the returned terms.
        class_balance: exponent ``a`` of per-class pixel weights ``(n_c / n)^-a`` from the class counts ``n_c``
            of the selected pixels (0: plain mean; 0.5: square-root inverse frequency). The loss is then the
            weighted mean, so rare classes are not drowned by the dominant one (walls, in pseudo-labels).
    """
    num_classes = rendered_logits.shape[-1]
    labeled = mask & (labels >= 0) & (labels < num_classes)
    safe_labels = labels.clamp(0, num_classes - 1)
    log_probs = torch.log_softmax(rendered_logits, dim=-1)
    picked = log_probs.gather(-1, safe_labels.unsqueeze(-1)).squeeze(-1)
    if class_balance > 0:
        counts = torch.bincount(safe_labels[labeled], minlength=num_classes).to(picked.dtype)
        fractions = counts / counts.sum().clamp(min=1)
        weights = torch.where(counts > 0, fractions.clamp(min=1e-12) ** -class_balance, torch.zeros_like(counts))
        pixel_weights = torch.where(labeled, weights[safe_labels], torch.zeros_like(picked))
        loss = (-picked * pixel_weights).sum() / pixel_weights.sum().clamp(min=1e-12)
        count = labeled.sum()
    else:
        loss, count = masked_mean(-picked, labeled)
    return loss, {name: loss.detach(), f"{name}_pixels": count.detach().float()}


def observed_tsdf_l1(predicted: torch.Tensor, observed_tsdf: torch.Tensor, observed: torch.Tensor) -> LossResult:
    """Mean absolute TSDF error on the voxels the input observed (self-supervised geometry).

    Args:
        predicted, observed_tsdf: (B, 1, X, Y, Z) normalized TSDFs.
        observed: (B, 1, X, Y, Z) bool.
    """
    loss, count = masked_mean((predicted - observed_tsdf).abs(), observed)
    return loss, {"observed_tsdf": loss.detach(), "observed_voxels": count.detach().float()}


def log_transform(tsdf: torch.Tensor) -> torch.Tensor:
    """Atlas' ``sign(x) * log(|x| + 1)``: weighs errors near the surface more than far ones."""
    return torch.sign(tsdf) * torch.log1p(tsdf.abs())


def coarse_target(target: torch.Tensor, mask: torch.Tensor, dims: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Target and mask on a coarser grid of ``dims`` (each an integer divisor of the fine dims).

    Coarse voxel ``i`` takes fine voxel ``i * f`` (nearest subsampling, ``f`` = fine / coarse per axis), the
    alignment of a stride-2 encoder level whose voxel ``i`` is centred on fine voxel ``2 i``.
    """
    factors = []
    for fine, coarse in zip(target.shape[2:], dims):
        if fine % coarse:
            raise ValueError(f"coarse grid {tuple(dims)} does not divide the target grid {tuple(target.shape[2:])}")
        factors.append(fine // coarse)
    pick = (slice(None), slice(None), *(slice(None, None, f) for f in factors))
    return target[pick], mask[pick]


def log_tsdf_l1(predictions: Sequence[torch.Tensor], target: torch.Tensor, target_mask: torch.Tensor,
                prediction_masks: Sequence[torch.Tensor | None] | None = None, name: str = "target_tsdf") -> LossResult:
    """Atlas' multi-scale L1 between log-transformed predicted and target TSDFs.

    The loss is the sum over scales of the mean ``|log_transform(pred) - log_transform(target)|`` over voxels
    where the target is known (``target_mask``, subsampled with :func:`coarse_target`) and the scale's
    prediction mask holds (Atlas excludes voxels a coarser scale already decided).

    Args:
        predictions: one (B, 1, X_s, Y_s, Z_s) TSDF per scale (any order), dims dividing the target's.
        target: (B, 1, X, Y, Z) target TSDF.
        target_mask: (B, 1, X, Y, Z) bool, target voxels that are known.
        prediction_masks: None, or per scale None / (B, 1, X_s, Y_s, Z_s) bool.
        name: key of the loss in the returned terms (per-scale terms are ``{name}_scale{s}``).
    """
    if len(predictions) == 0:
        raise ValueError("log_tsdf_l1 needs at least one prediction scale")
    masks = list(prediction_masks) if prediction_masks is not None else [None] * len(predictions)
    if len(masks) != len(predictions):
        raise ValueError(f"{len(masks)} prediction masks for {len(predictions)} scales")
    total = predictions[0].new_zeros(())
    terms = {}
    for scale, (prediction, mask) in enumerate(zip(predictions, masks)):
        coarse, known = coarse_target(target, target_mask, prediction.shape[2:])
        if mask is not None:
            known = known & mask
        loss, _ = masked_mean((log_transform(prediction) - log_transform(coarse)).abs(), known)
        terms[f"{name}_scale{scale}"] = loss.detach()
        total = total + loss
    terms[name] = total.detach()
    return total, terms


def pooled_scales(tsdf: torch.Tensor, count: int) -> list[torch.Tensor]:
    """``tsdf`` (B, 1, X, Y, Z) and ``count - 1`` coarser versions by 2x nearest subsampling, coarse to fine.

    Gives a single-scale network (S4R) the multi-scale Atlas loss: coarse terms weigh the large-scale layout.
    """
    scales = [tsdf]
    for _ in range(count - 1):
        scales.insert(0, scales[0][:, :, ::2, ::2, ::2])
    return scales


def far_from(known: torch.Tensor, margin_voxels: int) -> torch.Tensor:
    """(B, 1, X, Y, Z) bool: voxels farther than ``margin_voxels`` (Chebyshev distance) from every ``known`` voxel."""
    size = 2 * margin_voxels + 1
    near = F.max_pool3d(known.to(torch.float32), size, stride=1, padding=margin_voxels) > 0
    return ~near


def unknown_space_hinge(predicted: torch.Tensor, unknown: torch.Tensor, band: float) -> LossResult:
    """Mean ``relu(band - |tsdf|)`` over ``unknown`` voxels: no surface where nothing was ever observed.

    Without it, nothing supervises the voxels far from every observation (most of a chunk), and the network
    fills them with near-zero TSDF, i.e. spurious surfaces. The hinge is sign-agnostic: the inside of solids
    (TSDF -1) is as acceptable as free space (+1).

    Args:
        predicted: (B, 1, X, Y, Z) normalized TSDF.
        unknown: (B, 1, X, Y, Z) bool voxels to keep surface-free (e.g. :func:`far_from` the target's observed).
        band: normalized |TSDF| below which a prediction counts as (near) surface.
    """
    loss, count = masked_mean(torch.relu(band - predicted.abs()), unknown)
    return loss, {"unknown_space": loss.detach(), "unknown_voxels": count.detach().float()}


def soft_silhouette_iou(occupancy: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> LossResult:
    """SSR's soft IoU loss ``1 - sum(I^ I) / sum(I^ + I - I^ I)``, per image, averaged over images.

    Args:
        occupancy: (N, H, W) predicted soft occupancy ``I^`` in [0, 1] (e.g. (B * V, H, W)).
        target: (N, H, W) observed occupancy ``I`` in {0, 1} (valid depth whose surface lies in the chunk).
        mask: (N, H, W) bool, pixels whose target is known; others are left out of both sums.
    Images whose union is empty (nothing predicted, nothing observed) are skipped.
    """
    occupancy = torch.where(mask, occupancy, torch.zeros_like(occupancy))
    target = torch.where(mask, target.to(occupancy.dtype), torch.zeros_like(occupancy))
    intersection = (occupancy * target).flatten(1).sum(dim=1)
    union = (occupancy + target - occupancy * target).flatten(1).sum(dim=1)
    used = union > 0
    per_image = 1.0 - intersection / union.clamp(min=1e-12)
    loss, count = masked_mean(per_image, used)
    return loss, {"silhouette": loss.detach(), "silhouette_images": count.detach().float()}


def voxel_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> LossResult:
    """Voxel-wise cross-entropy against 3D labels (the supervised ablation).

    Args:
        logits: (B, K, X, Y, Z).
        labels: (B, X, Y, Z) int64, -1 (or outside ``[0, K)``) unlabeled.
        mask: optional (B,) bool, chunks that have labels.
    """
    num_classes = logits.shape[1]
    labeled = (labels >= 0) & (labels < num_classes)
    if mask is not None:
        labeled = labeled & mask.view(-1, *([1] * (labels.dim() - 1)))
    per_voxel = F.cross_entropy(logits, labels.clamp(0, num_classes - 1), reduction="none")
    loss, count = masked_mean(per_voxel, labeled)
    return loss, {"gt_semantic": loss.detach(), "gt_semantic_voxels": count.detach().float()}
