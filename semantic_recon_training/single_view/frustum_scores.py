"""Scores of predicted frusta against their exact targets, accumulated over batches (validation and evaluation).

A cell is *occupied* where its TSDF is negative (inside a solid). Over every cell of the frusta:

* ``iou``, ``precision``, ``recall``: of the predicted occupied cells against the target's;
* ``hidden_recall``: the share of the target's occupied cells in the occluded surface region (the solid side of the
  surfaces hidden behind the visible one that free space reaches, :func:`~semantic_recon_ros.core.models.
  single_view.frustum_regions`) that the prediction marks occupied; a depth image alone recovers none of them;
* ``class_accuracy``: the share of labeled cells in the surface bands (visible and occluded surface regions) whose
  predicted class (argmax of the logits) is the target's, also split into ``visible_class_accuracy`` and
  ``hidden_class_accuracy``; ``mean_class_accuracy``: its mean over the classes present (mAcc).
"""

from __future__ import annotations

import math

import torch

from semantic_recon_ros.core.models.single_view import LossShapingConfig, frustum_regions


class FrustumScores:
    """Cell counts over the batches given to :meth:`update`; :meth:`result` gives the scores of the module docstring
    (NaN where no cell counts)."""

    def __init__(self, num_classes: int, shaping: LossShapingConfig) -> None:
        self.shaping = shaping
        self.counts = torch.zeros(9, dtype=torch.int64)  # tp, fp, fn, hidden tp, hidden, visible ok / n, hidden ok / n
        self.per_class = torch.zeros(2, num_classes, dtype=torch.int64)  # right, total

    def update(self, tsdf: torch.Tensor, class_logits: torch.Tensor, target_tsdf: torch.Tensor,
               target_labels: torch.Tensor) -> None:
        """Add a batch: predicted ``tsdf`` (B, D, Y, X) and ``class_logits`` (B, K, D, Y, X); target TSDF and labels
        (B, D, Y, X) (-1 = none)."""
        regions = frustum_regions(target_tsdf, self.shaping)
        occupied, predicted = target_tsdf < 0, tsdf < 0
        hidden = occupied & regions["occluded_surface"]
        classes = class_logits.argmax(dim=1)
        right = classes == target_labels
        labeled = target_labels >= 0
        visible_cells = labeled & regions["visible_surface"]
        hidden_cells = labeled & regions["occluded_surface"]
        self.counts += torch.stack([
            (occupied & predicted).sum(), (~occupied & predicted).sum(), (occupied & ~predicted).sum(),
            (hidden & predicted).sum(), hidden.sum(), (right & visible_cells).sum(), visible_cells.sum(),
            (right & hidden_cells).sum(), hidden_cells.sum()]).cpu()
        surface = visible_cells | hidden_cells
        num_classes = self.per_class.shape[1]
        self.per_class[0] += torch.bincount(target_labels[surface & right], minlength=num_classes).cpu()
        self.per_class[1] += torch.bincount(target_labels[surface], minlength=num_classes).cpu()

    def result(self) -> dict[str, float]:
        tp, fp, fn, hidden_tp, hidden, visible_ok, visible, hidden_ok, hidden_labeled = (int(c) for c in self.counts)

        def share(part: int, whole: int) -> float:
            return part / whole if whole else math.nan

        present = self.per_class[1] > 0
        return {"iou": share(tp, tp + fp + fn), "precision": share(tp, tp + fp), "recall": share(tp, tp + fn),
                "hidden_recall": share(hidden_tp, hidden),
                "class_accuracy": share(visible_ok + hidden_ok, visible + hidden_labeled),
                "visible_class_accuracy": share(visible_ok, visible),
                "hidden_class_accuracy": share(hidden_ok, hidden_labeled),
                "mean_class_accuracy": (float((self.per_class[0][present] / self.per_class[1][present]).mean())
                                        if present.any() else math.nan)}
