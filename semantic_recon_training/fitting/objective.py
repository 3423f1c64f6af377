"""The training objective of one batch: render the prediction into the chunk's views and sum the named losses.

Which pixels supervise what (per view, from the captured depth and the chunk's box of voxel centres):

* *surface* pixels: the captured surface point lies inside the chunk's box. Depth and color L1 compare
  rendered and captured values where the renderer also hit a surface. The semantic cross-entropy further
  keeps only rays whose captured surface point lies in the near-surface band of the prediction
  (``|predicted sdf| < near_surface_band``, 3 cm): there the rendered class belongs to the surface the
  label was seen on.
* *free* pixels: the ray crosses the chunk and its captured surface lies at least ``free_margin`` beyond it,
  so the ray's whole way through the chunk is empty.
* all other pixels (invalid depth, surface in front of the chunk, ray missing the chunk) are unknown.

The soft silhouette loss wants the soft occupancy of surface pixels to be 1 and of free pixels 0. The
soft occupancy of a ray is ``sigmoid(-min_t sdf(t) / silhouette_sharpness)`` over samples every
``silhouette_step_voxels`` along its way through the chunk (differentiable through the sampled TSDF). It is
soft near silhouettes: a ray passing ``d`` metres outside a surface has occupancy ``sigmoid(-d / sharpness)``,
so even a perfect prediction keeps a small loss from its outline (a few % at the default 5 mm), and far from
any predicted surface the sigmoid saturates: the loss moves outlines, the 3D losses create missing surfaces.
Virtual views (:mod:`..data.virtual_views`) are rendered, their RGB segmented by the 2D segmenter, and the
rendered semantics trained towards that segmentation where the render hit a surface.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from semantic_recon_ros.core.camera import PinholeCamera
from semantic_recon_ros.core.config.fields import check_ranges, parameter
from semantic_recon_ros.core.rendering import DenseGrid, RaycastConfig, image_rays, render, sample_grid
from semantic_recon_ros.core.rendering.rays import ray_box_interval
from semantic_recon_ros.core.segmentation import Segmenter, labels_from_probs

from ..data.chunk_dataset import view_cameras
from ..data.virtual_views import VirtualViewConfig, sample_virtual_views, virtual_camera
from .losses import (LossResult, LossWeights, color_l1, depth_l1, far_from, log_tsdf_l1, observed_tsdf_l1,
                     pooled_scales, semantic_cross_entropy, soft_silhouette_iou, unknown_space_hinge,
                     voxel_cross_entropy)

RENDERED_LOSSES = ("depth", "color", "semantic", "silhouette")


@dataclass
class ObjectiveConfig:
    """Masks and sampling of the rendered losses (see the module docstring)."""

    near_surface_band: float = parameter(
        0.03, "Semantic rays count when the predicted |sdf| at their captured surface point is below this (m).",
        0.0, None)
    free_margin: float = parameter(
        0.03, "A ray is free in the chunk when its captured surface lies at least this far (m) beyond the chunk.",
        0.0, None)
    atlas_scales: int = parameter(
        3, "Scales of the log-TSDF L1 for single-scale predictions (full, 1/2, 1/4, ...).", 1, 5)
    silhouette_pixel_stride: int = parameter(4, "Soft occupancy is computed on every n-th pixel.", 1, 64)
    silhouette_step_voxels: float = parameter(1.0, "Sample spacing of the soft occupancy, in voxels.", 0.1, 8.0)
    silhouette_sharpness: float = parameter(
        0.005, "Soft occupancy temperature in metres: sigmoid(-min sdf / this).", 1e-4, None)
    unknown_space_margin: int = parameter(
        3, "The unknown-space hinge acts on voxels farther than this (voxels) from any target-observed voxel.",
        0, 32)
    unknown_space_band: float = parameter(
        0.5, "The unknown-space hinge pushes |predicted TSDF| (normalized) above this.", 0.0, 1.0)
    semantic_class_balance: float = parameter(
        0.0, "Exponent a of the per-class weights (pixel fraction)^-a of the 2D semantic losses (0 = plain mean).",
        0.0, 1.0)
    virtual_min_probability: float = parameter(
        0.5, "Segmentations of virtual views label a pixel when the best class reaches this probability.", 0.0, 1.0)

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass
class ViewMasks:
    """Per-pixel supervision masks of the captured views of one chunk, each (V, H, W).

    Attributes:
        surface: bool, the captured surface point lies in the chunk's box.
        free: bool, the ray's way through the chunk is empty (captured surface beyond it).
        points: (V, H, W, 3) float captured surface points in the world frame (zero where depth is invalid).
        t_enter, t_exit: float, ray parameter (z-depth) interval inside the chunk's box.
    """

    surface: torch.Tensor
    free: torch.Tensor
    points: torch.Tensor
    t_enter: torch.Tensor
    t_exit: torch.Tensor


def chunk_box(origin: torch.Tensor, dims: tuple[int, int, int], voxel_size: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(3,) world corners of the box of voxel centres of a chunk with voxel (0, 0, 0) at ``origin``."""
    extent = (torch.tensor(dims, dtype=origin.dtype, device=origin.device) - 1) * voxel_size
    return origin, origin + extent


