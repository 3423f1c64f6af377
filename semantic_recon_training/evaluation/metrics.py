"""Evaluation metrics of the papers: voxel completion and semantics, 2D depth (Atlas), 3D mesh and mesh labels
(Atlas).

Voxel occupancy (S4R follows SG-NN here): a voxel is *occupied* when it lies on the surface shell,
``|sdf| < 1 voxel`` (``definition="surface"``), evaluated only where the target is known. The alternative
``"negative_band"`` counts the voxels just behind the surface, ``-truncation < sdf <= 0`` (inside the
truncation band of a solid), for comparisons with methods that report interior occupancy.

Synthetic ground truth is the exact SDF of a union of boxes, which also has surfaces no camera can see
(outer faces of walls, floor and ceiling; planes where two boxes touch). :func:`visible_surface` keeps the
surface voxels that border free space inside the room; the others are left out of the scores.

Counts are returned as :class:`OccupancyCounts` / :class:`SemanticConfusion` so that evaluation can sum
over chunks and scenes before dividing (micro-averaging over all voxels of a scene, as in the papers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

OCCUPANCY_DEFINITIONS = ("surface", "negative_band")
ATLAS_MAX_DEPTH = 10.0  # target depths beyond this are ignored by Atlas' depth metrics


def occupied(tsdf: torch.Tensor, truncation: float, voxel_size: float, definition: str = "surface") -> torch.Tensor:
    """Occupancy of normalized TSDF voxels (see the module docstring); same shape, bool."""
    sdf = tsdf * truncation
    if definition == "surface":
        return sdf.abs() < voxel_size
    if definition == "negative_band":
        return (sdf <= 0) & (sdf > -truncation)
    raise ValueError(f"unknown occupancy definition {definition!r}; known: {', '.join(OCCUPANCY_DEFINITIONS)}")


@dataclass
class OccupancyCounts:
    """True positives, false positives and false negatives of occupied voxels."""

    true_positive: int = 0
    false_positive: int = 0
    false_negative: int = 0

    def __add__(self, other: "OccupancyCounts") -> "OccupancyCounts":
        return OccupancyCounts(self.true_positive + other.true_positive, self.false_positive + other.false_positive,
                               self.false_negative + other.false_negative)

    @property
    def iou(self) -> float:
        """|P and T| / |P or T| (NaN when both are empty)."""
        union = self.true_positive + self.false_positive + self.false_negative
        return self.true_positive / union if union else float("nan")

    @property
    def recall(self) -> float:
        """|P and T| / |T| (NaN when the target has no occupied voxel)."""
        target = self.true_positive + self.false_negative
        return self.true_positive / target if target else float("nan")

    @property
    def precision(self) -> float:
        """|P and T| / |P| (NaN when nothing is predicted occupied)."""
        predicted = self.true_positive + self.false_positive
        return self.true_positive / predicted if predicted else float("nan")


def visible_surface(tsdf: torch.Tensor, free_region: torch.Tensor, truncation: float,
                    voxel_size: float) -> torch.Tensor:
    """Surface voxels (``|sdf| < voxel_size``) of a dense (X, Y, Z) normalized TSDF that have a free voxel
    (``sdf > 0`` and in ``free_region``, bool (X, Y, Z)) among their 26 neighbours or are one.

    Every voxel of the one-voxel shell has such a neighbour on the side it is seen from: the neighbour best
    aligned with the surface normal lies at least one voxel further along it. Surfaces that border only solid
    (touching boxes) or only space outside ``free_region`` (the outside of a room's walls) are not visible.
    """
    free = ((tsdf > 0) & free_region.bool()).float()[None, None]
    near_free = torch.nn.functional.max_pool3d(free, kernel_size=3, stride=1, padding=1)[0, 0] > 0
    return occupied(tsdf, truncation, voxel_size) & near_free


def completion_counts(predicted: torch.Tensor, target: torch.Tensor, truncation: float, voxel_size: float,
                      mask: torch.Tensor | None = None, definition: str = "surface") -> OccupancyCounts:
    """Occupancy agreement of a predicted and a target TSDF (same shape, normalized).

    Args:
        mask: bool, voxels where the target is known (default: all).
    """
    p = occupied(predicted, truncation, voxel_size, definition)
    t = occupied(target, truncation, voxel_size, definition)
    if mask is not None:
        p, t = p & mask, t & mask
    return OccupancyCounts(int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum()))


class SemanticConfusion:
    """Accumulated K x K confusion matrix (rows: ground truth, columns: prediction) of labeled voxels."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = int(num_classes)
        self.matrix = torch.zeros((self.num_classes, self.num_classes), dtype=torch.int64)
        self.missed = torch.zeros(self.num_classes, dtype=torch.int64)  # target voxels with an invalid prediction

    def update(self, predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Add voxels (any common shape) whose target label is in ``[0, K)`` (and ``mask`` holds).

        ``predicted`` ids outside ``[0, K)`` (e.g. -1 for "no prediction") count as wrong for the target class.
        """
        K = self.num_classes
        keep = (target >= 0) & (target < K)
        if mask is not None:
            keep = keep & mask
        t, p = target[keep].long().cpu(), predicted[keep].long().cpu()
        wrong = (p < 0) | (p >= K)
        # an invalid prediction is a miss of the target class (a false negative, no false positive)
        self.matrix += torch.bincount(t[~wrong] * K + p[~wrong], minlength=K * K).view(K, K)
        self.missed += torch.bincount(t[wrong], minlength=K)

    def merge(self, other: "SemanticConfusion") -> None:
        """Add the counts of ``other`` (same number of classes)."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge a {other.num_classes}-class confusion into a {self.num_classes}-class one")
        self.matrix += other.matrix
        self.missed += other.missed

    def support(self) -> torch.Tensor:
        """(K,) target voxels per class."""
        return self.matrix.sum(dim=1) + self.missed

    def per_class_iou(self) -> torch.Tensor:
        """(K,) float64 TP / (TP + FP + FN); NaN for classes absent from the target."""
        tp = self.matrix.diagonal().double()
        fp = self.matrix.sum(dim=0).double() - tp
        fn = self.support().double() - tp
        iou = tp / (tp + fp + fn).clamp(min=1)
        return torch.where(self.support() > 0, iou, torch.full_like(iou, float("nan")))

    def per_class_accuracy(self) -> torch.Tensor:
        """(K,) float64 TP / target voxels of the class; NaN for classes absent from the target."""
        tp = self.matrix.diagonal().double()
        support = self.support()
        accuracy = tp / support.clamp(min=1).double()
        return torch.where(support > 0, accuracy, torch.full_like(accuracy, float("nan")))

    @property
    def miou(self) -> float:
        """Mean IoU over the classes present in the target (NaN when none is)."""
        return self._mean_present(self.per_class_iou())

    @property
    def macc(self) -> float:
        """Mean class accuracy over the classes present in the target (NaN when none is)."""
        return self._mean_present(self.per_class_accuracy())

    def _mean_present(self, per_class: torch.Tensor) -> float:
        present = self.support() > 0
        return float(per_class[present].mean()) if bool(present.any()) else float("nan")


def semantic_masks(input_tsdf: torch.Tensor, input_observed: torch.Tensor, gt_tsdf: torch.Tensor,
                   truncation: float, voxel_size: float) -> dict[str, torch.Tensor]:
    """Voxels on which semantics are scored (all same shape, bool).

    - ``partial``: partial-to-partial, the observed surface shell of the incomplete input (what fusion of
      2D labels can label at all).
    - ``full``: partial-to-full, the complete ground-truth surface shell (completed semantics).
    """
    return {"partial": input_observed.bool() & occupied(input_tsdf, truncation, voxel_size),
            "full": occupied(gt_tsdf, truncation, voxel_size)}


def depth_metrics(predicted: np.ndarray, target: np.ndarray, max_depth: float = ATLAS_MAX_DEPTH) -> dict[str, float]:
    """Atlas' 2D depth metrics of one image.

    Pixels are scored where the prediction is > 0 and ``0 < target < max_depth``. ``AbsRel`` = mean |p - t| / t,
    ``AbsDiff`` = mean |p - t|, ``SqRel`` = mean (p - t)^2 / t, ``RMSE`` = sqrt(mean (p - t)^2), ``LogRMSE`` =
    sqrt(mean (log p - log t)^2), ``delta<1.25^i`` = fraction with max(p / t, t / p) < 1.25^i (i = 1, 2, 3),
    ``complete`` = fraction of ALL pixels with a prediction (Atlas' definition). Metrics are NaN when no
    pixel is scored.
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if predicted.shape != target.shape:
        raise ValueError(f"predicted depth {predicted.shape} and target {target.shape} differ in shape")
    has_prediction = np.isfinite(predicted) & (predicted > 0)
    scored = has_prediction & np.isfinite(target) & (target > 0) & (target < max_depth)
    p, t = predicted[scored], target[scored]
    out = {"complete": float(has_prediction.mean()) if predicted.size else float("nan")}
    if p.size == 0:
        nan = float("nan")
        return out | {k: nan for k in ("AbsRel", "AbsDiff", "SqRel", "RMSE", "LogRMSE", "delta<1.25",
                                       "delta<1.25^2", "delta<1.25^3")}
    diff = np.abs(p - t)
    ratio = np.maximum(p / t, t / p)
    return out | {
        "AbsRel": float(np.mean(diff / t)),
        "AbsDiff": float(np.mean(diff)),
        "SqRel": float(np.mean(diff ** 2 / t)),
        "RMSE": float(np.sqrt(np.mean(diff ** 2))),
        "LogRMSE": float(np.sqrt(np.mean((np.log(p) - np.log(t)) ** 2))),
        "delta<1.25": float(np.mean(ratio < 1.25)),
        "delta<1.25^2": float(np.mean(ratio < 1.25 ** 2)),
        "delta<1.25^3": float(np.mean(ratio < 1.25 ** 3)),
    }


def tsdf_l1(predicted: torch.Tensor, target: torch.Tensor, truncation: float,
            mask: torch.Tensor | None = None) -> float:
    """Atlas' TSDF L1 in metres: mean |predicted - target| * truncation over ``mask`` (default: target < 1,
    i.e. the observed band near surfaces; Atlas stores unobserved and far voxels as 1). NaN if empty."""
    if mask is None:
        mask = target < 1
    if not bool(mask.any()):
        return float("nan")
    return float((predicted[mask] - target[mask]).abs().mean()) * truncation


def sample_surface_points(vertices: np.ndarray, triangles: np.ndarray, spacing: float, seed: int = 0,
                          max_points: int | None = None) -> np.ndarray:
    """Points spread uniformly over a triangle mesh, ``ceil(area / spacing**2)`` of them (at most
    ``max_points``: a wider spacing on huge meshes), drawn with ``numpy.random.default_rng(seed)``.

    Args:
        vertices: (N, 3) float; triangles: (M, 3) int.
    Returns:
        (P, 3) float64 points.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    triangles = np.asarray(triangles, dtype=np.int64)
    if len(triangles) == 0:
        return np.zeros((0, 3))
    a, b, c = (vertices[triangles[:, i]] for i in range(3))
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    total = area.sum()
    if total <= 0:
        return np.zeros((0, 3))
    rng = np.random.default_rng(seed)
    count = max(1, int(np.ceil(total / spacing ** 2)))
    if max_points is not None:
        count = min(count, max(1, int(max_points)))
    face = rng.choice(len(triangles), size=count, p=area / total)
    u, v = rng.random(count), rng.random(count)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    return a[face] + u[:, None] * (b[face] - a[face]) + v[:, None] * (c[face] - a[face])


