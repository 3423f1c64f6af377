"""`semantic-recon map` end to end, as a user runs it: real data, real bags, real output files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.ply import read_semantic_ply
from semantic_recon_ros.core.synthetic import DEFAULT_CAMERA, write_synthetic_scene
from semantic_recon_ros.core.map import load_volume

from support.paths import SEVEN_SCENES
from support.saved_maps import assert_clean, assert_consistent


def semantic_recon(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "semantic_recon_ros.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_maps_seven_scenes_into_mesh_volume_and_preview(tmp_path):
    out = tmp_path / "kitchen"
    result = semantic_recon("map", SEVEN_SCENES, "--out", out, "--stride", "30", "--voxel-size", "0.05")
    assert result.returncode == 0, result.stderr
    # the default model is for 4 cm voxels: fusion only, with a warning
    assert "default completion model does not fit this map" in result.stderr and "Traceback" not in result.stderr
    assert not (out / "mesh_additions.ply").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_integrated"] == 20 and summary["frames_skipped"] == 0
    mesh, names = read_semantic_ply(out / "mesh_rgb.ply")
    assert mesh.num_triangles == summary["triangles"] > 5000
    assert "wall" in names and (mesh.labels == -1).all()  # 7-Scenes has no labels
    semantic, _ = read_semantic_ply(out / "mesh_semantic.ply")
    assert np.array_equal(semantic.vertices, mesh.vertices)
    volume = load_volume(out / "volume.pt", "cpu")
    assert volume.num_blocks == summary["blocks"] and volume.config.voxel_size == 0.05
    assert_consistent(out, load_class_set())  # one set, in out/maps/000001, linked from out/
    assert_clean(out, "preview.png", "summary.json")
    preview = np.asarray(Image.open(out / "preview.png"))
    assert preview.shape[0] > 200 and (preview < 250).any(axis=-1).mean() > 0.2  # a picture, not a blank page
    assert summary["preview_title"].endswith(f"5 cm voxels, observed mesh of {mesh.num_triangles} triangles")
    # seen from above along gravity (the cameras' mean up is 24 degrees off it): the dataset's gravity direction,
    # which is itself 2.2 degrees off the kitchen floor's normal (the estimate is within 1 degree of that)
    gravity = np.loadtxt(SEVEN_SCENES / "gravity-direction.txt")
    up = np.array(summary["preview_up"])
    assert np.degrees(np.arccos(-gravity @ up / np.linalg.norm(gravity))) < 3.0


def test_maps_a_bag_with_labels_without_dds(tmp_path):
    scene = write_synthetic_scene(tmp_path / "room", seed=5, num_frames=12, camera=DEFAULT_CAMERA.scaled(320, 240))
    bag = tmp_path / "room_bag"
    assert semantic_recon("make-bag", scene, bag, "--storage", "sqlite3").returncode == 0
    out = tmp_path / "out"
    result = semantic_recon("map", "--bag", bag, "--out", out)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_integrated"] == 12 and summary["frames_with_labels"] == 12
    assert summary["labeled_vertex_fraction"] > 0.95
    # completed by the installed default model (4 cm voxels, the default): the map is the observed surface, the
    # network's confident additions are a mesh of their own, with the confidence per vertex
    assert Path(summary["checkpoint"]).name == "default.pt" and summary["completion_chunks"] > 0
    additions, _ = read_semantic_ply(out / "mesh_additions.ply")
    assert additions.num_triangles == summary["additions_triangles"] > 0
    assert (additions.labels >= 0).mean() > 0.95
    assert (additions.surface_confidence >= 0.6 - 1e-6).mean() > 0.9  # the seam to the observed surface: 1
    rgb, _ = read_semantic_ply(out / "mesh_rgb.ply")
    assert rgb.num_triangles == summary["triangles"] and rgb.surface_confidence is None
    assert_consistent(out, load_class_set())  # mesh_rgb.ply and mesh_semantic.ply: the observed surface
    # the preview pictures the map (the observed mesh); its title counts the additions
    assert summary["preview_title"].endswith(f"observed mesh of {summary['triangles']} triangles "
                                             f"({additions.num_triangles} more added by default.pt: "
                                             "mesh_additions.ply)")
    assert np.degrees(np.arccos(summary["preview_up"][2])) < 0.5  # synthetic rooms are z up


@pytest.mark.parametrize("args, message", [
    (["map", "/nonexistent/folder", "--out", "x"], "not found"),
    (["map", SEVEN_SCENES, "--bag", SEVEN_SCENES, "--out", "x"], "not both or neither"),
    (["map", SEVEN_SCENES, "--out", "x", "--stride", "0"], "--stride"),
    (["map", SEVEN_SCENES, "--out", "x", "--voxel-size", "-1"], "voxel_size"),
    (["map", SEVEN_SCENES, "--out", "x", "--start", "5000"], "no frames"),
    (["map", SEVEN_SCENES, "--out", "x", "--checkpoint", "/nonexistent/net.pt"], "checkpoint not found"),
])
def test_bad_arguments_fail_with_a_clear_message(tmp_path, args, message):
    result = semantic_recon(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_completes_the_map_with_a_checkpoint(tmp_path):
    import torch

    from semantic_recon_ros.core.classes import load_class_set
    from semantic_recon_ros.core.models import S4RNet, S4RNetConfig, save_checkpoint

    torch.manual_seed(0)
    network = S4RNet(S4RNetConfig(num_classes=load_class_set().num_classes, base_width=2, fusion_blocks=0))
    checkpoint = tmp_path / "net.pt"
    save_checkpoint(checkpoint, network, load_class_set().names, voxel_size=0.08, truncation=0.32)
    params = tmp_path / "params.yaml"
    params.write_text("volume: {voxel_size: 0.08}\ncompletion: {chunk_size: 32, chunk_margin: 8}\n")
    out = tmp_path / "out"
    result = semantic_recon("map", SEVEN_SCENES, "--out", out, "--stride", "60", "--params-file", params,
                            "--checkpoint", checkpoint)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["completion_chunks"] > 0 and summary["checkpoint"] == str(checkpoint)
    additions, _ = read_semantic_ply(out / "mesh_additions.ply")  # uncalibrated: within 3 voxels of observations
    assert additions.num_triangles == summary["additions_triangles"] > 0
    mesh, _ = read_semantic_ply(out / "mesh_rgb.ply")
    assert (mesh.labels >= 0).mean() > 0.5  # 7-Scenes has no 2D labels: the network labels the map
    # a checkpoint made for another voxel size is refused with a clear message
    result = semantic_recon("map", SEVEN_SCENES, "--out", out, "--stride", "60", "--checkpoint", checkpoint)
    assert result.returncode == 2 and "voxel size" in result.stderr and "Traceback" not in result.stderr
    assert "mapping" not in result.stderr  # refused before fusing a single frame


def test_fuses_the_default_segmenters_labels(tmp_path):
    """--labels segmenter without --segmenter: the installed DeepLabV3/ADE20K model labels the 7-Scenes kitchen."""
    out = tmp_path / "kitchen"
    result = semantic_recon("map", SEVEN_SCENES, "--out", out, "--stride", "100", "--voxel-size", "0.05",
                            "--checkpoint", "", "--labels", "segmenter")
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_integrated"] == summary["frames_with_labels"] == 6
    assert summary["labeled_vertex_fraction"] > 0.8
    mesh, names = read_semantic_ply(out / "mesh_semantic.ply")
    share = {name: float((mesh.labels == i).mean()) for i, name in enumerate(names)}
    assert share["wall"] > 0.2 and share["floor"] > 0.05 and share["counter"] > 0.02
    # an unsupported model file is refused before mapping, naming the file
    weights = tmp_path / "net.h5"
    weights.write_bytes(b"\0")
    result = semantic_recon("map", SEVEN_SCENES, "--out", out, "--labels", "segmenter", "--segmenter", weights)
    assert result.returncode == 2 and "net.h5: unsupported segmenter file type" in result.stderr
    assert "Traceback" not in result.stderr
