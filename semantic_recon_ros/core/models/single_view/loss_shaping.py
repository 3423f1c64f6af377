"""SemSVR's loss shaping: weights of the frustum's implicit values by what a camera can tell about each cell.

Most of a frustum is free space or solid interior far from any surface, where the TSDF saturates; a plain mean
of the errors lets a network predict those everywhere. The weights instead put most of the loss on the truncation
band of the surface the camera sees, then on surfaces hidden behind it, then on free space: the visible free
space, and occluded free space the more the closer it lies (in flood-fill steps through free space) to the
visible free space, i.e. where a camera moved a little would see around an edge. Cells no free path from the
camera reaches (inside solids, behind closed walls) get almost none. All grids are (B, D, Y, X), depth first
(:mod:`.frustum_grid`), the TSDF normalized to [-1, 1] (+ = free).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .config import LossShapingConfig

REGIONS = ("visible_surface", "visible_free", "occluded_surface", "occluded_free", "unreachable")


def _dilate(mask: torch.Tensor, cells: int) -> torch.Tensor:
    """(B, D, Y, X) bool mask grown by ``cells`` in every direction (26-neighbourhood, per step)."""
    size = 2 * cells + 1
    return F.max_pool3d(mask[:, None].float(), size, stride=1, padding=cells)[:, 0] > 0


def _grow_across_faces(mask: torch.Tensor) -> torch.Tensor:
    """(B, D, Y, X) bool mask grown by one cell across cell faces (6-neighbourhood)."""
    grown = mask.clone()
    for axis in (1, 2, 3):
        size = mask.shape[axis]
        grown.narrow(axis, 1, size - 1).logical_or_(mask.narrow(axis, 0, size - 1))
        grown.narrow(axis, 0, size - 1).logical_or_(mask.narrow(axis, 1, size - 1))
    return grown


def _free_space_steps(seeds: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
    """Flood fill from ``seeds`` through ``free`` cells across cell faces (6-neighbourhood, so a solid one cell
    thin stops it): (B, D, Y, X) float steps to reach each cell (0 at the seeds, inf where never reached)."""
    steps = torch.where(seeds, 0.0, float("inf")).to(torch.float32)
    reached, step = seeds, 0
    while True:
        step += 1
        grown = _grow_across_faces(reached) & free
        new = grown & ~reached
        if not new.any():
            return steps
        steps[new] = float(step)
        reached = grown | reached


def frustum_regions(tsdf: torch.Tensor, config: LossShapingConfig) -> dict[str, torch.Tensor]:
    """Split every frustum into the regions of :data:`REGIONS` (bool masks, together a partition of the cells)
    and give the flood-fill distance of the free space.

    Along each camera ray (a column ``(y, x)`` over depth) the first cell with ``tsdf <= 0`` is the ray's hit.
    The visible surface is the band (``|tsdf| < 1``) in front of the hit plus the solid band from the hit until the
    ray leaves it (``tsdf <= -1`` deep inside, or ``tsdf > 0`` out of the back of a thin solid); everything beyond
    is occluded. Free space (``tsdf > 0``) in front of the hits seeds a flood fill through free space: occluded
    free cells it reaches are ``occluded_free``, occluded band cells within ``surface_reach_cells`` of reached free
    space are ``occluded_surface``; the rest of the occluded cells is ``unreachable``.

    Args:
        tsdf: (B, D, Y, X) target TSDF in [-1, 1].
    Returns:
        the five region masks (B, D, Y, X) bool, and ``free_steps`` (B, D, Y, X) float: flood-fill steps from
        the visible free space (inf where not reached).
    """
    if tsdf.dim() != 4:
        raise ValueError(f"tsdf must be (B, D, Y, X), got {tuple(tsdf.shape)}")
    depth = tsdf.shape[1]
    solid = tsdf <= 0
    first_hit = torch.where(solid.any(dim=1), solid.to(torch.uint8).argmax(dim=1), depth)  # (B, Y, X)
    index = torch.arange(depth, device=tsdf.device).view(1, depth, 1, 1)
    behind = index >= first_hit[:, None]
    band = tsdf.abs() < 1
    free = tsdf > 0
    leaves_band = behind & ((tsdf <= -1) | free)
    occluded = torch.cumsum(leaves_band.to(torch.int32), dim=1) > 0
    visible_surface = band & ~occluded
    visible_free = ~behind & ~band
    steps = _free_space_steps(free & ~behind, free)
    reached = torch.isfinite(steps)
    occluded_surface = occluded & band & _dilate(reached, config.surface_reach_cells)
    occluded_free = occluded & reached & ~occluded_surface
    unreachable = occluded & ~occluded_surface & ~occluded_free
    return {"visible_surface": visible_surface, "visible_free": visible_free, "occluded_surface": occluded_surface,
            "occluded_free": occluded_free, "unreachable": unreachable, "free_steps": steps}


def loss_shaping_weights(tsdf: torch.Tensor, config: LossShapingConfig) -> torch.Tensor:
    """(B, D, Y, X) target TSDF -> (B, D, Y, X) float32 loss weight of every cell (see :func:`frustum_regions`).
    Occluded free space falls linearly from ``occluded_free_near`` one step from the visible free space to
    ``occluded_free_far`` at ``see_around_cells`` steps and beyond."""
    regions = frustum_regions(tsdf, config)
    closeness = (1.0 - (regions["free_steps"] - 1.0) / config.see_around_cells).clamp(0.0, 1.0)
    occluded_free = config.occluded_free_far + (config.occluded_free_near - config.occluded_free_far) * closeness
    weights = torch.full_like(tsdf, config.unreachable)
    weights = torch.where(regions["occluded_free"], occluded_free, weights)
    for name in ("visible_surface", "visible_free", "occluded_surface"):
        weights = torch.where(regions[name], getattr(config, name), weights)
    return weights


def shaped_losses(prediction: dict[str, torch.Tensor], tsdf: torch.Tensor, labels: torch.Tensor,
                  weights: torch.Tensor, config: LossShapingConfig) -> dict[str, torch.Tensor]:
    """The weighted losses of a predicted semantic TSDF.

    Args:
        prediction: ``tsdf`` (B, D, Y, X) in [-1, 1] and ``class_logits`` (B, K, D, Y, X).
        tsdf: (B, D, Y, X) target TSDF; labels: (B, D, Y, X) target classes (-1 = none);
        weights: (B, D, Y, X) cell weights (:func:`loss_shaping_weights`).
    Returns:
        ``loss/tsdf``: weighted mean absolute TSDF error; ``loss/class``: weighted mean cross-entropy over the
        labeled cells (0 when none is); ``loss``: ``loss/tsdf + class_weight * loss/class``.
    """
    if prediction["tsdf"].shape != tsdf.shape or labels.shape != tsdf.shape or weights.shape != tsdf.shape:
        raise ValueError(f"prediction {tuple(prediction['tsdf'].shape)}, target {tuple(tsdf.shape)}, labels "
                         f"{tuple(labels.shape)} and weights {tuple(weights.shape)} must all be (B, D, Y, X)")
    tsdf_loss = (weights * (prediction["tsdf"] - tsdf).abs()).sum() / weights.sum().clamp_min(1e-12)
    labeled_weights = weights * (labels >= 0)
    cross_entropy = F.cross_entropy(prediction["class_logits"], labels.clamp(min=0), reduction="none")
    class_loss = (labeled_weights * cross_entropy).sum() / labeled_weights.sum().clamp_min(1e-12)
    return {"loss": tsdf_loss + config.class_weight * class_loss, "loss/tsdf": tsdf_loss, "loss/class": class_loss}
