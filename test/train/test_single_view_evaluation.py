"""The evaluate command on a 'single_view' checkpoint (semantic_recon_training/evaluation/frustum_*.py): the
one-frame baselines against a held-out room's exact frustum targets (what one depth image gives: the visible surface,
none of the hidden part), the depth a frustum renders, and a whole run of the shipped model on a held-out room and
held-back 7-Scenes frames."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch

from support.paths import REPO, SEVEN_SCENES

from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.datasets import open_sequence
from semantic_recon_ros.core.models import load_checkpoint
from semantic_recon_ros.core.models.single_view import FrustumGrid, LossShapingConfig, frustum_regions
from semantic_recon_ros.core.models.single_view.frustum_target import frustum_ground_truth
from semantic_recon_ros.core.synthetic import load_ground_truth
from semantic_recon_training.data.pseudo_labels import GroundTruthLabels
from semantic_recon_training.evaluation import evaluate
from semantic_recon_training.evaluation.evaluation_protocol import EvaluationProtocol, held_out_synthetic_scene
from semantic_recon_training.evaluation.frustum_baselines import (depth_image_frustum, rendered_depth,
                                                                  rgbd_map_frustum, with_network_fill)
from semantic_recon_training.evaluation.frustum_evaluation import (CONSTANT_DEPTH, DEPTH_IMAGE, DEPTH_IMAGE_FILLED,
                                                                   NETWORK, RGBD_FRAME, RGBD_FRAME_FILLED,
                                                                   network_frustum)
from semantic_recon_ros.core.models.single_view import network_view
from semantic_recon_training.evaluation.metrics import depth_metrics
from semantic_recon_training.single_view.frustum_scores import FrustumScores

CLASSES = load_class_set()
CHECKPOINT = REPO / "models" / "single_view_default.pt"
SEED = 909  # a reserved held-out room

pytestmark = pytest.mark.usefixtures("one_torch_thread", "shared_data")


@pytest.fixture(scope="module")
def shipped():
    return load_checkpoint(CHECKPOINT, "cpu", expected_model="single_view")


@pytest.fixture(scope="module")
def room(tmp_path_factory, shipped):
    """Room 909 rendered at the shipped model's camera, as the evaluation renders it."""
    camera = shipped[1].camera
    protocol = EvaluationProtocol(synthetic_frames=12, image_width=camera.width, image_height=camera.height)
    return held_out_synthetic_scene(tmp_path_factory.mktemp("cache"), SEED, protocol, progress=False)


def test_cell_coordinates_and_camera_points_invert_each_other(shipped):
    grid = FrustumGrid(shipped[1].camera, shipped[1].config.frustum)
    cells = torch.rand(500, 3, dtype=torch.float64) * torch.tensor(grid.shape) - 0.5
    assert torch.allclose(grid.cam_to_cell_coordinates(grid.cell_coordinates_to_cam(cells)), cells, atol=1e-9)


def test_one_frame_baselines_see_the_visible_surface_and_none_of_the_hidden_part(room, shipped):
    grid = FrustumGrid(shipped[1].camera, shipped[1].config.frustum)
    truth, frames = load_ground_truth(room), open_sequence(room, "scannet")
    shaping = LossShapingConfig()
    scores = {name: FrustumScores(CLASSES.num_classes, shaping) for name in ("depth", "map", "target", "filled")}
    for index in (0, 6):
        frame = frames[index]
        target = frustum_ground_truth(grid, truth.scene, frame.T_world_cam, "cpu", CLASSES)
        regions = frustum_regions(target.tsdf[None], shaping)
        labels = GroundTruthLabels(CLASSES.num_classes).labels("room", index, frame)
        depth = depth_image_frustum(grid, frame.depth, labels, CLASSES.names)
        fused = rgbd_map_frustum(grid, frame, labels, EvaluationProtocol().volume_config(), CLASSES.names)
        visible = regions["visible_surface"][0] & (target.labels >= 0)
        for name, prediction in (("depth", depth), ("map", fused)):
            # where the back-projected 2D ground truth labels the visible band, it is the band's class
            labeled = visible & (prediction.classes >= 0)
            assert (prediction.classes[labeled] == target.labels[labeled]).float().mean() > 0.9
            scores[name].update_classes(prediction.tsdf[None], prediction.classes[None], target.tsdf[None],
                                        target.labels[None], regions)
        scores["target"].update_classes(target.tsdf[None], target.labels[None], target.tsdf[None],
                                        target.labels[None], regions)
        # the exact target renders the true depth image; so does the depth image's own frustum
        for tsdf in (target.tsdf, depth.tsdf):
            metrics = depth_metrics(rendered_depth(grid, tsdf)[0].numpy(), frame.depth)
            assert metrics["AbsRel"] < 0.02 and metrics["delta<1.25"] > 0.98 and metrics["complete"] > 0.99
        # the node's fill rule: the map's known cells unchanged, the network's band where the map knows nothing
        network = network_frustum(shipped[0], network_view(frame.color, frame.camera, grid.camera), grid,
                                  CLASSES.names, "cpu", mesh=False)
        filled = with_network_fill(grid, fused, network, CLASSES.names)
        assert torch.equal(filled.tsdf[fused.known], fused.tsdf[fused.known])
        assert torch.equal(filled.classes[fused.known], fused.classes[fused.known])
        added = filled.known & ~fused.known
        assert added.any() and torch.equal(added, ~fused.known & (network.tsdf.abs() < 1))
        assert torch.equal(filled.tsdf[added], network.tsdf[added]) and filled.mesh.num_triangles > 0
        scores["filled"].update_classes(filled.tsdf[None], filled.classes[None], target.tsdf[None],
                                        target.labels[None], regions)
        assert depth.mesh.num_triangles > 0 and fused.mesh.num_triangles > 0
        assert (depth.mesh.vertices[:, 2] > grid.config.near - 0.1).all()  # meshes in the camera frame
    perfect, depth, fused = (scores[name].result() for name in ("target", "depth", "map"))
    assert perfect["iou"] == 1.0 and perfect["miou"] == 1.0 and perfect["hidden_recall"] == 1.0
    for result in (depth, fused):
        # what it marks solid mostly is (the visible surface's solid side), the hidden part it cannot tell
        assert result["precision"] > 0.7 and 0.3 < result["recall"] < 0.9 and result["hidden_recall"] < 0.05
        # 2D ground truth back-projected labels only part of the visible band (not the band beside an edge, which
        # the pixels see past)
        assert 0.3 < result["visible_class_accuracy"] < 0.9
    assert depth["hidden_recall"] < 0.05 and fused["hidden_recall"] < 0.01
    assert scores["filled"].result()["hidden_recall"] > fused["hidden_recall"] + 0.1  # what the fill adds


