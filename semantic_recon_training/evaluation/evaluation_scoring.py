"""Scoring one reconstruction against a scene's targets, and summing scores over scenes.

* Voxels (on the scene's :class:`~.reconstructions.EvaluationBox`): completion IoU / recall / precision of
  occupied voxels (:func:`.metrics.occupied`) where the target is known; Atlas' TSDF L1 (metres) over known
  voxels of the target's truncation band; semantic mIoU / mAcc partial-to-partial (observed input surface) and
  partial-to-full (target surface).
* Held-out views: the method's mesh rendered into each view (:class:`~.mesh_views.MeshViewRenderer`),
  Atlas' depth metrics against the view's depth, and mIoU / mAcc of the rendered labels against the view's
  2D labels (synthetic ground truth, or the segmenter on real data: semantic consistency).
* Mesh: Atlas' 3D metrics between points sampled on the method's mesh and on the target surface; for a mesh
  scored without voxels (:func:`score_mesh`, RGB-only evaluation), Atlas' semantic transfer too: every target
  point takes the label of the method's nearest vertex, scored against the target point's label (``full``).

Voxel and pixel counts are summed over scenes before dividing; depth metrics are averaged over all views and
mesh metrics over scenes (Atlas' conventions).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from semantic_recon_ros.core.camera import PinholeCamera
from semantic_recon_ros.core.mesh import SemanticMesh

from .mesh_views import MeshViewRenderer
from .metrics import OccupancyCounts, SemanticConfusion, completion_counts, depth_metrics, mesh_metrics, \
    sample_surface_points, transfer_labels
from .reconstructions import Reconstruction

DEPTH_KEYS = ("AbsRel", "AbsDiff", "SqRel", "RMSE", "delta<1.25", "delta<1.25^2", "delta<1.25^3", "complete")
MESH_KEYS = ("Acc", "Comp", "Prec", "Recall", "F-score")
MAX_HISTOGRAM_ERRORS = 100_000  # absolute depth errors kept per scene and method for the histogram
SAMPLE_SEED = 0


@dataclass
class VoxelTarget:
    """The target of the voxel metrics on the evaluation box (all (X, Y, Z)).

    Attributes:
        tsdf: float32 normalized target TSDF.
        known: bool, voxels where completion and L1 are scored.
        labels: int64 target classes (-1 unlabeled), None without 3D labels.
        partial: bool, the observed input surface (partial-to-partial semantics); None without labels.
        surface: bool, the target surface (partial-to-full semantics); None without labels.
    """

    tsdf: torch.Tensor
    known: torch.Tensor
    labels: torch.Tensor | None = None
    partial: torch.Tensor | None = None
    surface: torch.Tensor | None = None


@dataclass
class ViewTarget:
    """Held-out views: one camera, V poses (camera-to-world), depth (H, W) float32 metres (0 invalid) and
    optional labels (H, W) int64 (-1 unlabeled) per view."""

    camera: PinholeCamera
    poses: list[np.ndarray]
    depth: list[np.ndarray]
    labels: list[np.ndarray] | None = None


@dataclass
class MeshTarget:
    """The target of a mesh scored on its own (:func:`score_mesh`).

    Attributes:
        points: (P, 3) float64 points sampled on the target surface, world frame.
        labels: (P,) int64 class of every point (-1 unlabeled), None without 3D labels.
        views: the held-out views.
    """

    points: np.ndarray
    labels: np.ndarray | None
    views: ViewTarget

    def __post_init__(self) -> None:
        if self.labels is not None and self.labels.shape != (len(self.points),):
            raise ValueError(f"{self.labels.shape} target labels for {len(self.points)} target points")


@dataclass
class MethodScores:
    """Summable scores of one method over one or more scenes."""

    num_classes: int
    has_semantics: bool
    occupancy: OccupancyCounts = field(default_factory=OccupancyCounts)
    l1_sum: float = 0.0  # metres
    l1_count: int = 0
    partial: SemanticConfusion | None = None
    full: SemanticConfusion | None = None
    views: SemanticConfusion | None = None
    depth: list[dict[str, float]] = field(default_factory=list)  # one per view
    mesh: list[dict[str, float]] = field(default_factory=list)  # one per scene
    depth_errors: list[np.ndarray] = field(default_factory=list)  # |rendered - target| depth samples, metres

    def __post_init__(self) -> None:
        for name in ("partial", "full", "views"):
            if getattr(self, name) is None:
                setattr(self, name, SemanticConfusion(self.num_classes))

    def merge(self, other: "MethodScores") -> None:
        """Add the scores of another scene."""
        self.occupancy = self.occupancy + other.occupancy
        self.l1_sum += other.l1_sum
        self.l1_count += other.l1_count
        for name in ("partial", "full", "views"):
            getattr(self, name).merge(getattr(other, name))
        self.depth += other.depth
        self.mesh += other.mesh
        self.depth_errors += other.depth_errors

    def summary(self) -> dict[str, float]:
        """Metric name -> value (NaN where not measurable, e.g. semantics of a geometry-only method)."""
        nan = float("nan")
        out = {"IoU": self.occupancy.iou, "Recall": self.occupancy.recall, "Precision": self.occupancy.precision,
               "L1": self.l1_sum / self.l1_count if self.l1_count else nan}
        for prefix, confusion in (("p2p", self.partial), ("p2f", self.full), ("2D", self.views)):
            scored = self.has_semantics and bool(confusion.support().sum() > 0)
            out[f"mIoU {prefix}"] = confusion.miou if scored else nan
            out[f"mAcc {prefix}"] = confusion.macc if scored else nan
        for key in DEPTH_KEYS:
            values = [d[key] for d in self.depth if not np.isnan(d[key])]
            out[key] = float(np.mean(values)) if values else nan
        for key in MESH_KEYS:
            values = [m[key] for m in self.mesh if not np.isnan(m[key])]
            out[f"3D {key}"] = float(np.mean(values)) if values else nan
        return out


def score_voxels(scores: MethodScores, reconstruction: Reconstruction, target: VoxelTarget, truncation: float,
                 voxel_size: float, occupancy: str) -> None:
    """Add the voxel metrics of ``reconstruction`` against ``target`` to ``scores``."""
    if reconstruction.tsdf.shape != target.tsdf.shape:
        raise ValueError(f"{reconstruction.name}: TSDF {tuple(reconstruction.tsdf.shape)} does not match the "
                         f"target box {tuple(target.tsdf.shape)}")
    scores.occupancy = scores.occupancy + completion_counts(reconstruction.tsdf, target.tsdf, truncation, voxel_size,
                                                            mask=target.known, definition=occupancy)
    band = target.known & (target.tsdf.abs() < 1)
    scores.l1_sum += float((reconstruction.tsdf[band] - target.tsdf[band]).abs().double().sum()) * truncation
    scores.l1_count += int(band.sum())
    if reconstruction.labels is not None and target.labels is not None:
        scores.partial.update(reconstruction.labels, target.labels, mask=target.partial)
        scores.full.update(reconstruction.labels, target.labels, mask=target.surface)


def score_views(scores: MethodScores, mesh: SemanticMesh, views: ViewTarget, rng: np.random.Generator) -> None:
    """Render a method's ``mesh`` (world frame) into the held-out views; add depth metrics and (when
    ``scores.has_semantics`` and the views have labels) the rendered-vs-view label confusion to ``scores``."""
    renderer = MeshViewRenderer(mesh)
    errors = []
    for index, (pose, target_depth) in enumerate(zip(views.poses, views.depth)):
        depth, labels = renderer.render(views.camera, pose)
        scores.depth.append(depth_metrics(depth, target_depth))
        both = (depth > 0) & (target_depth > 0) & np.isfinite(target_depth)
        errors.append(np.abs(depth[both] - target_depth[both]))
        if scores.has_semantics and views.labels is not None:
            scores.views.update(torch.from_numpy(labels), torch.from_numpy(views.labels[index]))
    errors = np.concatenate(errors) if errors else np.zeros(0)
    if len(errors) > MAX_HISTOGRAM_ERRORS:
        errors = rng.choice(errors, MAX_HISTOGRAM_ERRORS, replace=False)
    scores.depth_errors.append(errors.astype(np.float32))


def mesh_points(mesh, spacing: float, max_points: int) -> np.ndarray:
    """(P, 3) points spread over a :class:`SemanticMesh` (fixed seed)."""
    return sample_surface_points(mesh.vertices, mesh.triangles, spacing, seed=SAMPLE_SEED, max_points=max_points)


def score_reconstruction(reconstruction: Reconstruction, voxels: VoxelTarget, views: ViewTarget,
                         target_points: np.ndarray, num_classes: int, truncation: float, voxel_size: float,
                         occupancy: str = "surface", sample_spacing: float = 0.02, max_samples: int = 1_000_000,
                         fscore_threshold: float = 0.05) -> MethodScores:
    """All scores of one method on one scene (see the module docstring)."""
    scores = MethodScores(num_classes, reconstruction.labels is not None)
    score_voxels(scores, reconstruction, voxels, truncation, voxel_size, occupancy)
    score_views(scores, reconstruction.mesh, views, np.random.default_rng(SAMPLE_SEED))
    points = mesh_points(reconstruction.mesh, sample_spacing, max_samples)
    scores.mesh.append(mesh_metrics(points, target_points, fscore_threshold))
    return scores


def score_mesh(mesh: SemanticMesh, labeled: bool, target: MeshTarget, num_classes: int, sample_spacing: float = 0.02,
               max_samples: int = 1_000_000, fscore_threshold: float = 0.05) -> MethodScores:
    """The scores of a method known only by its ``mesh`` (world frame): 2D depth (and labels) in the held-out
    views, Atlas' 3D metrics and, when ``labeled`` and the target has labels, the semantic transfer onto the target
    points (``full``; see the module docstring)."""
    scores = MethodScores(num_classes, labeled)
    score_views(scores, mesh, target.views, np.random.default_rng(SAMPLE_SEED))
    scores.mesh.append(mesh_metrics(mesh_points(mesh, sample_spacing, max_samples), target.points, fscore_threshold))
    if labeled and target.labels is not None:
        transferred = transfer_labels(target.points, mesh.vertices, mesh.labels)
        scores.full.update(torch.from_numpy(transferred), torch.from_numpy(target.labels))
    return scores