def view_masks(origin: torch.Tensor, dims: tuple[int, int, int], voxel_size: float, cameras: list[PinholeCamera],
               T_world_cam: torch.Tensor, depth: torch.Tensor, free_margin: float) -> ViewMasks:
    """Which pixels of the captured views see the chunk's surface, and which see through it.

    Args:
        origin: (3,) chunk origin; dims, voxel_size: the chunk grid.
        cameras: V cameras of the (H, W) views.
        T_world_cam: (V, 4, 4) poses; depth: (V, H, W) captured z-depth, 0 invalid.
        free_margin: metres beyond the chunk a captured surface must lie for the ray to count as free.
    """
    device, dtype = depth.device, depth.dtype
    rays = image_rays(cameras, T_world_cam[None], device, dtype)
    origins, directions = rays.origins[0], rays.directions[0]  # (V, H, W, 3)
    lower, upper = chunk_box(origin.to(device, dtype), dims, voxel_size)
    t_enter, t_exit = ray_box_interval(origins.reshape(-1, 3), directions.reshape(-1, 3), lower, upper)
    t_enter, t_exit = t_enter.view(depth.shape), t_exit.view(depth.shape)
    valid = torch.isfinite(depth) & (depth > 0)
    points = origins + directions * torch.where(valid, depth, torch.zeros_like(depth))[..., None]
    surface = valid & ((points >= lower) & (points <= upper)).all(dim=-1)
    crosses = (t_exit >= t_enter) & (t_exit > 0)
    free = valid & crosses & (depth > t_exit + free_margin)
    return ViewMasks(surface, free, points, t_enter, t_exit)


def _scalar(value: torch.Tensor | float, name: str) -> float:
    """A per-batch constant (voxel size, truncation) that the collate turned into a (B,) tensor."""
    values = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
    if values.numel() == 0 or not bool(torch.allclose(values, values[0])):
        raise ValueError(f"all chunks of a batch must share {name}, got {values.tolist()}")
    return float(values[0])


