"""Scores of predicted frusta against their exact targets, accumulated over batches (validation and evaluation).

A cell is *occupied* where its TSDF is negative (inside a solid). Over every cell of the frusta:

* ``iou``, ``precision``, ``recall``: of the predicted occupied cells against the target's;
* ``reachable_precision``: the precision over the cells a view can tell, leaving out the region no free path from
  the camera reaches (solid interiors, space behind closed walls: what a method marks there is not a surface it
  shows, and the target's solid / free there no image can tell), where the loss shaping leaves them out too;
* ``hidden_recall``: the share of the target's occupied cells in the occluded surface region (the solid side of the
  surfaces hidden behind the visible one that free space reaches, :func:`~semantic_recon_ros.core.models.
  single_view.frustum_regions`) that the prediction marks occupied; a depth image alone recovers almost none of
  them (only what lies within the solid band it assumes behind a thin visible solid);
* ``class_accuracy``: the share of labeled cells in the surface bands (visible and occluded surface regions) whose
  predicted class (argmax of the logits) is the target's, also split into ``visible_class_accuracy`` and
  ``hidden_class_accuracy``; ``mean_class_accuracy``: its mean over the classes present (mAcc); ``miou``: the
  mean over the classes present of the per-class IoU of the predicted classes in those cells (a cell without a
  predicted class, -1, is a miss of its target class; :class:`~..evaluation.metrics.SemanticConfusion`).
"""

from __future__ import annotations

import math

import torch

from semantic_recon_ros.core.models.single_view import LossShapingConfig, frustum_regions

from ..evaluation.metrics import SemanticConfusion


class FrustumScores:
    """Cell counts over the batches given to :meth:`update` (or :meth:`update_classes`, or added by :meth:`merge`);
    :meth:`result` gives the scores of the module docstring (NaN where no cell counts)."""

    def __init__(self, num_classes: int, shaping: LossShapingConfig) -> None:
        self.shaping = shaping
        # tp, fp, fn, hidden tp, hidden, visible ok / n, hidden ok / n, reachable tp, reachable fp
        self.counts = torch.zeros(11, dtype=torch.int64)
        self.per_class = torch.zeros(2, num_classes, dtype=torch.int64)  # right, total
        self.confusion = SemanticConfusion(num_classes)

    def update(self, tsdf: torch.Tensor, class_logits: torch.Tensor, target_tsdf: torch.Tensor,
               target_labels: torch.Tensor) -> None:
        """Add a batch: predicted ``tsdf`` (B, D, Y, X) and ``class_logits`` (B, K, D, Y, X); target TSDF and labels
        (B, D, Y, X) (-1 = none)."""
        self.update_classes(tsdf, class_logits.argmax(dim=1), target_tsdf, target_labels)

    def update_classes(self, tsdf: torch.Tensor, classes: torch.Tensor, target_tsdf: torch.Tensor,
                       target_labels: torch.Tensor, regions: dict[str, torch.Tensor] | None = None) -> None:
        """Add a batch: predicted ``tsdf`` and ``classes`` (B, D, Y, X) (-1 = no class); target TSDF and labels
        (B, D, Y, X) (-1 = none); ``regions``: :func:`frustum_regions` of the target, when already computed."""
        regions = regions if regions is not None else frustum_regions(target_tsdf, self.shaping)
        occupied, predicted = target_tsdf < 0, tsdf < 0
        reachable = ~regions["unreachable"]
        hidden = occupied & regions["occluded_surface"]
        right = classes == target_labels
        labeled = target_labels >= 0
        visible_cells = labeled & regions["visible_surface"]
        hidden_cells = labeled & regions["occluded_surface"]
        self.counts += torch.stack([
            (occupied & predicted).sum(), (~occupied & predicted).sum(), (occupied & ~predicted).sum(),
            (hidden & predicted).sum(), hidden.sum(), (right & visible_cells).sum(), visible_cells.sum(),
            (right & hidden_cells).sum(), hidden_cells.sum(), (occupied & predicted & reachable).sum(),
            (~occupied & predicted & reachable).sum()]).cpu()
        surface = visible_cells | hidden_cells
        num_classes = self.per_class.shape[1]
        self.per_class[0] += torch.bincount(target_labels[surface & right], minlength=num_classes).cpu()
        self.per_class[1] += torch.bincount(target_labels[surface], minlength=num_classes).cpu()
        self.confusion.update(classes, target_labels, surface)

    def merge(self, other: "FrustumScores") -> None:
        """Add the counts of ``other`` (same classes)."""
        self.counts += other.counts
        self.per_class += other.per_class
        self.confusion.merge(other.confusion)

    def result(self) -> dict[str, float]:
        tp, fp, fn, hidden_tp, hidden, visible_ok, visible, hidden_ok, hidden_labeled, reachable_tp, reachable_fp = (
            int(c) for c in self.counts)

        def share(part: int, whole: int) -> float:
            return part / whole if whole else math.nan

        present = self.per_class[1] > 0
        return {"iou": share(tp, tp + fp + fn), "precision": share(tp, tp + fp), "recall": share(tp, tp + fn),
                "reachable_precision": share(reachable_tp, reachable_tp + reachable_fp),
                "hidden_recall": share(hidden_tp, hidden),
                "class_accuracy": share(visible_ok + hidden_ok, visible + hidden_labeled),
                "visible_class_accuracy": share(visible_ok, visible),
                "hidden_class_accuracy": share(hidden_ok, hidden_labeled),
                "mean_class_accuracy": (float((self.per_class[0][present] / self.per_class[1][present]).mean())
                                        if present.any() else math.nan),
                "miou": self.confusion.miou}