def command(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_shipped_model_is_evaluated_on_a_held_out_room_and_held_back_seven_scenes_frames(tmp_path):
    args = command("--checkpoint", str(CHECKPOINT), "--synthetic-seeds", str(SEED), "--frames", "12", "--views", "2",
                   "--seven-scenes", str(SEVEN_SCENES), "--seven-scenes-stride", "50", "--out", str(tmp_path),
                   "--threads", "1", "--no-progress")
    assert evaluate.run(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    (synthetic_title, synthetic), (real_title, real) = results["datasets"].items()
    assert synthetic_title.startswith("Synthetic held-out rooms") and "frames 500-599" in real_title
    network, depth, fused = (synthetic["methods"][name] for name in (NETWORK, DEPTH_IMAGE, RGBD_FRAME))
    (room,) = synthetic["scenes"]
    assert room["views"] == [0, 11] and results["camera"]["width"] == 160
    # one depth image: the visible surface precisely, nothing hidden; the network from the image recovers some of
    # the hidden part
    assert depth["precision"] > 0.6 and depth["hidden_recall"] < 0.05 and depth["mesh Prec"] > 0.8
    assert fused["hidden_recall"] < 0.01 and fused["mesh Prec"] > 0.8
    assert depth["mesh no surface"] == 0 and fused["mesh no surface"] == 0
    assert network["hidden_recall"] > 0.1 and network["hidden_recall"] > depth["hidden_recall"] + 0.1
    for base, filled in ((depth, synthetic["methods"][DEPTH_IMAGE_FILLED]),
                         (fused, synthetic["methods"][RGBD_FRAME_FILLED])):
        assert filled["hidden_recall"] > base["hidden_recall"] + 0.1 and filled["mesh Recall"] > base["mesh Recall"]
    assert 0 < network["mesh F-score"] < 1 and 0 < network["miou"] < 1
    # 7-Scenes: the image resampled to the trained camera (7-Scenes' focal is 11 % longer: ~80 % covered); depth
    # metrics on the covered pixels next to the constant median depth
    (scene,) = real["scenes"]
    assert scene["frames"] == [500, 550] and 0.7 < scene["coverage"] < 0.9 and 1 < scene["constant_depth_m"] < 4
    rendered, constant = real["methods"][NETWORK], real["methods"][CONSTANT_DEPTH]
    assert all(math.isfinite(rendered[key]) for key in ("AbsRel", "AbsDiff", "SqRel", "RMSE", "delta<1.25"))
    assert rendered["complete"] > 0.5 and constant["complete"] == 1.0
    assert rendered["delta<1.25^3"] > 0.5  # depths of the room's scale, not of another
    assert rendered["mIoU 2D"] is not None and "mIoU 2D" not in constant
    markdown = (tmp_path / "results.md").read_text()
    assert markdown.startswith("# Single-view evaluation") and "hidden recall ↑" in markdown
    assert "Per-class IoU in the surface bands" in markdown and "δ<1.25 ↑" in markdown
    for name in (f"preview_room-{SEED}.png", "preview_7scenes-redkitchen_000500.png",
                 "preview_7scenes-redkitchen_000550.png", "per_class_iou_synthetic.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rooms_the_model_trained_or_validated_on_are_refused(tmp_path):
    for seed, split in ((3, "train"), (31, "validation")):
        args = command("--checkpoint", str(CHECKPOINT), "--synthetic-seeds", str(seed), "--out", str(tmp_path),
                       "--no-progress")
        with pytest.raises(ValueError, match=f"trained or validated on synthetic rooms {seed} \\({split}\\)"):
            evaluate.run(args)
    assert not (tmp_path / "results.md").exists()