class TrainingObjective:
    """Computes the weighted sum of :class:`~.losses.LossWeights`' losses for a batch.

    Args:
        weights: loss weights by name (0 switches a loss off).
        config: masks and sampling of the rendered losses.
        raycast: renderer settings; its ``semantic_input`` is replaced: the objective renders the interpolated
            network logits ("probabilities" mode returns the interpolation as given) and applies a log-softmax.
        virtual: virtual view sampling (used when ``weights.virtual_semantic > 0``).
        segmenter: 2D segmenter for the virtual views (required when ``weights.virtual_semantic > 0``).
    """

    def __init__(self, weights: LossWeights, config: ObjectiveConfig | None = None,
                 raycast: RaycastConfig | None = None, virtual: VirtualViewConfig | None = None,
                 segmenter: Segmenter | None = None) -> None:
        self.weights = weights
        self.config = config or ObjectiveConfig()
        self.raycast = dataclasses.replace(raycast or RaycastConfig(), semantic_input="probabilities")
        self.virtual = virtual or VirtualViewConfig()
        if weights.virtual_semantic > 0 and segmenter is None:
            raise ValueError("weights.virtual_semantic > 0 needs a segmenter for the virtual views")
        self.segmenter = segmenter

    def __call__(self, prediction: dict, batch: dict, generator: torch.Generator | None = None) -> LossResult:
        """Total loss and named terms.

        Args:
            prediction: network output: ``tsdf`` (B, 1, X, Y, Z), ``color`` (B, 3, X, Y, Z) in [0, 1] (needed
                by the color and virtual losses), ``semantic_logits`` (B, K, X, Y, Z); optionally Atlas'
                ``tsdf_scales`` and ``mask_scales`` (coarse to fine).
            batch: a collated :class:`~..data.chunk_dataset.ChunkDataset` batch (any device).
            generator: CPU random generator of the virtual views (default: a fresh unseeded one).
        Returns:
            ``(total, terms)``; ``terms`` holds every computed loss by name, its diagnostics and ``total``.
        """
        active = self.weights.active()
        if "color" in active and "color" not in prediction:
            raise ValueError("weights.color > 0 but the prediction has no color (color-blind network?)")
        if "virtual_semantic" in active:
            if "color" not in prediction:
                raise ValueError("weights.virtual_semantic > 0 needs predicted color to segment the virtual views")
            classes = prediction["semantic_logits"].shape[1]
            if len(self.segmenter.class_names) != classes:
                raise ValueError(f"the segmenter has {len(self.segmenter.class_names)} classes, the prediction "
                                 f"{classes}")
        tsdf = prediction["tsdf"]
        device = tsdf.device
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        voxel_size = _scalar(batch["voxel_size"], "voxel_size")
        truncation = _scalar(batch["truncation"], "truncation")
        results: dict[str, LossResult] = {}

        if any(name in active for name in RENDERED_LOSSES):
            results.update(self._rendered_losses(prediction, batch, voxel_size, truncation, active))
        if "virtual_semantic" in active:
            results["virtual_semantic"] = self._virtual_semantic(prediction, batch, voxel_size, truncation,
                                                                 generator or torch.Generator())
        if "observed_tsdf" in active:
            results["observed_tsdf"] = observed_tsdf_l1(tsdf, batch["tsdf"], batch["observed"])
        if "unknown_space" in active:
            known = batch["target_observed"] | batch["observed"]
            results["unknown_space"] = unknown_space_hinge(tsdf, far_from(known, self.config.unknown_space_margin),
                                                           self.config.unknown_space_band)
        if "target_tsdf" in active or "gt_tsdf" in active:
            scales, masks = self._tsdf_scales(prediction)
            targets = {"target_tsdf": (batch["target_tsdf"], batch["target_observed"], batch["has_target"]),
                       "gt_tsdf": (batch["gt_tsdf"], torch.ones_like(batch["gt_tsdf"], dtype=torch.bool),
                                   batch["has_gt"])}
            for name, (target, known, chunk_has) in targets.items():
                if name in active:
                    known = known & chunk_has.view(-1, 1, 1, 1, 1)
                    results[name] = log_tsdf_l1(scales, target, known, masks, name=name)
        if "gt_semantic" in active:
            results["gt_semantic"] = voxel_cross_entropy(prediction["semantic_logits"], batch["gt_labels"],
                                                         batch["has_gt"])

        total = tsdf.new_zeros(())
        terms: dict[str, torch.Tensor] = {}
        for name, (loss, loss_terms) in results.items():
            total = total + active[name] * loss
            terms.update(loss_terms)
        terms["total"] = total.detach()
        return total, terms

    # ------------------------------------------------------------------ pieces
    def _grid(self, prediction: dict, b: int, origin: torch.Tensor, voxel_size: float, truncation: float,
              color: bool, semantic: bool) -> DenseGrid:
        tsdf = prediction["tsdf"]
        return DenseGrid(tsdf[b:b + 1], origin[b:b + 1].to(tsdf.dtype), voxel_size, truncation,
                         prediction["color"][b:b + 1] if color else None,
                         prediction["semantic_logits"][b:b + 1] if semantic else None)

    def _rendered_losses(self, prediction: dict, batch: dict, voxel_size: float, truncation: float,
                         active: dict[str, float]) -> dict[str, LossResult]:
        cfg = self.config
        tsdf = prediction["tsdf"]
        dims = tuple(int(n) for n in tsdf.shape[2:])
        need_render = any(name in active for name in ("depth", "color", "semantic"))
        height, width = batch["view_depth"].shape[-2:]
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("depth", "color", "semantic", "valid", "surface",
                                                                  "near", "occupancy", "target", "known")}
        for b in range(tsdf.shape[0]):
            cameras = view_cameras(batch["view_intrinsics"][b], height, width)
            poses = batch["view_T_world_cam"][b]
            masks = view_masks(batch["origin"][b], dims, voxel_size, cameras, poses, batch["view_depth"][b],
                               cfg.free_margin)
            parts["surface"].append(masks.surface)
            if need_render:
                grid = self._grid(prediction, b, batch["origin"], voxel_size, truncation,
                                  color="color" in active, semantic="semantic" in active)
                out = render(grid, cameras, poses[None], self.raycast)
                parts["depth"].append(out["depth"][0])
                parts["valid"].append(out["valid"][0])
                if "color" in active:
                    parts["color"].append(out["color"][0])
                if "semantic" in active:
                    parts["semantic"].append(out["semantic"][0])
                    parts["near"].append(self._near_surface(tsdf[b:b + 1], batch["origin"][b], voxel_size,
                                                            truncation, masks))
            if "silhouette" in active:
                occupancy, target, known = self._soft_silhouette(tsdf[b:b + 1], batch["origin"][b], voxel_size,
                                                                 truncation, cameras, poses, masks)
                parts["occupancy"].append(occupancy)
                parts["target"].append(target)
                parts["known"].append(known)
        stacked = {k: torch.stack(v) for k, v in parts.items() if v}
        results = {}
        if need_render:
            hit = stacked["valid"] & stacked["surface"]
            if "depth" in active:
                results["depth"] = depth_l1(stacked["depth"], batch["view_depth"], hit)
            if "color" in active:
                results["color"] = color_l1(stacked["color"], batch["view_color"], hit)
            if "semantic" in active:
                results["semantic"] = semantic_cross_entropy(stacked["semantic"], batch["view_labels"],
                                                             hit & stacked["near"],
                                                             class_balance=cfg.semantic_class_balance)
        if "silhouette" in active:
            results["silhouette"] = soft_silhouette_iou(stacked["occupancy"].flatten(0, 1),
                                                        stacked["target"].flatten(0, 1),
                                                        stacked["known"].flatten(0, 1))
        return results

    @staticmethod
    def _voxel_coords(points: torch.Tensor, origin: torch.Tensor, voxel_size: float) -> torch.Tensor:
        return (points - origin.to(points.dtype)) / voxel_size

    def _near_surface(self, tsdf: torch.Tensor, origin: torch.Tensor, voxel_size: float, truncation: float,
                      masks: ViewMasks) -> torch.Tensor:
        """(V, H, W) bool: captured surface point in the chunk with predicted |sdf| < near_surface_band there."""
        points = masks.points[masks.surface]
        coords = self._voxel_coords(points, origin, voxel_size).to(tsdf.dtype)
        with torch.no_grad():
            values = sample_grid(tsdf.detach(), torch.zeros(len(coords), dtype=torch.int64, device=tsdf.device),
                                 coords)[:, 0]
        near = torch.zeros_like(masks.surface)
        near[masks.surface] = values.abs() * truncation < self.config.near_surface_band
        return near

    def _soft_silhouette(self, tsdf: torch.Tensor, origin: torch.Tensor, voxel_size: float, truncation: float,
                         cameras: list[PinholeCamera], poses: torch.Tensor, masks: ViewMasks
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Soft occupancy, target and known mask of every ``silhouette_pixel_stride``-th pixel, each (V, h, w)."""
        cfg = self.config
        s = cfg.silhouette_pixel_stride
        pick = (slice(None), slice(None, None, s), slice(None, None, s))
        surface, free = masks.surface[pick], masks.free[pick]
        t_enter, t_exit = masks.t_enter[pick].clamp(min=0), masks.t_exit[pick]
        known = surface | free
        occupancy = torch.zeros(surface.shape, dtype=tsdf.dtype, device=tsdf.device)
        rays = image_rays(cameras, poses[None], tsdf.device, tsdf.dtype)
        origins = rays.origins[0][pick][known]
        directions = rays.directions[0][pick][known]
        start, end = t_enter[known].to(tsdf.dtype), t_exit[known].to(tsdf.dtype)
        if origins.shape[0]:
            step = cfg.silhouette_step_voxels * voxel_size / directions.norm(dim=1)
            count = int(torch.ceil(((end - start) / step).max()).item()) + 1
            t = torch.minimum(start[:, None] + step[:, None] * torch.arange(count, device=tsdf.device,
                                                                              dtype=tsdf.dtype), end[:, None])
            points = origins[:, None, :] + t[..., None] * directions[:, None, :]
            coords = self._voxel_coords(points.reshape(-1, 3), origin, voxel_size).to(tsdf.dtype)
            values = sample_grid(tsdf, torch.zeros(len(coords), dtype=torch.int64, device=tsdf.device), coords)
            closest = values.view(-1, count).amin(dim=1) * truncation
            occupancy[known] = torch.sigmoid(-closest / cfg.silhouette_sharpness)
        return occupancy, surface.to(tsdf.dtype), known

    def _tsdf_scales(self, prediction: dict) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        if "tsdf_scales" in prediction:
            scales = list(prediction["tsdf_scales"])
            return scales, list(prediction.get("mask_scales", [None] * len(scales)))
        scales = pooled_scales(prediction["tsdf"], self.config.atlas_scales)
        return scales, [None] * len(scales)

    def _virtual_semantic(self, prediction: dict, batch: dict, voxel_size: float, truncation: float,
                          generator: torch.Generator) -> LossResult:
        logits, labels, masks = [], [], []
        height, width = batch["view_depth"].shape[-2:]
        for b in range(prediction["tsdf"].shape[0]):
            poses = sample_virtual_views(batch["tsdf"][b, 0], batch["observed"][b, 0], batch["origin"][b], voxel_size,
                                         truncation, batch["view_T_world_cam"][b], self.virtual, generator)
            if poses.shape[0] == 0:
                continue
            camera = virtual_camera(view_cameras(batch["view_intrinsics"][b, :1], height, width)[0], self.virtual)
            grid = self._grid(prediction, b, batch["origin"], voxel_size, truncation, color=True, semantic=True)
            out = render(grid, camera, poses[None].to(grid.device), self.raycast)
            rgb = (out["color"][0].detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
            for v in range(poses.shape[0]):
                segmentation = labels_from_probs(self.segmenter.predict(np.ascontiguousarray(rgb[v])),
                                                 self.config.virtual_min_probability)
                labels.append(torch.from_numpy(segmentation).to(grid.device))
            logits.append(out["semantic"][0])
            masks.append(out["valid"][0])
        if not logits:
            zero = prediction["semantic_logits"].sum() * 0.0
            return zero, {"virtual_semantic": zero.detach(), "virtual_semantic_pixels": zero.detach()}
        return semantic_cross_entropy(torch.cat(logits), torch.stack(labels), torch.cat(masks), name="virtual_semantic",
                                      class_balance=self.config.semantic_class_balance)
