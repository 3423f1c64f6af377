"""`semantic-recon map --rgb-only` as a user runs it: a synthetic room mapped from color and poses alone by stereo
(the default geometry; the map lies on the room's true surface) and by an Atlas checkpoint (an untrained one: no
trained Atlas model is shipped), the same output files as RGB-D mapping, and wrong options and checkpoints of the
wrong kind refused with the reason."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from semantic_recon_ros.cli import main as semantic_recon_main
from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.completion import DEFAULT_CHECKPOINT_FILE, DEFAULT_RGB_ONLY_CHECKPOINT_FILE
from semantic_recon_ros.core.map import load_volume
from semantic_recon_ros.core.meshing import extract_mesh
from semantic_recon_ros.core.models import load_checkpoint
from semantic_recon_ros.core.ply import read_semantic_ply
from semantic_recon_ros.core.resources import share_file
from semantic_recon_ros.core.synthetic import DEFAULT_CAMERA, load_ground_truth, union_sdf, write_synthetic_scene

from support.atlas_checkpoints import untrained_atlas_checkpoint
from support.saved_maps import assert_clean

CLASSES = load_class_set()
ROOM_SEED = 901  # a held-out test room
NUM_FRAMES = 12


def semantic_recon(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "semantic_recon_ros.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def test_a_room_mapped_by_stereo_lies_on_its_true_surface(tmp_path):
    # the first 30 of 60 frames around the room: the camera moves 16-20 cm between frames
    scene = write_synthetic_scene(tmp_path / "room", seed=7, num_frames=60, camera=DEFAULT_CAMERA.scaled(160, 120))
    out = tmp_path / "out"
    result = semantic_recon("map", scene, "--rgb-only", "--max-frames", "30", "--checkpoint", "", "--out", out)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rgb_only_geometry"] == "stereo"
    assert 1 <= summary["frames_without_stereo_source"] < 10  # until the camera has moved stereo.min_baseline
    assert summary["frames_integrated"] == 30 - summary["frames_without_stereo_source"]
    assert_clean(out, "preview.png", "summary.json")
    mesh, names = read_semantic_ply(out / "mesh_rgb.ply")
    assert names == list(CLASSES.names) and mesh.num_triangles == summary["triangles"] > 1000
    distance = np.abs(union_sdf(mesh.vertices.astype(np.float64), load_ground_truth(scene).scene.box_arrays)[0])
    print(f"stereo map: {mesh.num_triangles} triangles, distance to the true surface median "
          f"{np.median(distance) * 1000:.1f} mm, p75 {np.percentile(distance, 75) * 1000:.1f} mm")
    assert np.median(distance) < 0.04 and np.percentile(distance, 75) < 0.08
    assert summary["preview_title"].endswith(f"RGB-only map of stereo depth: {mesh.num_triangles} triangles")


def test_a_room_mapped_from_color_alone_by_atlas_gives_the_files_of_rgb_d_mapping(tmp_path):
    scene = write_synthetic_scene(tmp_path / "room", seed=ROOM_SEED, num_frames=NUM_FRAMES,
                                  camera=DEFAULT_CAMERA.scaled(160, 120))
    checkpoint = untrained_atlas_checkpoint(tmp_path / "atlas.pt")
    out = tmp_path / "out"
    result = semantic_recon("map", scene, "--rgb-only", "--rgb-only-geometry", "atlas", "--checkpoint", checkpoint,
                            "--out", out)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "reconstructing" in result.stderr  # the progress bars
    summary = json.loads((out / "summary.json").read_text())
    _, info = load_checkpoint(checkpoint, "cpu")
    assert summary["checkpoint"] == str(checkpoint) and summary["feature_source"] == "color"
    assert summary["frames_integrated"] == NUM_FRAMES and summary["completion_chunks"] > 0
    assert summary["rgb_only_max_range"] == 3.0  # the parameter file's rgb_only_max_range

    assert_clean(out, "preview.png", "summary.json")  # one saved set, without mesh_additions.ply
    assert not (out / "mesh_additions.ply").exists()
    mesh, names = read_semantic_ply(out / "mesh_rgb.ply")
    volume = load_volume(out / "volume.pt", "cpu")
    assert names == list(CLASSES.names) and mesh.num_triangles == summary["triangles"]
    assert mesh.num_triangles == extract_mesh(volume, source="completed").num_triangles
    assert volume.config.feature_dim == info.config.volume_channels
    predicted = volume.grid.values("pred_weight") > 0
    assert bool(predicted.any()) and bool((volume.grid.values("feature_weight")[predicted] > 0).all())
    assert summary["preview_title"].endswith(f"RGB-only reconstruction by {checkpoint.name}: "
                                             f"{mesh.num_triangles} triangles")


def test_checkpoints_of_the_wrong_kind_are_refused(tmp_path, capsys):
    """The command's refusals, in this process (the same entry point as the console script, which the other tests
    run as a subprocess)."""
    scene = write_synthetic_scene(tmp_path / "room", seed=ROOM_SEED, num_frames=2,
                                  camera=DEFAULT_CAMERA.scaled(160, 120))
    atlas = untrained_atlas_checkpoint(tmp_path / "atlas.pt")
    atlas_only = ("--rgb-only", "--rgb-only-geometry", "atlas")
    refusals = {
        (*atlas_only, "--checkpoint", share_file(DEFAULT_CHECKPOINT_FILE)):
            "model 's4r' completes a depth-fused RGB-D map; RGB-only mapping needs an Atlas checkpoint",
        (*atlas_only, "--checkpoint", ""): "RGB-only mapping needs an Atlas checkpoint",
        ("--checkpoint", atlas): "model 'atlas' reconstructs from images alone",
        ("--rgb-only", "--checkpoint", atlas): "model 'atlas' reconstructs from images alone",  # stereo: an S4R one
        (*atlas_only, "--checkpoint", atlas, "--voxel-size", "0.05"):
            "trained for voxel size 0.04 m, the map uses 0.05 m",
        atlas_only: f"the default RGB-only model is not installed ({DEFAULT_RGB_ONLY_CHECKPOINT_FILE} not found",
        (*atlas_only, "--labels", "segmenter"): "--labels segmenter applies to maps with depth",
        ("--max-range", "2.0"): "--max-range applies to --rgb-only with atlas geometry",
        ("--rgb-only", "--max-range", "2.0"): "--max-range applies to --rgb-only with atlas geometry",
        ("--color-focal", "500"): "--color-focal applies to --rgb-only with stereo geometry",
        ("--rgb-only-geometry", "stereo"): "--rgb-only-geometry applies to --rgb-only",
        ("--rgb-only", "--rgb-only-geometry", "lidar"): "invalid choice: 'lidar'",
    }
    for index, (options, reason) in enumerate(refusals.items()):
        try:
            code = semantic_recon_main(["map", str(scene), "--out", str(tmp_path / f"out{index}"), *map(str, options)])
        except SystemExit as exit_:  # argparse's refusals
            code = exit_.code
        stderr = capsys.readouterr().err
        assert code == 2 and reason in stderr, (options, stderr)
        assert not (tmp_path / f"out{index}").exists()  # refused before anything is written