def nearest_distances(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(N,) Euclidean distance from every point to its nearest reference point (Open3D KD-tree); inf if no
    reference points."""
    import open3d as o3d  # heavy import, only for mesh metrics

    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(reference) == 0:
        return np.full(len(points), np.inf)
    source = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    target = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(reference, dtype=np.float64)))
    return np.asarray(source.compute_point_cloud_distance(target))


def mesh_metrics(predicted_points: np.ndarray, target_points: np.ndarray, threshold: float = 0.05) -> dict[str, float]:
    """Atlas' 3D metrics between points sampled on the predicted and the target surface.

    ``Acc`` = mean distance predicted -> target, ``Comp`` = mean distance target -> predicted, ``Prec`` =
    fraction of predicted points within ``threshold`` of the target, ``Recall`` = fraction of target points
    within ``threshold`` of the prediction, ``F-score`` = 2 Prec Recall / (Prec + Recall), 0 when either is 0 (an
    empty prediction: ``Acc`` and ``Prec`` NaN, ``Comp`` inf, ``Recall`` and ``F-score`` 0).
    """
    to_target = nearest_distances(predicted_points, target_points)
    to_prediction = nearest_distances(target_points, predicted_points)
    nan = float("nan")
    precision = float(np.mean(to_target < threshold)) if len(to_target) else nan
    recall = float(np.mean(to_prediction < threshold)) if len(to_prediction) else nan
    # the harmonic mean is 0 when either is 0 (even an undefined precision), NaN when either is NaN otherwise
    fscore = 0.0 if precision == 0 or recall == 0 else 2 * precision * recall / (precision + recall)
    return {
        "Acc": float(np.mean(to_target)) if len(to_target) else nan,
        "Comp": float(np.mean(to_prediction)) if len(to_prediction) else nan,
        "Prec": precision,
        "Recall": recall,
        "F-score": fscore,
    }


def transfer_labels(points: np.ndarray, vertices: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Atlas' semantic transfer: every point takes the label of its nearest mesh vertex, however far.

    Args:
        points: (P, 3) world points (e.g. sampled on the target surface).
        vertices: (N, 3) mesh vertices, world frame; labels: (N,) int class ids (-1 unlabeled).
    Returns:
        (P,) int64 labels; -1 for every point when the mesh has no vertex.
    """
    from scipy.spatial import cKDTree  # only for label transfer

    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels) != len(vertices):
        raise ValueError(f"{len(labels)} labels for {len(vertices)} vertices")
    if len(vertices) == 0:
        return np.full(len(points), -1, np.int64)
    _, nearest = cKDTree(vertices).query(points)
    return labels[nearest]
