"""RGB-only evaluation (semantic_recon_training/evaluation/rgb_only_*.py): Atlas' label transfer by hand, the scoring
of a mesh against the fusion of all frames (the reference against itself is perfect), and whole runs of the evaluate
command with a real (untrained) Atlas checkpoint on a tiny held-out synthetic room and on held-back 7-Scenes frames."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from support.paths import SEVEN_SCENES

from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.config import StereoConfig
from semantic_recon_ros.core.models import AtlasNet, AtlasNetConfig, save_checkpoint
from semantic_recon_training.data.pseudo_labels import GroundTruthLabels
from semantic_recon_training.evaluation import evaluate
from semantic_recon_training.evaluation.evaluation_protocol import (EvaluationProtocol, fuse_frames,
                                                                    held_out_synthetic_scene,
                                                                    synthetic_evaluation_scene)
from semantic_recon_training.evaluation.evaluation_scoring import MeshTarget, mesh_points, score_mesh
from semantic_recon_training.evaluation.metrics import transfer_labels
from semantic_recon_training.evaluation.rgb_only_evaluation import (CONSTANT_DEPTH, RGB_ONLY, RGBD_MAP,
                                                                    reference_labels)
from semantic_recon_training.evaluation.scene_evaluation import TARGET_FUSION, view_target

CLASSES = load_class_set()
VOXEL = 0.08  # coarse voxels keep the runs small
SEED = 909  # a reserved held-out room

pytestmark = pytest.mark.usefixtures("one_torch_thread", "shared_data")


def test_label_transfer_takes_the_nearest_vertex_however_far():
    vertices = np.array([[0.0, 0, 0], [1, 0, 0], [0, 5, 0]])
    labels = np.array([3, -1, 7])
    points = np.array([[0.1, 0, 0], [0.9, 0.2, 0], [0, 100, 0]])
    assert transfer_labels(points, vertices, labels).tolist() == [3, -1, 7]
    assert transfer_labels(points, np.zeros((0, 3)), np.zeros(0)).tolist() == [-1, -1, -1]
    with pytest.raises(ValueError, match="2 labels for 3 vertices"):
        transfer_labels(points, vertices, labels[:2])


@pytest.fixture(scope="module")
def protocol():
    return EvaluationProtocol(voxel_size=VOXEL, synthetic_frames=12, image_width=160, image_height=120,
                              views_per_scene=3, view_downscale=1, mesh_sample_spacing=0.04)


@pytest.fixture(scope="module")
def room(tmp_path_factory, protocol):
    cache = tmp_path_factory.mktemp("cache")
    return synthetic_evaluation_scene(held_out_synthetic_scene(cache, SEED, protocol, progress=False), protocol)


def test_the_reference_scores_perfectly_against_itself_and_its_labels_match_the_boxes(room, protocol):
    # the fusion of all frames with their exact 2D labels, as reference and as prediction
    fused = fuse_frames(room, range(len(room.frames)), protocol, CLASSES.names, "cpu",
                        GroundTruthLabels(CLASSES.num_classes), progress=False)
    mesh = fused.mesh()[0]
    points = mesh_points(mesh, protocol.mesh_sample_spacing, protocol.max_mesh_samples)
    truth = reference_labels(room.ground_truth, points, CLASSES.names)
    target = MeshTarget(points, truth, view_target(room, protocol, None))
    scores = score_mesh(mesh, True, target, CLASSES.num_classes, protocol.mesh_sample_spacing).summary()
    assert scores["3D F-score"] == 1.0 and scores["3D Acc"] == 0.0 and scores["3D Comp"] == 0.0
    # the held-out views' exact depth against the fused surface: within a fraction of a voxel
    assert scores["AbsDiff"] < VOXEL / 4 and scores["delta<1.25"] > 0.97
    # fused 2D ground truth transferred to the surface points agrees with the nearest box's class, except near the
    # edges where boxes meet (one voxel of votes from both)
    assert len(set(truth.tolist())) >= 4 and scores["mIoU p2f"] > 0.8 and scores["mIoU 2D"] > 0.7
    # the same geometry unlabeled scores no semantics; a mesh shifted by 3 voxels loses its precision
    unlabeled = score_mesh(mesh, False, target, CLASSES.num_classes, protocol.mesh_sample_spacing).summary()
    assert np.isnan(unlabeled["mIoU p2f"]) and unlabeled["3D F-score"] == 1.0
    shifted = type(mesh)(mesh.vertices + np.float32(3 * VOXEL), mesh.triangles, mesh.colors, mesh.labels,
                         mesh.confidence)
    assert score_mesh(shifted, True, target, CLASSES.num_classes, 0.04).summary()["3D Prec"] < 0.5
    with pytest.raises(ValueError, match="target labels for"):
        MeshTarget(points, truth[:-1], target.views)


def atlas_checkpoint(folder, feature_source: str):
    """A real, untrained Atlas network for 8 cm voxels."""
    torch.manual_seed(0)
    path = folder / f"atlas_untrained_{feature_source}.pt"
    save_checkpoint(path, AtlasNet(AtlasNetConfig(num_classes=CLASSES.num_classes, feature_source=feature_source,
                                                  base_width=4)), CLASSES.names, VOXEL, 4 * VOXEL)
    return path


def command(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_an_atlas_checkpoint_is_evaluated_rgb_only_on_a_synthetic_room(tmp_path):
    args = command("--checkpoint", str(atlas_checkpoint(tmp_path, "color")), "--synthetic-seeds", str(SEED), "--out", str(tmp_path),
                   "--labels", "ground-truth", "--voxel-size", str(VOXEL), "--frames", "12", "--image-size", "160x120",
                   "--views", "3", "--view-downscale", "1", "--threads", "1", "--no-progress")
    assert evaluate.run(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    (dataset,) = results["datasets"].values()
    methods = dataset["methods"]
    assert list(methods) == [RGBD_MAP, RGB_ONLY, CONSTANT_DEPTH]
    rgbd, rgb_only, constant = (methods[name] for name in (RGBD_MAP, RGB_ONLY, CONSTANT_DEPTH))
    # half the frames with exact depth: precise, most of the surface of all frames, the right classes
    assert rgbd["3D Prec"] > 0.9 and 0.5 < rgbd["3D Recall"] < 1.0 and rgbd["3D F-score"] > 0.7
    assert rgbd["AbsRel"] < 0.05 and rgbd["mIoU p2f"] > 0.5 and rgbd["mIoU 2D"] > 0.5
    # an untrained network from color alone is far below (it predicts no surface at all: F-score 0), and so is
    # fusing constant depth
    assert rgb_only["3D F-score"] < rgbd["3D F-score"] - 0.3 and rgb_only["mIoU p2f"] < rgbd["mIoU p2f"] / 2
    assert constant["3D F-score"] < rgbd["3D F-score"] - 0.3 and constant["AbsRel"] > 2 * rgbd["AbsRel"]
    assert constant["mIoU p2f"] is None and rgbd["IoU"] is None  # no semantics; no voxel metrics at all
    (scene,) = dataset["scenes"]
    assert scene["input_frames"] == 6 and scene["chunks_reconstructed"] > 0
    assert 0.5 < scene["constant_depth_m"] < 5.0
    assert all(scene["triangles"][name] > 0 for name in (TARGET_FUSION, RGBD_MAP, CONSTANT_DEPTH))
    markdown = (tmp_path / "results.md").read_text()
    assert markdown.startswith("# RGB-only evaluation") and "mIoU p2f" not in markdown
    assert "mIoU 3D ↑" in markdown and "Per-class IoU at the reference surface" in markdown
    for name in (f"mesh_preview_room-{SEED}.png", "per_class_iou_synthetic.png", "depth_error_histogram.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_on_seven_scenes_only_the_held_back_frames_are_mapped(tmp_path):
    # the 'deeplab' feature source: the RGB-only mapper gets the evaluation's 2D segmenter
    args = command("--checkpoint", str(atlas_checkpoint(tmp_path, "deeplab")), "--synthetic-seeds", "none", "--seven-scenes",
                   str(SEVEN_SCENES), "--out", str(tmp_path), "--voxel-size", str(VOXEL), "--seven-scenes-stride",
                   "20", "--views", "2", "--view-downscale", "4", "--threads", "1", "--no-progress")
    assert evaluate.run(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    ((title, dataset),) = results["datasets"].items()
    assert "only frames 500-599" in title
    (scene,) = dataset["scenes"]
    # frames 500, 520, ..., 580: the input half and the held-out views among the others
    assert scene["frames"] == 5 and scene["input_frames"] == 2
    assert len(scene["held_out_views"]) == 2 and all(500 <= i < 600 for i in scene["held_out_views"])
    rgbd, rgb_only = dataset["methods"][RGBD_MAP], dataset["methods"][RGB_ONLY]
    assert rgbd["3D Prec"] > 0.8 and rgbd["3D F-score"] > rgb_only["3D F-score"] + 0.2
    assert rgbd["mIoU 2D"] > 0.1 and rgbd["mIoU p2f"] is None  # semantic consistency only: no 3D labels
    assert (tmp_path / f"mesh_preview_{scene['name']}.png").is_file()


def test_stereo_is_evaluated_rgb_only_like_a_checkpoint(tmp_path):
    # 120 frames around the room (stereo needs a camera that moves little between frames; 60 leaves 21 of the 30
    # input frames without a source), the input a random half of them
    args = command("--rgb-only-stereo", "--synthetic-seeds", str(SEED), "--out", str(tmp_path), "--labels",
                   "ground-truth", "--voxel-size", str(VOXEL), "--frames", "120", "--image-size", "160x120",
                   "--views", "3", "--view-downscale", "1", "--threads", "1", "--no-progress")
    assert evaluate.run(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["settings"]["stereo"]["planes"] == StereoConfig().planes  # the node's settings by default
    assert results["rgb_only"].startswith("plane-sweep stereo")
    (dataset,) = results["datasets"].values()
    rgbd, stereo, constant = (dataset["methods"][name] for name in (RGBD_MAP, RGB_ONLY, CONSTANT_DEPTH))
    (scene,) = dataset["scenes"]
    print(f"\nstereo: F {stereo['3D F-score']:.3f} prec {stereo['3D Prec']:.3f} AbsRel {stereo['AbsRel']:.3f} "
          f"mIoU 3D {stereo['mIoU p2f']:.3f}; RGB-D F {rgbd['3D F-score']:.3f}; "
          f"constant F {constant['3D F-score']:.3f}; "
          f"{scene['frames_without_stereo_source']} of {scene['input_frames']} frames without a source")
    assert 1 <= scene["frames_without_stereo_source"] < scene["input_frames"] / 3
    # from color alone, far above the trivial baseline, below the RGB-D map; labeled by the fused 2D labels
    # (measured: F 0.643, precision 0.819, AbsRel 0.028, mIoU 3D 0.728; RGB-D F 0.997, constant depth F 0.103)
    assert constant["3D F-score"] + 0.3 < stereo["3D F-score"] < rgbd["3D F-score"]
    assert stereo["AbsRel"] < constant["AbsRel"] / 2 and stereo["mIoU p2f"] > 0.3
    assert (tmp_path / "results.md").read_text().startswith("# RGB-only evaluation: plane-sweep stereo")


def test_a_checkpoint_and_stereo_are_not_evaluated_together(tmp_path, capsys):
    with pytest.raises(SystemExit):
        command("--rgb-only-stereo", "--checkpoint", "x.pt", "--out", str(tmp_path))
    assert "not allowed with argument" in capsys.readouterr().err
