"""Evaluation (semantic_recon_training/evaluation/): metric pieces by hand, the protocol's frame split, whole
runs on a tiny held-out synthetic room and on real 7-Scenes frames with a real (untrained) checkpoint, and the
confidence calibration's fit."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch

from support.paths import SEVEN_SCENES

from semantic_recon_ros.core.camera import PinholeCamera
from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.completion_confidence import ConfidenceCalibration
from semantic_recon_ros.core.mesh import SemanticMesh
from semantic_recon_ros.core.models import S4RNet, S4RNetConfig, save_checkpoint
from semantic_recon_training.data.chunk_extraction import ChunkExtractionConfig, extract_chunks
from semantic_recon_training.data.input_scan import input_frame_mask
from semantic_recon_training.data.pseudo_labels import GroundTruthLabels
from semantic_recon_training.data.training_record import RecordedScene, TrainingRecord
from semantic_recon_training.evaluation import calibration, evaluate
from semantic_recon_training.evaluation.evaluation_protocol import (EvaluationProtocol, fuse_frames, parse_seeds,
                                                                    pick_views, synthetic_evaluation_scene,
                                                                    synthetic_scene_dir)
from semantic_recon_training.evaluation.held_out import check_synthetic_rooms, sequence_note, synthetic_title
from semantic_recon_training.evaluation.evaluation_scoring import (DEPTH_KEYS, MESH_KEYS, MethodScores, ViewTarget,
                                                                   VoxelTarget, mesh_points, score_reconstruction)
from semantic_recon_training.evaluation.mesh_views import MeshViewRenderer
from semantic_recon_training.evaluation.metrics import (OccupancyCounts, SemanticConfusion, sample_surface_points,
                                                        visible_surface)
from semantic_recon_training.evaluation.reconstructions import Reconstruction
from semantic_recon_training.evaluation.scene_evaluation import (fusion_reconstructions, ground_truth_box,
                                                                 ground_truth_reconstruction, synthetic_voxel_target,
                                                                 view_target)

CLASSES = load_class_set()
VOXEL = 0.08  # coarse voxels keep the whole-room runs fast
SEED = 909  # a reserved held-out room


pytestmark = pytest.mark.usefixtures("one_torch_thread", "shared_data")


# ---------------------------------------------------------------------------------------------- metric pieces
def test_visible_surface_drops_contact_planes_and_the_outside_of_walls():
    truncation = 3 * VOXEL
    # 1D profile along x (y, z of size 1): free room interior x in [2, 6], a wall slab x <= 1.5 (centres 0..1)
    # whose outer face (x = -0.5) lies outside the room, and two solid boxes touching at x = 8.5
    sdf = np.array([0.5, -0.5, 0.5, 1.5, 2.5, 2.5, 1.5, 0.5, -0.5, -0.5, 0.5]) * VOXEL
    tsdf = torch.tensor(sdf / truncation, dtype=torch.float32).view(-1, 1, 1)
    interior = torch.zeros(11, 1, 1, dtype=torch.bool)
    interior[2:8] = True
    visible = visible_surface(tsdf, interior, truncation, VOXEL)[:, 0, 0].tolist()
    # shell voxels (|sdf| < 1 voxel): 0, 1, 2, 7, 8, 9, 10. Visible: those next to interior free voxels
    # (1 next to 2, 2 itself, 7 itself, 8 next to 7). Voxel 0 (outer wall face: free side outside the room),
    # 9 and 10 (only next to solid or to free space outside the interior) are not.
    assert visible == [False, True, True, False, False, False, False, True, True, False, False]


def test_confusions_merge_by_summing_counts():
    first, second = SemanticConfusion(3), SemanticConfusion(3)
    first.update(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 2]))
    second.update(torch.tensor([2, -1]), torch.tensor([2, 0]))
    first.merge(second)
    # class 0: TP 1, FN 1 (unpredicted); class 1: TP 1, FP 1; class 2: TP 1, FN 1
    assert first.per_class_iou().tolist() == pytest.approx([1 / 2, 1 / 2, 1 / 2])
    assert first.per_class_accuracy().tolist() == pytest.approx([1 / 2, 1.0, 1 / 2])
    with pytest.raises(ValueError, match="3-class confusion into a 4-class"):
        SemanticConfusion(4).merge(first)


def test_surface_sampling_respects_max_points():
    square = np.array([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    triangles = np.array([[0, 1, 2], [0, 2, 3]])
    assert len(sample_surface_points(square, triangles, 0.01)) == 10_000
    capped = sample_surface_points(square, triangles, 0.01, max_points=500)
    assert capped.shape == (500, 3) and np.all(capped[:, 2] == 0)


def test_method_scores_micro_average_voxels_and_mean_views_over_scenes():
    a, b = MethodScores(2, True), MethodScores(2, True)
    a.occupancy, b.occupancy = OccupancyCounts(3, 1, 0), OccupancyCounts(1, 0, 3)
    a.l1_sum, a.l1_count, b.l1_sum, b.l1_count = 0.3, 3, 0.1, 1
    nan = float("nan")
    depth = {key: nan for key in DEPTH_KEYS}
    mesh = {key: nan for key in MESH_KEYS}
    a.depth, b.depth = [depth | {"AbsRel": 0.1}, depth], [depth | {"AbsRel": 0.3}]
    a.mesh, b.mesh = [mesh | {"F-score": 0.5}], [mesh | {"F-score": 0.7}]
    a.merge(b)
    summary = a.summary()
    assert summary["IoU"] == pytest.approx(4 / 8)  # (3 + 1) / (4 + 1 + 3), not the mean of 3/4 and 1/4
    assert summary["Recall"] == pytest.approx(4 / 7) and summary["Precision"] == pytest.approx(4 / 5)
    assert summary["L1"] == pytest.approx(0.1)
    assert summary["AbsRel"] == pytest.approx(0.2)  # NaN views (nothing scored) are left out
    assert summary["3D F-score"] == pytest.approx(0.6)
    assert math.isnan(summary["mIoU p2f"])  # nothing labeled was scored
    assert math.isnan(MethodScores(2, False).summary()["mIoU p2p"])


def test_mesh_rendering_gives_depth_and_nearest_vertex_labels():
    # two 1 x 2 m rectangles at z = 2 m in front of a camera at the origin looking along +z: x in [-1, 0] with
    # every vertex labeled 0, x in [0, 1] with label 1 at x = 0 and label 2 at x = 1
    left = [[-1, -1, 2], [0, -1, 2], [0, 1, 2], [-1, 1, 2]]
    right = [[0, -1, 2], [1, -1, 2], [1, 1, 2], [0, 1, 2]]
    vertices = np.array(left + right, np.float32)
    triangles = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    labels = np.array([0, 0, 0, 0, 1, 2, 2, 1])
    mesh = SemanticMesh(vertices, triangles, np.zeros((8, 3), np.uint8), labels, np.ones(8, np.float32))
    # pixel (u, v) looks at x = 0.2 (u - 19.5), y = 0.2 (v - 19.5) on the plane z = 2: odd multiples of 0.1 m
    camera = PinholeCamera(10.0, 10.0, 19.5, 19.5, 40, 40)
    depth, rendered = MeshViewRenderer(mesh).render(camera, np.eye(4))
    position = 0.2 * (np.arange(40) - 19.5)
    inside = np.abs(position) < 1
    hit = np.outer(inside, inside)
    assert np.allclose(depth[hit], 2.0, atol=1e-5) and np.all(depth[~hit] == 0)
    assert np.all(rendered[~hit] == -1)
    assert np.all(rendered[np.ix_(inside, inside & (position < 0))] == 0)
    # in the right rectangle, the vertex with the largest barycentric weight: near x = 1 -> 2, near x = 0 -> 1
    column = {round(float(x), 1): u for u, x in enumerate(position)}
    row = column
    for x, y, label in ((0.9, 0.9, 2), (0.9, -0.9, 2), (0.1, 0.9, 1), (0.1, -0.9, 1)):
        assert rendered[row[y], column[x]] == label, (x, y)
    empty_depth, empty_labels = MeshViewRenderer(SemanticMesh.empty()).render(camera, np.eye(4))
    assert not empty_depth.any() and np.all(empty_labels == -1)


# ---------------------------------------------------------------------------------------------- protocol
def test_seed_lists_and_view_picking():
    assert parse_seeds("900-902,905, 901") == [900, 901, 902, 905]
    with pytest.raises(ValueError, match="bad seed list part '9x'"):
        parse_seeds("900,9x")
    with pytest.raises(ValueError, match="bad seed list part '904-900'"):
        parse_seeds("904-900")
    assert pick_views([9, 1, 5, 3, 7], 3) == [1, 5, 9]
    assert pick_views([4, 2], 5) == [2, 4]


@pytest.fixture(scope="module")
def protocol():
    return EvaluationProtocol(voxel_size=VOXEL, synthetic_frames=12, image_width=160, image_height=120,
                              views_per_scene=3, view_downscale=1, seven_scenes_stride=100, mesh_sample_spacing=0.04)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A real, untrained S4R network for 8 cm voxels."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("checkpoint") / "untrained.pt"
    save_checkpoint(path, S4RNet(S4RNetConfig(num_classes=CLASSES.num_classes, base_width=4)), CLASSES.names,
                    VOXEL, 4 * VOXEL)
    return path


def command(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory, checkpoint):
    out = tmp_path_factory.mktemp("synthetic_run")
    args = command("--checkpoint", str(checkpoint), "--synthetic-seeds", str(SEED), "--out", str(out),
                   "--labels", "ground-truth", "--voxel-size", str(VOXEL), "--frames", "12", "--image-size", "160x120",
                   "--views", "3", "--view-downscale", "1", "--threads", "1", "--no-progress", "--ablation")
    assert evaluate.run(args) == 0
    return out


def test_input_split_is_the_training_protocols(synthetic_run, protocol, tmp_path):
    folder = synthetic_scene_dir(synthetic_run / "cache", SEED, protocol)
    config = ChunkExtractionConfig(voxel_size=VOXEL, chunk_dims=(32, 32, 32), chunk_stride=(32, 32, 32),
                                   views_per_chunk=1, min_surface_voxels=50, view_downscale=4, seed=protocol.seed)
    extract_chunks(folder, tmp_path / "chunks", GroundTruthLabels(CLASSES.num_classes), config, progress=False)
    manifest = json.loads((tmp_path / "chunks" / "manifest.json").read_text())
    mask = input_frame_mask(manifest["num_frames"], protocol.input_fraction, protocol.seed)
    assert manifest["input_frames"] == np.flatnonzero(mask).tolist()
    scene = synthetic_evaluation_scene(folder, protocol)
    assert np.array_equal(scene.is_input, mask) and not scene.is_input[scene.views].any()
    assert len(scene.views) == protocol.views_per_scene


def test_synthetic_run_writes_tables_with_sensible_baselines(synthetic_run):
    markdown = (synthetic_run / "results.md").read_text()
    for row in ("| TSDF fusion |", "| 2D label fusion |", "| network |", "| fusion + network |"):
        assert row in markdown
    assert "Per-class IoU, partial-to-full" in markdown and "Definitions." in markdown
    results = json.loads((synthetic_run / "results.json").read_text())
    assert list(results["datasets"]) == [f"Synthetic held-out rooms (seeds {SEED})"]  # a reserved room
    (dataset,) = results["datasets"].values()
    methods = dataset["methods"]
    plain, labeled = methods["TSDF fusion"], methods["2D label fusion"]
    # half the frames leave holes: plain fusion recalls part of the visible surface, precisely
    assert 0.2 < plain["Recall"] < 0.95 and plain["Precision"] > 0.7
    assert plain["mIoU p2p"] is None and plain["IoU"] == labeled["IoU"]
    # fused 2D labels are right on the observed surface: far above chance (~1/9 for the classes present)
    assert labeled["mIoU p2p"] > 0.6 and labeled["mIoU p2f"] < labeled["mIoU p2p"]
    assert labeled["mIoU 2D"] > 0.5
    # rendered fusion depth is close to the held-out views' exact depth where it exists
    assert plain["AbsRel"] < 0.1 and 0.5 < plain["complete"] <= 1.0
    assert plain["3D Prec"] > 0.8 and plain["3D Recall"] < 0.95
    # the untrained network is scored (values in range), not skipped
    assert 0.0 <= methods["network"]["IoU"] <= 1.0 and methods["network"]["mIoU p2f"] is not None
    # the default map is the observed surface: fusion's geometry exactly, whatever the labels; the map with the
    # additions, and one row per lever of the ablation
    default_map = methods["fusion + network labels"]
    for key in ("IoU", "Precision", "3D Prec", "3D Recall", "3D F-score"):
        assert default_map[key] == plain[key], key
    # the untrained network is never sure of a class (probabilities near 1/13): the fused votes win wherever a voxel
    # has any, as when they always win
    assert methods["ablation: fusion + network labels, fused votes win"]["mIoU p2f"] == default_map["mIoU p2f"]
    assert {"ablation: fusion + network, confidence >= 0", "fusion + network"} <= set(methods)
    (scene,) = dataset["scenes"]
    assert scene["chunks_completed"] > 0 and scene["input_frames"] == 6
    for name in ("per_class_iou_synthetic.png", "depth_error_histogram.png", f"mesh_preview_room-{SEED}.png"):
        assert (synthetic_run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ground_truth_as_prediction_scores_perfectly(synthetic_run, protocol):
    scene = synthetic_evaluation_scene(synthetic_scene_dir(synthetic_run / "cache", SEED, protocol), protocol)
    truth = scene.ground_truth
    box = ground_truth_box(truth, VOXEL, protocol.truncation)
    volume = fuse_frames(scene, np.flatnonzero(scene.is_input), protocol, CLASSES.names, "cpu", progress=False).volume
    _, fused, observed = fusion_reconstructions(volume, box)
    voxels = synthetic_voxel_target(truth, box, fused.tsdf, observed, protocol)
    views = view_target(scene, protocol, None)
    target_points = mesh_points(truth.mesh, protocol.mesh_sample_spacing, protocol.max_mesh_samples)
    perfect = score_reconstruction(ground_truth_reconstruction(truth, box), voxels, views, target_points,
                                   CLASSES.num_classes, protocol.truncation, VOXEL,
                                   sample_spacing=protocol.mesh_sample_spacing).summary()
    for key in ("IoU", "Recall", "Precision", "mIoU p2p", "mIoU p2f", "mAcc p2f", "3D F-score"):
        assert perfect[key] == pytest.approx(1.0), key
    assert perfect["L1"] == 0.0 and perfect["3D Acc"] == 0.0
    assert perfect["AbsRel"] < 0.005 and perfect["delta<1.25"] > 0.99 and perfect["mIoU 2D"] > 0.97

    # the surface shell is at most 2 voxels thick: shifted by 2 voxels along every axis, axis-aligned surfaces
    # no longer overlap; an empty prediction recalls nothing
    shifted = Reconstruction("shifted", torch.roll(voxels.tsdf, (2, 2, 2), dims=(0, 1, 2)), None, truth.mesh)
    empty = Reconstruction("empty", torch.ones_like(voxels.tsdf), None, SemanticMesh.empty())
    no_views = ViewTarget(views.camera, [], [])
    shifted_iou = score_reconstruction(shifted, voxels, no_views, target_points, CLASSES.num_classes,
                                       protocol.truncation, VOXEL).summary()["IoU"]
    assert shifted_iou < 0.3
    nothing = score_reconstruction(empty, VoxelTarget(voxels.tsdf, voxels.known), no_views, target_points,
                                   CLASSES.num_classes, protocol.truncation, VOXEL).summary()
    assert nothing["Recall"] == 0.0 and nothing["3D Recall"] == 0.0


def test_seven_scenes_run_scores_semantic_consistency(tmp_path, checkpoint):
    args = command("--checkpoint", str(checkpoint), "--synthetic-seeds", "none", "--seven-scenes", str(SEVEN_SCENES),
                   "--out", str(tmp_path), "--voxel-size", str(VOXEL), "--seven-scenes-stride", "50",
                   "--views", "1", "--view-downscale", "4", "--threads", "1", "--no-progress")
    assert evaluate.run(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    (dataset,) = results["datasets"].values()
    labeled, plain = dataset["methods"]["2D label fusion"], dataset["methods"]["TSDF fusion"]
    assert dataset["scenes"][0]["held_out_views"] == [500]  # of frames 0, 50, ..., 550, 500 and 550 are not inputs
    # against the fusion of all 12 frames, the input's 6 frames recall part of the surface
    assert 0.1 < plain["Recall"] < 0.95 and plain["Precision"] > 0.8
    # the fused labels, rendered into a view no input frame saw from there, agree with the segmenter's labels of
    # that view as far as DeepLab agrees with itself across views (~0.2 mIoU, ~0.6 of the pixels; labeling all
    # pixels "wall" scores ~0.05); the untrained network's labels do not
    assert labeled["mIoU 2D"] > 0.1 and labeled["mAcc 2D"] > 0.2
    assert dataset["methods"]["network"]["mIoU 2D"] < 0.05
    assert plain["mIoU 2D"] is None and labeled["mIoU p2f"] is None
    assert "Per-class IoU of the rendered labels in the held-out views" in (tmp_path / "results.md").read_text()


def test_clear_errors_for_a_missing_or_mismatched_checkpoint(tmp_path, checkpoint):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        evaluate.run(command("--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path)))
    with pytest.raises(ValueError, match=r"voxel size 0\.08 m.*--voxel-size 0\.04"):
        evaluate.run(command("--checkpoint", str(checkpoint), "--out", str(tmp_path)))
    with pytest.raises(ValueError, match="7-Scenes does not have"):
        evaluate.run(command("--checkpoint", str(checkpoint), "--out", str(tmp_path), "--labels", "ground-truth",
                               "--seven-scenes", str(SEVEN_SCENES)))


# ---------------------------------------------------------------------------------------------- held out
RECORD = TrainingRecord((RecordedScene("synthetic_0020", "train", synthetic_seed=20),
                         RecordedScene("synthetic_0021", "validation", synthetic_seed=21),
                         RecordedScene("7scenes-redkitchen", "train", path="../shared/data/7scenes-redkitchen",
                                       frame_stride=2, max_frames=250)))


def test_only_scenes_the_checkpoint_never_saw_count_as_held_out():
    with pytest.raises(ValueError, match=r"trained or validated on synthetic rooms 20 \(train\), 21 \(validation\)"):
        check_synthetic_rooms([20, 21, 22, 900], RECORD)
    check_synthetic_rooms([22, 900], RECORD)
    assert synthetic_title("900-904", [900, 901, 902, 903, 904], RECORD) == "Synthetic held-out rooms (seeds 900-904)"
    for record, known in ((RECORD, "not trained on by this checkpoint"), (None, "possibly trained on")):
        title = synthetic_title("22,900", [22, 900], record)
        assert "held-out rooms (" not in title and "[22] not among the reserved held-out rooms 900-909" in title
        assert known in title
    assert "possibly trained on" in synthetic_title("22", [22], TrainingRecord(RECORD.scenes, complete=False))
    # 7-Scenes: trained on frames 0-498, so views from 500 on are held out and views before are refused
    assert sequence_note(SEVEN_SCENES, (500, 600), RECORD) == ("held-out views from frames 500-599; the checkpoint "
                                                               "trained on frames 0-498 of it")
    with pytest.raises(ValueError, match=r"trained on .*7scenes-redkitchen .*frames 0-498, stride 2.* 400-499"):
        sequence_note(SEVEN_SCENES, (400, 500), RECORD)
    everything = TrainingRecord((RecordedScene("kitchen", "validation", path="../shared/data/7scenes-redkitchen"),))
    with pytest.raises(ValueError, match="validated on .*every frame"):
        sequence_note(SEVEN_SCENES, (500, 600), everything)
    assert "not trained on" in sequence_note(SEVEN_SCENES, (500, 600), TrainingRecord(RECORD.scenes[:2]))


def test_evaluate_refuses_what_the_checkpoint_trained_on(tmp_path):
    recorded = tmp_path / "recorded.pt"
    save_checkpoint(recorded, S4RNet(S4RNetConfig(num_classes=CLASSES.num_classes, base_width=4)), CLASSES.names,
                    VOXEL, 4 * VOXEL, training=RECORD.to_dict())
    common = ("--checkpoint", str(recorded), "--out", str(tmp_path / "out"), "--voxel-size", str(VOXEL))
    with pytest.raises(ValueError, match=r"synthetic rooms 20 \(train\): they are not held out"):
        evaluate.run(command(*common, "--synthetic-seeds", "20"))
    with pytest.raises(ValueError, match="reaches the held-out view frames 400-499"):
        evaluate.run(command(*common, "--synthetic-seeds", "none", "--seven-scenes", str(SEVEN_SCENES),
                             "--held-out-frames", "400-499"))
    assert not (tmp_path / "out" / "results.md").exists()


# ---------------------------------------------------------------------------------------------- calibration
def test_the_calibration_fit_recovers_a_monotone_confidence_model():
    generator = torch.Generator().manual_seed(0)
    distance = torch.randint(1, 12, (40_000,), generator=generator)
    probability = torch.rand(40_000, generator=generator)
    truth = ConfidenceCalibration((1.5, 1.0, 0.2, 0.2, -0.5, -1.0, -1.0, -1.5, -2.0), 2.0)
    right = torch.rand(40_000, generator=generator) < truth.confidence(distance, probability)
    samples = calibration.SurfaceSamples(distance, probability, right, torch.zeros(40_000))
    fitted = calibration.fit_calibration(samples, "test")
    assert len(fitted.distance_logits) == calibration.MAX_DISTANCE + 1 and fitted.fitted_on == "test"
    assert all(a >= b for a, b in zip(fitted.distance_logits, fitted.distance_logits[1:]))  # never rising
    np.testing.assert_allclose(fitted.distance_logits, truth.distance_logits, atol=0.15)
    assert fitted.class_probability_weight == pytest.approx(2.0, abs=0.15)
    report = calibration.report(samples, fitted)
    assert report["expected_calibration_error"] < 0.02 and report["samples"] == 40_000
    # a precision that rises with the distance somewhere is pooled, not learned: the logits stay monotone
    bumpy = calibration.SurfaceSamples(distance, probability, (distance == 3) | right, torch.zeros(40_000))
    logits = calibration.fit_calibration(bumpy, "test").distance_logits
    assert all(a >= b for a, b in zip(logits, logits[1:]))


def test_calibrating_on_the_test_rooms_is_refused(tmp_path, checkpoint):
    parser = argparse.ArgumentParser()
    calibration.add_arguments(parser)
    for argv, message in ((["--synthetic-seeds", "903-906", "--write"], r"seeds \[903, 904\] are test rooms"),
                          (["--write", "--check"], "exactly one of --write"), ([], "exactly one of --write")):
        args = parser.parse_args(["--checkpoint", str(checkpoint), "--out", str(tmp_path), *argv])
        with pytest.raises(ValueError, match=message):
            calibration.run(args)
