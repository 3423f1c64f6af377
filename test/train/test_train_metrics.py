"""Evaluation metrics of semantic_recon_training against values computed by hand from their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch



from semantic_recon_training.evaluation.metrics import (OccupancyCounts, SemanticConfusion,  # noqa: E402
                                                        completion_counts, depth_metrics, mesh_metrics, occupied,
                                                        sample_surface_points, semantic_masks, tsdf_l1)

VOXEL = 0.04
TRUNCATION = 0.12  # 3 voxels: |tsdf| < 1/3 is the one-voxel surface shell


def test_occupancy_definitions_at_their_boundaries():
    tsdf = torch.tensor([0.0, 0.3, -0.3, 0.34, -0.34, 1.0, -1.0, -0.5, 0.1])
    # surface: |sdf| < 0.04 m  <=>  |tsdf| < 1/3
    assert occupied(tsdf, TRUNCATION, VOXEL).tolist() == [True, True, True, False, False, False, False, False, True]
    # negative band: -truncation < sdf <= 0
    assert occupied(tsdf, TRUNCATION, VOXEL, "negative_band").tolist() == [
        True, False, True, False, True, False, False, True, False]
    with pytest.raises(ValueError, match="unknown occupancy definition"):
        occupied(tsdf, TRUNCATION, VOXEL, "solid")


def test_completion_iou_recall_precision_on_a_4x4x4_grid():
    target = torch.ones(4, 4, 4)
    target[1] = 0.0  # the plane x = 1: 16 occupied voxels
    predicted = torch.ones(4, 4, 4)
    predicted[1, :2] = 0.1  # half of the true plane (8 voxels)
    predicted[2] = -0.2  # plus a wrong plane x = 2 (16 voxels)
    counts = completion_counts(predicted, target, TRUNCATION, VOXEL)
    assert (counts.true_positive, counts.false_positive, counts.false_negative) == (8, 16, 8)
    assert counts.iou == pytest.approx(8 / 32)
    assert counts.recall == pytest.approx(8 / 16)
    assert counts.precision == pytest.approx(8 / 24)

    known = torch.ones(4, 4, 4, dtype=torch.bool)
    known[:, 3] = False  # target unknown at y = 3: T = 12, P = 8 + 12, TP = 8
    counts = completion_counts(predicted, target, TRUNCATION, VOXEL, mask=known)
    assert (counts.true_positive, counts.false_positive, counts.false_negative) == (8, 12, 4)
    assert counts.iou == pytest.approx(1 / 3)
    assert counts.recall == pytest.approx(2 / 3)
    assert counts.precision == pytest.approx(0.4)

    total = counts + OccupancyCounts(2, 0, 0)
    assert total.iou == pytest.approx(10 / 26)
    assert math.isnan(OccupancyCounts().iou) and math.isnan(OccupancyCounts().recall)


def test_semantic_miou_and_macc_by_hand():
    confusion = SemanticConfusion(4)  # class 3 never occurs in the target
    target = torch.tensor([0, 0, 1, 1, 2, -1, 1])
    predicted = torch.tensor([0, 1, 1, 1, 0, 2, -1])  # last: no prediction for a class-1 voxel
    confusion.update(predicted, target)
    # class 0: TP 1, FP 1 (the class-2 voxel), FN 1 -> 1/3; acc 1/2
    # class 1: TP 2, FP 1 (a class-0 voxel), FN 1 (the unpredicted voxel) -> 2/4; acc 2/3
    # class 2: TP 0, FP 0, FN 1 -> 0; acc 0.  class 3: absent -> NaN, left out of the means
    iou = confusion.per_class_iou()
    assert iou[:3].tolist() == pytest.approx([1 / 3, 1 / 2, 0.0])
    assert math.isnan(iou[3])
    assert confusion.miou == pytest.approx((1 / 3 + 1 / 2 + 0) / 3)
    assert confusion.macc == pytest.approx((1 / 2 + 2 / 3 + 0) / 3)
    # accumulating a second batch (masked) adds counts
    confusion.update(torch.tensor([2, 2]), torch.tensor([2, 2]), mask=torch.tensor([True, False]))
    assert confusion.per_class_iou()[2] == pytest.approx(1 / 2)


def test_semantic_masks_partial_and_full():
    gt = torch.ones(4, 4, 4)
    gt[1] = 0.0  # complete surface: plane x = 1
    observed = torch.zeros(4, 4, 4, dtype=torch.bool)
    observed[:, :2] = True
    fused = torch.where(observed, gt, torch.ones_like(gt))
    masks = semantic_masks(fused, observed, gt, TRUNCATION, VOXEL)
    assert int(masks["full"].sum()) == 16 and int(masks["partial"].sum()) == 8
    assert bool((masks["partial"] <= masks["full"]).all())


def test_atlas_depth_metrics_by_hand():
    predicted = np.array([[1.0, 2.0, 3.0], [0.0, 4.0, 5.0]])
    target = np.array([[1.0, 2.5, 12.0], [3.0, 0.0, np.nan]])
    m = depth_metrics(predicted, target)
    # scored pixels: (1 vs 1) and (2 vs 2.5); 12 m is beyond Atlas' 10 m, NaN / 0 targets are invalid
    assert m["complete"] == pytest.approx(5 / 6)  # pixels with a prediction, over all pixels
    assert m["AbsRel"] == pytest.approx((0 + 0.5 / 2.5) / 2)
    assert m["AbsDiff"] == pytest.approx(0.25)
    assert m["SqRel"] == pytest.approx((0 + 0.25 / 2.5) / 2)
    assert m["RMSE"] == pytest.approx(math.sqrt(0.125))
    assert m["LogRMSE"] == pytest.approx(abs(math.log(0.8)) / math.sqrt(2))
    assert m["delta<1.25"] == pytest.approx(0.5)  # ratio 1.25 is not < 1.25
    assert m["delta<1.25^2"] == pytest.approx(1.0) and m["delta<1.25^3"] == pytest.approx(1.0)
    empty = depth_metrics(np.zeros((2, 2)), np.ones((2, 2)))
    assert empty["complete"] == 0.0 and math.isnan(empty["AbsRel"])
    with pytest.raises(ValueError, match="shape"):
        depth_metrics(np.zeros((2, 2)), np.zeros((2, 3)))


def test_tsdf_l1_ignores_unobserved_target_voxels():
    target = torch.tensor([0.5, 1.0, -0.2, 1.0])
    predicted = torch.tensor([0.25, 0.0, -0.2, 0.5])
    assert tsdf_l1(predicted, target, TRUNCATION) == pytest.approx((0.25 + 0.0) / 2 * TRUNCATION)
    assert math.isnan(tsdf_l1(predicted, torch.ones(4), TRUNCATION))


def test_mesh_metrics_by_hand():
    target = np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]])
    predicted = np.array([[0.0, 0.03, 0], [1, 0, 0.04], [2, 0.1, 0]])
    m = mesh_metrics(predicted, target, threshold=0.05)
    assert m["Acc"] == pytest.approx((0.03 + 0.04 + 0.1) / 3)
    assert m["Prec"] == pytest.approx(2 / 3)
    far = math.sqrt(1 + 0.1 ** 2)  # target (3, 0, 0) to predicted (2, 0.1, 0)
    assert m["Comp"] == pytest.approx((0.03 + 0.04 + 0.1 + far) / 4)
    assert m["Recall"] == pytest.approx(0.5)
    assert m["F-score"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    nothing = mesh_metrics(np.zeros((0, 3)), target)
    assert nothing["Recall"] == 0.0 and math.isinf(nothing["Comp"])
    assert nothing["F-score"] == 0.0 and math.isnan(nothing["Prec"]) and math.isnan(nothing["Acc"])


def test_surface_sampling_is_uniform_and_reproducible():
    vertices = np.array([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [5, 5, 5]])
    triangles = np.array([[0, 1, 2], [0, 2, 3], [4, 4, 4]])  # a unit square plus a degenerate triangle
    points = sample_surface_points(vertices, triangles, spacing=0.05, seed=3)
    assert points.shape == (400, 3)
    assert np.all(points[:, 2] == 0) and points[:, :2].min() >= 0 and points[:, :2].max() <= 1
    quadrants = np.histogram2d(points[:, 0], points[:, 1], bins=2, range=[[0, 1], [0, 1]])[0]
    assert quadrants.min() > 60 and quadrants.max() < 140  # 100 expected each
    np.testing.assert_array_equal(points, sample_surface_points(vertices, triangles, 0.05, seed=3))
    assert not np.array_equal(points, sample_surface_points(vertices, triangles, 0.05, seed=4))
