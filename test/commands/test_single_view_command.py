"""`semantic-recon single-view` with the shipped checkpoint (models/single_view_default.pt) on rendered frames of
room 901, one of the held-out rooms no model trains on: the mesh, the dense prediction and the preview it writes,
the frustum's surface where the room's is, and the clear refusals (exit code 2, one message, no traceback), all
called in-process through the console script's entry point."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from support.paths import REPO

from semantic_recon_ros.cli import main
from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.datasets import open_sequence
from semantic_recon_ros.core.ply import read_semantic_ply
from semantic_recon_ros.core.synthetic import DEFAULT_CAMERA, write_synthetic_scene

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CAMERA = DEFAULT_CAMERA.scaled(160, 120)  # the camera the shipped checkpoint was trained for
CLASSES = load_class_set().names


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    """Frame 0 of room 901 at 160x120, its color written as a PNG, and the same view at 320x240."""
    root = tmp_path_factory.mktemp("single_view_command")
    small = open_sequence(write_synthetic_scene(root / "small", seed=901, num_frames=1, camera=CAMERA))[0]
    large = open_sequence(write_synthetic_scene(root / "large", seed=901, num_frames=1,
                                                camera=DEFAULT_CAMERA.scaled(320, 240)))[0]
    paths = {}
    for name, image in (("small", small.color), ("large", large.color)):
        paths[name] = root / f"{name}.png"
        Image.fromarray(image).save(paths[name])
    return small, paths, root


@pytest.fixture(scope="module")
def result(frame):
    small, paths, root = frame
    out = root / "out"
    assert main(["single-view", str(paths["small"]), "--out", str(out)]) == 0
    return out


def test_writes_a_labeled_mesh_in_front_of_the_camera_inside_its_frustum(result, capsys):
    mesh, names = read_semantic_ply(result / "mesh_semantic.ply")
    assert names == list(CLASSES)
    assert mesh.num_triangles > 1000
    z = mesh.vertices[:, 2]
    assert z.min() >= 0.3 and z.max() <= 5.0
    uv, _ = CAMERA.project(torch.as_tensor(mesh.vertices, dtype=torch.float64))
    assert (uv[:, 0] >= -0.5).all() and (uv[:, 0] <= CAMERA.width - 0.5).all()
    assert (uv[:, 1] >= -0.5).all() and (uv[:, 1] <= CAMERA.height - 0.5).all()
    assert set(np.unique(mesh.labels)) <= set(range(len(CLASSES)))
    assert {CLASSES.index("wall"), CLASSES.index("floor")} <= set(np.unique(mesh.labels))
    summary = json.loads((result / "summary.json").read_text())
    assert summary["triangles"] == mesh.num_triangles and summary["network_input"] == [160, 120]
    preview = Image.open(result / "preview.png")
    assert preview.width > 2 * preview.height
    assert len(np.unique(np.asarray(preview).reshape(-1, 3), axis=0)) > 50


def test_the_dense_prediction_finds_the_visible_surface_at_the_rendered_depth(frame, result):
    small, _, _ = frame
    prediction = np.load(result / "prediction.npz")
    tsdf, labels, centers = prediction["tsdf"], prediction["labels"], prediction["cell_centers"]
    assert tsdf.shape == (64, 48, 64) and labels.shape == tsdf.shape and centers.shape == (64, 48, 64, 3)
    assert ((labels >= 0) == (np.abs(tsdf) < 1)).all() and labels.max() < len(CLASSES)
    assert list(prediction["class_names"]) == list(CLASSES)
    # along each cell column's ray, the first solid cell against the rendered depth at the column's pixel
    u = np.round(centers[0, ..., 0] / centers[0, ..., 2] * CAMERA.fx + CAMERA.cx).astype(int)
    v = np.round(centers[0, ..., 1] / centers[0, ..., 2] * CAMERA.fy + CAMERA.cy).astype(int)
    depth = small.depth[v, u]
    solid = tsdf < 0
    hit = solid.any(axis=0)
    first = np.take_along_axis(centers[..., 2], solid.argmax(axis=0)[None], axis=0)[0]
    error = np.median(np.abs(first - depth)[hit & (depth > 0)])
    constant = np.median(np.abs(depth - np.median(depth)))  # the best single depth for every ray
    # measured with the shipped checkpoint: 81 % of the rays meet a predicted solid, at a median 0.44 m from the
    # rendered depth (cells are 7.3 cm deep), where one depth for all rays is off by 0.80 m (the synthetic-only model
    # before it: 50 % of the rays, 0.24 m)
    assert hit.mean() > 0.4 and error < 0.6 * constant, (hit.mean(), error, constant)


def first_solid_depth(prediction: np.lib.npyio.NpzFile, depth: np.ndarray) -> tuple[float, float]:
    """Along each cell column's ray of a written prediction: the share of rays meeting a solid cell, and the median
    distance (m) of the first solid cell from ``depth`` (the rendered depth at the column's pixel) where they do."""
    tsdf, centers = prediction["tsdf"], prediction["cell_centers"]
    u = np.round(centers[0, ..., 0] / centers[0, ..., 2] * CAMERA.fx + CAMERA.cx).astype(int)
    v = np.round(centers[0, ..., 1] / centers[0, ..., 2] * CAMERA.fy + CAMERA.cy).astype(int)
    truth = depth[v, u]
    solid = tsdf < 0
    hit = solid.any(axis=0)
    first = np.take_along_axis(centers[..., 2], solid.argmax(axis=0)[None], axis=0)[0]
    return float(hit.mean()), float(np.median(np.abs(first - truth)[hit & (truth > 0)]))


def test_the_rgbd_model_reads_the_depth_image_and_puts_the_surface_where_it_is(frame, result, tmp_path, capsys):
    small, paths, root = frame
    depth_png = root / "depth.png"
    Image.fromarray(np.round(np.nan_to_num(small.depth) * 1000).astype(np.uint16)).save(depth_png)
    out = tmp_path / "rgbd"
    assert main(["single-view", str(paths["small"]), "--depth", str(depth_png), "--checkpoint", "rgbd",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["depth_input"] and not json.loads((result / "summary.json").read_text())["depth_input"]
    hit, error = first_solid_depth(np.load(out / "prediction.npz"), small.depth)
    _, image_error = first_solid_depth(np.load(result / "prediction.npz"), small.depth)
    # cells are 7.3 cm deep: with the depth, the first solid cell lies about where the rendered depth puts it
    # (measured with the shipped model: 81 % of the rays meet a solid, at a median 5.7 cm from the depth; from the
    # image alone 0.44 m; the previous RGB-D model, which also filled space behind walls: 87 %, 4.5 cm)
    assert hit > 0.75 and error < 0.1 and error < 0.3 * image_error, (hit, error, image_error)
    capsys.readouterr()
    for arguments, message in (([], "reads depth as well as color: give the image's --depth"),
                               (["--depth", str(paths["small"])], "16-bit"),
                               (["--depth", str(depth_png), "--depth-scale", "0"], "--depth-scale must be positive")):
        assert main(["single-view", str(paths["small"]), "--checkpoint", "rgbd", *arguments,
                     "--out", str(tmp_path / "refused")]) == 2
        error_text = capsys.readouterr().err
        assert re.search(message, error_text) and "Traceback" not in error_text, (message, error_text)


def test_a_larger_image_of_the_same_camera_is_resized(frame, tmp_path, capsys):
    _, paths, _ = frame
    assert main(["single-view", str(paths["large"]), "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["image_size"] == [320, 240] and summary["network_input"] == [160, 120]
    assert summary["intrinsics"] == [round(v, 4) for v in (CAMERA.fx, CAMERA.fy, CAMERA.cx, CAMERA.cy)]


def test_an_image_of_another_camera_is_resampled_to_the_trained_view(frame, tmp_path, capsys):
    """A 7-Scenes-like camera (focal length 11 % longer, 640x480): resampled, and the summary says how much of the
    trained view it covers."""
    _, paths, _ = frame
    large = Image.open(paths["large"]).resize((640, 480))
    image = tmp_path / "kinect.png"
    large.save(image)
    assert main(["single-view", str(image), "--intrinsics", "583", "583", "320", "240", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["resampled"] and 0.75 < summary["coverage"] < 0.85 and summary["network_input"] == [160, 120]


def test_refusals_are_one_clear_message_and_exit_code_2(frame, tmp_path, capsys):
    _, paths, _ = frame
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image" * 10)
    square = tmp_path / "square.png"
    Image.new("RGB", (160, 160)).save(square)
    image = str(paths["small"])
    cases = [
        ([str(tmp_path / "missing.png")], "color file not found"),
        ([str(garbage)], "cannot read"),
        ([str(square)], "160x160; the network was trained for 160x120 images .*give its --intrinsics"),
        ([image, "--intrinsics", "200", "200", "79.5", "59.5"], "covers 4[0-9]% of the view the network was trained"),
        ([image, "--intrinsics", "131.25", "131.25", "319.5", "239.5"], "do not fit the 160x120 image"),
        ([image, "--intrinsics", "0", "131.25", "79.5", "59.5"], "focal lengths must be finite and positive"),
        ([image, "--checkpoint", str(REPO / "models" / "default.pt")],
         "a 's4r' checkpoint .* not a 'single_view' one"),
        ([image, "--checkpoint", str(tmp_path / "none.pt")], "checkpoint not found"),
    ]
    for arguments, message in cases:
        assert main(["single-view", *arguments, "--out", str(tmp_path / "out")]) == 2, arguments
        error = capsys.readouterr().err.strip()
        assert error.startswith("semantic-recon single-view: error:") and "Traceback" not in error, error
        assert len(error.splitlines()) == 1
        assert re.search(message, error), (message, error)
    assert not (tmp_path / "out").exists()
