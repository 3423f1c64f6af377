"""Training losses: zero on a perfect prediction, positive otherwise, gradients reach the network outputs.

The perfect prediction is an analytic box in a 16^3 chunk; its "captured" views are rendered from that same
prediction, so a perfect network output reproduces them exactly. The virtual-view loss runs the real
ADE20K segmenter on rendered views of a fused synthetic room.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from support.paths import SEGMENTER


from semantic_recon_ros.core.camera import PinholeCamera  # noqa: E402
from semantic_recon_ros.core.classes import load_class_set  # noqa: E402
from semantic_recon_ros.core.rendering import DenseGrid, render  # noqa: E402
from semantic_recon_ros.core.segmentation import DeepLabADE20K  # noqa: E402
from semantic_recon_ros.core.synthetic import DEFAULT_CAMERA, write_synthetic_scene  # noqa: E402
from semantic_recon_training.data.chunk_dataset import ChunkDataset  # noqa: E402
from semantic_recon_training.data.chunk_extraction import ChunkExtractionConfig, extract_chunks  # noqa: E402
from semantic_recon_training.data.pseudo_labels import GroundTruthLabels  # noqa: E402
from semantic_recon_training.data.virtual_views import (VirtualViewConfig, look_at, sample_virtual_views,  # noqa: E402
                                                        virtual_camera)
from semantic_recon_training.fitting.losses import (LossWeights, color_l1, depth_l1, log_tsdf_l1,  # noqa: E402
                                                    semantic_cross_entropy, soft_silhouette_iou, voxel_cross_entropy)
from semantic_recon_training.fitting.objective import TrainingObjective  # noqa: E402

CLASSES = load_class_set()
K = CLASSES.num_classes
DIMS = (16, 16, 16)
VOXEL = 0.05
TRUNCATION = 0.15
CAMERA = PinholeCamera(56.0, 56.0, 31.5, 23.5, 64, 48)
BOX_CENTER = (0.4, 0.375, 0.375)
BOX_HALF = (0.1, 0.15, 0.15)
TRUE_CLASS, WRONG_CLASS = 3, 2
BACKGROUND_DEPTH = 5.0  # rays missing the box see a wall far behind the chunk
ALL_WEIGHTS = LossWeights(depth=1, color=1, semantic=1, virtual_semantic=0, observed_tsdf=1, target_tsdf=1,
                          silhouette=1, gt_tsdf=1, gt_semantic=1)


pytestmark = pytest.mark.usefixtures("one_torch_thread", "shared_data")


def voxel_centers() -> torch.Tensor:
    axes = [torch.arange(n, dtype=torch.float32) * VOXEL for n in DIMS]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # (X, Y, Z, 3), origin 0


def box_prediction(shift_voxels=(0, 0, 0), color_offset=0.0, label=TRUE_CLASS) -> dict[str, torch.Tensor]:
    """Network-like outputs (B = 1) of the analytic box: exact TSDF, smooth color, one confident class."""
    p = voxel_centers() - torch.tensor(BOX_CENTER) - torch.tensor(shift_voxels, dtype=torch.float32) * VOXEL
    q = p.abs() - torch.tensor(BOX_HALF)
    sdf = q.clamp(min=0).norm(dim=-1) + q.amax(dim=-1).clamp(max=0)
    tsdf = (sdf / TRUNCATION).clamp(-1, 1)[None, None]
    color = (voxel_centers() / (VOXEL * (DIMS[0] - 1))).permute(3, 0, 1, 2)[None].clamp(0, 1)
    color = (color + color_offset).clamp(0, 1)
    logits = torch.zeros(1, K, *DIMS)
    logits[:, label] = 50.0  # softmax is exactly one-hot in float32
    return {"tsdf": tsdf.contiguous(), "color": color.contiguous(), "semantic_logits": logits}


def view_poses() -> torch.Tensor:
    positions = [(-0.5, 0.375, 0.375), (-0.45, 0.2, 0.5), (-0.4, 0.55, 0.3)]
    target = torch.tensor(BOX_CENTER, dtype=torch.float64)
    poses = [look_at(torch.tensor(c, dtype=torch.float64), target - torch.tensor(c, dtype=torch.float64),
                     torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64)) for c in positions]
    return torch.stack(poses)


def box_batch() -> dict:
    """A collated batch (B = 1) whose views, targets and ground truth all come from the perfect box."""
    perfect = box_prediction()
    poses = view_poses()
    grid = DenseGrid(perfect["tsdf"], torch.zeros(1, 3), VOXEL, TRUNCATION, perfect["color"],
                     perfect["semantic_logits"])
    cameras = [CAMERA] * len(poses)
    out = render(grid, cameras, poses[None])
    valid = out["valid"]
    observed = torch.zeros(1, 1, *DIMS, dtype=torch.bool)
    observed[..., :9, :, :] = True  # the input saw the front half of the chunk
    gt_labels = torch.where(perfect["tsdf"][:, 0].abs() < 1, TRUE_CLASS, -1)
    return {
        "tsdf": torch.where(observed, perfect["tsdf"], torch.ones_like(perfect["tsdf"])),
        "observed": observed,
        "color": perfect["color"],
        "origin": torch.zeros(1, 3, dtype=torch.float64),
        "voxel_size": torch.tensor([VOXEL], dtype=torch.float64),
        "truncation": torch.tensor([TRUNCATION], dtype=torch.float64),
        "view_depth": torch.where(valid, out["depth"], torch.full_like(out["depth"], BACKGROUND_DEPTH)),
        "view_color": out["color"],
        "view_labels": torch.where(valid, TRUE_CLASS, -1),
        "view_intrinsics": torch.tensor([[CAMERA.fx, CAMERA.fy, CAMERA.cx, CAMERA.cy]] * len(poses),
                                        dtype=torch.float64)[None],
        "view_T_world_cam": poses[None],
        "target_tsdf": perfect["tsdf"],
        "target_observed": torch.ones(1, 1, *DIMS, dtype=torch.bool),
        "has_target": torch.tensor([True]),
        "gt_tsdf": perfect["tsdf"],
        "gt_labels": gt_labels,
        "has_gt": torch.tensor([True]),
    }


def requiring_grad(prediction: dict) -> dict:
    return {k: v.clone().requires_grad_() for k, v in prediction.items()}


NAMED_LOSSES = ("depth", "color", "semantic", "observed_tsdf", "target_tsdf", "silhouette", "gt_tsdf", "gt_semantic")


def test_every_loss_is_zero_on_the_perfect_prediction():
    batch = box_batch()
    assert int(batch["view_labels"].ge(0).sum()) > 300  # the views do see the box
    total, terms = TrainingObjective(ALL_WEIGHTS)(requiring_grad(box_prediction()), batch)
    for name in NAMED_LOSSES:
        if name == "silhouette":
            assert terms[name] < 0.08, name  # soft occupancy: rays grazing the outline are neither 0 nor 1
        else:
            assert terms[name] == 0.0, name
    for count in ("depth_pixels", "color_pixels", "semantic_pixels", "observed_voxels", "gt_semantic_voxels"):
        assert terms[count] > 100, count  # zero because right, not because nothing was compared
    assert terms["silhouette_images"] == 3
    assert float(total.detach()) == pytest.approx(float(terms["silhouette"]))


def test_every_loss_is_positive_on_a_wrong_prediction_and_gradients_flow():
    batch = box_batch()
    wrong = requiring_grad(box_prediction(shift_voxels=(1, 1, 0), color_offset=0.2, label=WRONG_CLASS))
    total, terms = TrainingObjective(ALL_WEIGHTS)(wrong, batch)
    assert terms["depth"] == pytest.approx(VOXEL, rel=0.2)  # the front face moved one voxel back
    assert terms["color"] > 0.05
    assert terms["semantic"] > 10 and terms["gt_semantic"] > 10  # confident and wrong
    for name in ("observed_tsdf", "target_tsdf", "gt_tsdf"):
        assert terms[name] > 1e-3, name
    assert terms["silhouette"] > 0.2  # the outline moved by one voxel
    empty = {"tsdf": torch.full((1, 1, *DIMS), 0.5)}
    silhouette_only = LossWeights(**{field: 0.0 for field in vars(ALL_WEIGHTS)} | {"silhouette": 1.0})
    assert TrainingObjective(silhouette_only)(empty, batch)[1]["silhouette"] > 0.99
    total.backward()
    for key in ("tsdf", "color", "semantic_logits"):
        grad = wrong[key].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, key


@pytest.mark.parametrize("name, reaches", [
    ("depth", {"tsdf"}), ("color", {"color", "tsdf"}), ("semantic", {"semantic_logits"}),
    ("observed_tsdf", {"tsdf"}), ("target_tsdf", {"tsdf"}), ("silhouette", {"tsdf"}),
    ("gt_tsdf", {"tsdf"}), ("gt_semantic", {"semantic_logits"}),
])
def test_each_loss_alone_sends_gradients_to_its_outputs(name, reaches):
    weights = LossWeights(**{field: 0.0 for field in vars(ALL_WEIGHTS)} | {name: 1.0})
    prediction = requiring_grad(box_prediction(shift_voxels=(1, 1, 0), color_offset=0.2, label=WRONG_CLASS))
    total, terms = TrainingObjective(weights)(prediction, box_batch())
    assert set(terms) >= {name, "total"} and terms["total"] == pytest.approx(float(terms[name]))
    total.backward()
    got = {key for key, value in prediction.items() if value.grad is not None and value.grad.abs().max() > 1e-4}
    assert got == reaches  # (float noise below 1e-4 is not a gradient path)


def test_loss_functions_by_hand():
    mask = torch.tensor([True, True, False])
    loss, terms = depth_l1(torch.tensor([1.0, 2.0, 9.0]), torch.tensor([1.5, 2.0, 0.0]), mask)
    assert loss == pytest.approx(0.25) and terms["depth_pixels"] == 2
    loss, _ = color_l1(torch.tensor([[0.0, 0.0, 0.3]]), torch.tensor([[0.3, 0.0, 0.0]]), torch.tensor([True]))
    assert loss == pytest.approx(0.2)
    logits = torch.tensor([[0.0, 0.0], [0.0, math.log(3)], [0.9, 0.1], [0.1, 0.9]])  # p(0) = 1/2, 1/4
    labels = torch.tensor([0, 0, -1, 1])
    loss, terms = semantic_cross_entropy(logits, labels, torch.tensor([True, True, True, False]))
    # normalized by the valid (labeled, unmasked) pixels only
    assert loss == pytest.approx((math.log(2) + math.log(4)) / 2) and terms["semantic_pixels"] == 2
    occupancy = torch.tensor([[[1.0, 0.5], [0.0, 0.0]]])
    target = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    loss, _ = soft_silhouette_iou(occupancy, target, torch.ones(1, 2, 2, dtype=torch.bool))
    assert loss == pytest.approx(1 - 1.5 / 2.0)
    loss, _ = soft_silhouette_iou(target, target, torch.ones(1, 2, 2, dtype=torch.bool))
    assert loss == 0.0
    logits = torch.zeros(1, 3, 1, 1, 2)
    loss, terms = voxel_cross_entropy(logits, torch.tensor([[[[2, -1]]]]))
    assert loss == pytest.approx(math.log(3)) and terms["gt_semantic_voxels"] == 1


def test_log_tsdf_l1_multi_scale_with_masks_by_hand():
    target = torch.zeros(1, 1, 4, 4, 4)
    fine = target.clone()
    fine[0, 0, 1, 2, 3] = 0.5
    coarse = torch.full((1, 1, 2, 2, 2), 0.0)
    coarse[0, 0, 1, 1, 1] = -1.0  # coarse voxel (1, 1, 1) <- fine voxel (2, 2, 2)
    known = torch.ones_like(target, dtype=torch.bool)
    loss, terms = log_tsdf_l1([coarse, fine], target, known)
    expected_coarse = math.log(2) / 8
    expected_fine = math.log(1.5) / 64
    assert terms["target_tsdf_scale0"] == pytest.approx(expected_coarse)
    assert terms["target_tsdf_scale1"] == pytest.approx(expected_fine)
    assert loss == pytest.approx(expected_coarse + expected_fine)
    fine_mask = torch.ones_like(target, dtype=torch.bool)
    fine_mask[0, 0, 1, 2, 3] = False  # Atlas: voxels a coarser scale decided are not penalized
    loss, _ = log_tsdf_l1([coarse, fine], target, known, [None, fine_mask])
    assert loss == pytest.approx(expected_coarse)
    with pytest.raises(ValueError, match="does not divide"):
        log_tsdf_l1([torch.zeros(1, 1, 3, 3, 3)], target, known)


def test_atlas_style_multi_scale_outputs_are_supervised_per_scale():
    batch = box_batch()
    weights = LossWeights(**{field: 0.0 for field in vars(ALL_WEIGHTS)} | {"target_tsdf": 1.0, "gt_tsdf": 1.0})
    objective = TrainingObjective(weights)

    def atlas_like(prediction: dict) -> dict:  # AtlasNet.reconstruct's keys: scales coarse to fine, with masks
        tsdf = prediction["tsdf"]
        scales = [tsdf[:, :, ::f, ::f, ::f] for f in (8, 4, 2, 1)]
        return {"tsdf": tsdf, "semantic_logits": prediction["semantic_logits"], "tsdf_scales": scales,
                "mask_scales": [torch.ones_like(s, dtype=torch.bool) for s in scales]}

    _, terms = objective(atlas_like(box_prediction()), batch)
    assert [terms[f"target_tsdf_scale{s}"] for s in range(4)] == [0.0] * 4 and terms["gt_tsdf"] == 0.0
    _, terms = objective(atlas_like(box_prediction(shift_voxels=(2, 0, 0))), batch)
    assert all(terms[f"target_tsdf_scale{s}"] > 0 for s in range(4))
    batch["has_gt"] = torch.tensor([False])  # a chunk without ground truth adds nothing to the supervised loss
    _, terms = objective(atlas_like(box_prediction(shift_voxels=(2, 0, 0))), batch)
    assert terms["gt_tsdf"] == 0.0 and terms["target_tsdf"] > 0


def test_configs_reject_bad_values():
    with pytest.raises(ValueError, match="depth"):
        LossWeights(depth=-1.0)
    with pytest.raises(ValueError, match="min_distance"):
        VirtualViewConfig(min_distance=3.0, max_distance=1.0)
    with pytest.raises(ValueError, match="segmenter"):
        TrainingObjective(LossWeights(virtual_semantic=1.0))
    no_color = requiring_grad(box_prediction())
    del no_color["color"]
    with pytest.raises(ValueError, match="color"):
        TrainingObjective(LossWeights())(no_color, box_batch())


def test_virtual_views_look_at_content_from_free_space():
    perfect = box_prediction()
    config = VirtualViewConfig(count=4, min_distance=0.6, max_distance=0.9, max_angle_deg=25.0)
    poses = sample_virtual_views(perfect["tsdf"][0, 0], torch.ones(DIMS, dtype=torch.bool), torch.zeros(3),
                                 VOXEL, TRUNCATION, view_poses(), config, torch.Generator().manual_seed(0))
    assert poses.shape == (4, 4, 4)
    rotation = poses[:, :3, :3]
    assert torch.allclose(rotation @ rotation.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(4, 3, 3),
                          atol=1e-9)
    centers = poses[:, :3, 3]
    q = (centers - torch.tensor(BOX_CENTER, dtype=torch.float64)).abs() - torch.tensor(BOX_HALF, dtype=torch.float64)
    assert (q.clamp(min=0).norm(dim=1) > TRUNCATION).all()  # pulled back from the surface
    camera = virtual_camera(CAMERA, config)
    assert camera.fx == pytest.approx(CAMERA.fx * 0.7) and camera.shape == CAMERA.shape  # wider field of view
    grid = DenseGrid(perfect["tsdf"], torch.zeros(1, 3), VOXEL, TRUNCATION)
    hit = render(grid, camera, poses[None].float())["valid"][0].float().mean(dim=(1, 2))
    assert (hit > 0.05).all()  # every virtual view sees the box (0.2 x 0.3 x 0.3 m from 0.6-0.9 m away)
    again = sample_virtual_views(perfect["tsdf"][0, 0], torch.ones(DIMS, dtype=torch.bool), torch.zeros(3),
                                 VOXEL, TRUNCATION, view_poses(), config, torch.Generator().manual_seed(0))
    assert torch.equal(poses, again)


@pytest.fixture(scope="module")
def room_chunk(tmp_path_factory):
    """One fused chunk of a synthetic room (input color, all-frame fusion as geometry)."""
    root = tmp_path_factory.mktemp("virtual")
    scene = write_synthetic_scene(root / "room", seed=2, num_frames=16, camera=DEFAULT_CAMERA.scaled(160, 120),
                                  gt_voxel_size=0.08)
    config = ChunkExtractionConfig(voxel_size=0.08, chunk_dims=(32, 32, 32), chunk_stride=(16, 16, 16),
                                   views_per_chunk=2, view_downscale=1, max_chunks=1, min_surface_voxels=400, seed=1)
    extract_chunks(scene, root / "cache", GroundTruthLabels(K), config, progress=False)
    return torch.utils.data.default_collate([ChunkDataset(root / "cache")[0]])


def test_virtual_view_semantic_loss_with_the_real_segmenter(room_chunk):
    segmenter = DeepLabADE20K(SEGMENTER, CLASSES.names)
    batch = room_chunk
    prediction = {"tsdf": batch["target_tsdf"].clone().requires_grad_(),
                  "color": batch["color"].clone().requires_grad_(),
                  "semantic_logits": torch.zeros(1, K, 32, 32, 32, requires_grad=True)}
    weights = LossWeights(**{field: 0.0 for field in vars(ALL_WEIGHTS)} | {"virtual_semantic": 1.0})
    objective = TrainingObjective(weights, virtual=VirtualViewConfig(count=1), segmenter=segmenter)
    total, terms = objective(prediction, batch, torch.Generator().manual_seed(0))
    # uniform logits: the cross-entropy of any labeled pixel is log K
    assert terms["virtual_semantic_pixels"] > 200
    assert terms["virtual_semantic"] == pytest.approx(math.log(K), rel=1e-4)
    total.backward()
    assert prediction["semantic_logits"].grad.abs().sum() > 0
    # trained towards the segmentation, the loss falls
    logits = prediction["semantic_logits"].detach() - 0.5 * prediction["semantic_logits"].grad.sign()
    lower, _ = objective(prediction | {"semantic_logits": logits}, batch, torch.Generator().manual_seed(0))
    assert lower < total
    assert np.isfinite(float(lower.detach()))
