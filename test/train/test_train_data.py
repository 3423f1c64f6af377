"""Training data: chunk extraction and its cache, view selection, 2D (pseudo-)labels, the Dataset.

Synthetic rooms give exact answers: which frames truly see a chunk (exact depth, exact surface), and the
ground-truth TSDF every chunk must carry.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from support.paths import REPO, SEGMENTER


from semantic_recon_ros.core.classes import load_class_set  # noqa: E402
from semantic_recon_ros.core.datasets import open_sequence  # noqa: E402
from semantic_recon_ros.core.datasets.rosbag_writer import RosbagWriter  # noqa: E402
from semantic_recon_ros.core.synthetic import (DEFAULT_CAMERA, ground_truth_grid, load_ground_truth,  # noqa: E402
                                               union_sdf, write_synthetic_scene)
from semantic_recon_ros.core.map import SemanticTSDFVolume  # noqa: E402
from semantic_recon_training.data.chunk_dataset import ChunkDataset, load_chunk, read_manifest  # noqa: E402
from semantic_recon_training.data.chunk_extraction import ChunkExtractionConfig, extract_chunks  # noqa: E402
from semantic_recon_training.data.chunk_grid import ChunkGrid  # noqa: E402
from semantic_recon_training.data.pseudo_labels import (GroundTruthLabels, SegmenterLabels,  # noqa: E402
                                                        deeplab_labels, files_hash)
from semantic_recon_training.data.view_images import reduced_view  # noqa: E402

CLASSES = load_class_set()
CONFIG = ChunkExtractionConfig(voxel_size=0.08, chunk_dims=(32, 32, 32), chunk_stride=(16, 16, 16), views_per_chunk=3,
                               view_downscale=1, min_surface_voxels=200, seed=0)


pytestmark = pytest.mark.usefixtures("one_torch_thread", "shared_data")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_data")
    return write_synthetic_scene(root / "room", seed=4, num_frames=20, camera=DEFAULT_CAMERA.scaled(160, 120),
                                 gt_voxel_size=0.08)


@pytest.fixture(scope="module")
def cache(scene):
    out = scene.parent / "cache_seed0"
    extract_chunks(scene, out, GroundTruthLabels(CLASSES.num_classes), CONFIG, progress=False)
    return out


EXTRACT_SCRIPT = """
import json, sys
import torch
sys.path.insert(0, sys.argv[1])
from semantic_recon_training.data.chunk_extraction import ChunkExtractionConfig, extract_chunks
from semantic_recon_training.data.pseudo_labels import GroundTruthLabels
torch.set_num_threads(1)
config = ChunkExtractionConfig(**json.loads(sys.argv[4]))
extract_chunks(sys.argv[2], sys.argv[3], GroundTruthLabels(int(sys.argv[5])), config, progress=False)
"""


def test_same_seed_gives_identical_files_and_another_seed_differs(scene, cache):
    again = scene.parent / "cache_seed0_again"  # written by another process: nothing may depend on it
    subprocess.run([sys.executable, "-c", EXTRACT_SCRIPT, str(REPO), str(scene), str(again),
                    json.dumps(dataclasses.asdict(CONFIG)), str(CLASSES.num_classes)], check=True)
    files = sorted(p.name for p in cache.iterdir())
    assert files == sorted(p.name for p in again.iterdir()) and len(files) > 5
    for name in files:
        assert (cache / name).read_bytes() == (again / name).read_bytes(), name

    other = scene.parent / "cache_seed1"
    seed1 = ChunkExtractionConfig(**{**vars(CONFIG), "seed": 1})
    extract_chunks(scene, other, GroundTruthLabels(CLASSES.num_classes), seed1, progress=False)
    first, second = read_manifest(cache), read_manifest(other)
    assert first["input_frames"] != second["input_frames"]
    a = load_chunk(cache / first["chunks"][0]["file"])
    match = [e for e in second["chunks"] if e["chunk"] == first["chunks"][0]["chunk"]]
    b = load_chunk(other / match[0]["file"])
    assert torch.equal(a["target_tsdf"], b["target_tsdf"])  # all frames either way
    assert not torch.equal(a["tsdf"], b["tsdf"])  # a different half of the frames


def test_manifest_records_source_seed_config_and_frames(scene, cache):
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["source"] == str(scene.resolve()) and manifest["seed"] == 0
    assert manifest["config"]["chunk_dims"] == [32, 32, 32] and manifest["config"]["views_per_chunk"] == 3
    assert manifest["label_source"] == "ground_truth" and manifest["has_ground_truth"]
    assert manifest["num_frames"] == 20 and len(manifest["input_frames"]) == 10
    assert manifest["input_frames"] == sorted(set(manifest["input_frames"]))
    assert manifest["class_names"] == list(CLASSES.names)
    for entry in manifest["chunks"]:
        assert (cache / entry["file"]).is_file()
        assert len(entry["views"]) == 3 and entry["overlaps"] == sorted(entry["overlaps"], reverse=True)
        assert min(entry["overlaps"]) >= 0.05 and entry["surface_voxels"] >= 200
    with pytest.raises(FileExistsError, match="already holds a chunk cache"):
        extract_chunks(scene, cache, GroundTruthLabels(CLASSES.num_classes), CONFIG, progress=False)


def test_chunks_hold_the_fusion_ground_truth_and_views_they_claim(scene, cache):
    manifest = read_manifest(cache)
    frames = open_sequence(scene)
    # an independent fusion of the manifest's input frames, read voxel by voxel
    volume = SemanticTSDFVolume(CONFIG.volume_config(), CLASSES.names, "cpu")
    for index in manifest["input_frames"]:
        frame = frames[index]
        volume.integrate(frame.depth, frame.camera, frame.T_world_cam, color=frame.color, labels=frame.labels)
    gt = load_ground_truth(scene)
    grid = CONFIG.grid
    for entry in manifest["chunks"][:4]:
        chunk = load_chunk(cache / entry["file"])
        coords = grid.voxel_coords(torch.tensor(entry["chunk"]))
        values = volume.grid.read_voxels(coords)
        assert torch.equal(chunk["tsdf"].reshape(-1), values["tsdf"])
        assert torch.equal(chunk["observed"].reshape(-1), values["weight"] > 0)
        assert bool((chunk["observed"] <= chunk["target_observed"]).all())  # input frames are among all frames
        assert bool((chunk["tsdf"][~chunk["observed"]] == 1).all())
        # the input's fused 2D labels: the most voted class (ground-truth 2D labels here), -1 without votes
        votes = values["semantic"]
        expected = torch.where(votes.max(dim=1).values > 0, votes.argmax(dim=1), torch.full_like(votes[:, 0], -1))
        assert torch.equal(chunk["input_labels"].reshape(-1).long(), expected.long())
        assert bool((chunk["input_labels"][chunk["observed"][0]] >= 0).float().mean() > 0.5)
        # ground truth cropped from the stored grid equals the exact SDF evaluated on the chunk's voxels
        exact = ground_truth_grid(gt.scene, 0.08, 0.32, origin=np.array(entry["origin"]), shape=(32, 32, 32))
        np.testing.assert_allclose(chunk["gt_tsdf"][0].numpy(), exact.tsdf, atol=1e-5)
        differ = chunk["gt_labels"].numpy() != exact.labels  # only where two boxes are equally near (float ties)
        assert differ.mean() < 0.005
        # the views are the frames they name, with their ground-truth 2D labels
        for v, index in enumerate(chunk["view_frames"].tolist()):
            frame = frames[index]
            np.testing.assert_array_equal(chunk["view_depth"][v].numpy(), frame.depth)
            np.testing.assert_array_equal(chunk["view_color"][v].numpy(), frame.color)
            labels = np.where(frame.labels < CLASSES.num_classes, frame.labels, -1)
            np.testing.assert_array_equal(chunk["view_labels"][v].numpy(), labels)
            np.testing.assert_allclose(chunk["view_T_world_cam"][v].numpy(), frame.T_world_cam)
            assert bool(chunk["view_in_input"][v]) == (index in manifest["input_frames"])
        assert chunk["view_intrinsics"][0].tolist() == [frame.camera.fx, frame.camera.fy, frame.camera.cx,
                                                        frame.camera.cy]


def true_surface_samples(frame, scene_boxes, stride: int = 2) -> tuple[np.ndarray, int]:
    """World points of a frame's valid depth samples (every stride-th pixel) that lie on the true surface
    (within 2 cm), and the number of valid samples."""
    depth = frame.depth[::stride, ::stride]
    rays = frame.camera.pixel_rays("cpu", torch.float64)[::stride, ::stride].numpy()
    valid = depth > 0
    points = rays[valid] * depth[valid][:, None]
    points = points @ frame.T_world_cam[:3, :3].T + frame.T_world_cam[:3, 3]
    on_surface = np.abs(union_sdf(points, scene_boxes)[0]) < 0.02
    return points[on_surface], int(valid.sum())


def true_overlap(samples: tuple[np.ndarray, int], grid: ChunkGrid, chunk: list[int]) -> float:
    """Fraction of a frame's valid samples on the true surface inside the chunk's box of voxel centres."""
    points, valid = samples
    lower = np.array(chunk) * np.array(grid.stride) * grid.voxel_size
    upper = lower + (np.array(grid.dims) - 1) * grid.voxel_size
    return float(((points >= lower) & (points <= upper)).all(axis=1).sum() / max(valid, 1))


def test_view_selection_picks_the_views_that_see_the_chunk(scene, cache):
    manifest = read_manifest(cache)
    frames = open_sequence(scene)
    boxes = load_ground_truth(scene).scene.box_arrays
    samples = [true_surface_samples(frames[i], boxes) for i in range(len(frames))]
    for entry in manifest["chunks"]:
        truth = np.array([true_overlap(s, CONFIG.grid, entry["chunk"]) for s in samples])
        chosen = entry["views"]
        assert (truth[chosen] >= 0.05).all()  # every selected view really sees the chunk
        # close to the true top 3: at 8 cm voxels the fused surface misses some samples (trilinear error > 2 cm)
        assert truth[chosen].sum() >= 0.8 * np.sort(truth)[::-1][:3].sum()
        measured = np.array(entry["overlaps"])
        # never counts much more than the truth (up to depths beyond max_depth leaving the denominator)
        assert (measured <= 1.15 * truth[chosen] + 0.005).all() and (measured >= 0.4 * truth[chosen]).all()


def test_dataset_reads_the_cache_into_training_samples(cache):
    dataset = ChunkDataset(cache)
    manifest = read_manifest(cache)
    assert len(dataset) == len(manifest["chunks"])
    raw = torch.load(cache / manifest["chunks"][0]["file"], weights_only=True)
    assert raw["format"] == "semantic_recon_ros/train-chunk"
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2)))
    assert batch["tsdf"].shape == (2, 1, 32, 32, 32) and batch["tsdf"].dtype == torch.float32
    assert batch["observed"].dtype == torch.bool and batch["color"].shape == (2, 3, 32, 32, 32)
    assert 0 <= float(batch["color"].min()) and float(batch["color"].max()) <= 1
    assert batch["view_depth"].shape == (2, 3, 120, 160) and batch["view_color"].shape == (2, 3, 120, 160, 3)
    assert batch["view_labels"].dtype == torch.int64 and int(batch["view_labels"].min()) >= -1
    assert batch["view_T_world_cam"].shape == (2, 3, 4, 4) and batch["view_intrinsics"].shape == (2, 3, 4)
    assert batch["has_target"].all() and batch["has_gt"].all()
    assert batch["gt_labels"].shape == (2, 32, 32, 32) and batch["voxel_size"].tolist() == [0.08, 0.08]
    assert torch.equal(batch["color"][0], raw["color"].float() / 255)
    assert batch["input_labels"].shape == (2, 32, 32, 32) and batch["input_labels"].dtype == torch.int64
    assert torch.equal(batch["input_labels"][0], raw["input_labels"].long())


def test_caches_with_different_settings_do_not_mix(scene, cache, tmp_path):
    other = tmp_path / "coarse"
    config = ChunkExtractionConfig(**{**vars(CONFIG), "views_per_chunk": 2, "max_chunks": 1})
    extract_chunks(scene, other, GroundTruthLabels(CLASSES.num_classes), config, progress=False)
    assert len(ChunkDataset(other)) == 1
    with pytest.raises(ValueError, match="views_per_chunk"):
        ChunkDataset([cache, other])


def test_a_ros2_bag_gives_the_same_chunks_as_its_folder(scene, cache, tmp_path):
    bag = tmp_path / "bag"
    with RosbagWriter(bag) as writer:
        for frame in open_sequence(scene):
            writer.write(frame)
    config = ChunkExtractionConfig(**{**vars(CONFIG), "max_chunks": 2, "ground_truth": False})
    out = tmp_path / "from_bag"
    extract_chunks(bag, out, GroundTruthLabels(CLASSES.num_classes), config, progress=False)
    manifest = read_manifest(out)
    assert manifest["reader"] == "RosbagSequence" and not manifest["has_ground_truth"]
    folder_chunks = {tuple(e["chunk"]): e for e in read_manifest(cache)["chunks"]}
    for entry in manifest["chunks"]:
        from_bag = load_chunk(out / entry["file"])
        assert "gt_tsdf" not in from_bag
        from_folder = load_chunk(cache / folder_chunks[tuple(entry["chunk"])]["file"])
        assert entry["views"] == folder_chunks[tuple(entry["chunk"])]["views"]
        for key in ("tsdf", "target_tsdf", "view_depth", "view_T_world_cam"):
            torch.testing.assert_close(from_bag[key], from_folder[key], atol=1e-4, rtol=0)
        assert torch.equal(from_bag["view_labels"], from_folder["view_labels"])


def test_segmenter_labels_are_cached_per_model_sequence_and_frame(scene, tmp_path):
    frame = open_sequence(scene)[3]
    source = deeplab_labels(SEGMENTER, CLASSES.names, tmp_path / "labels")
    labels = source.labels("room-key", 3, frame)
    assert labels.shape == (120, 160) and labels.dtype == np.int64
    assert labels.min() >= -1 and labels.max() < CLASSES.num_classes and (labels >= 0).mean() > 0.5
    path = source.cache_path("room-key", 3)
    assert path.is_file() and source.model_hash[:16] in str(path) and "room-key" in str(path)
    # the cached file is what a second call returns (marked here to tell it from a fresh prediction)
    marked = np.full((120, 160), 7, np.int16)
    np.savez_compressed(path, labels=marked)
    np.testing.assert_array_equal(source.labels("room-key", 3, frame), marked)
    # another model (hash) or frame misses the cache
    other = SegmenterLabels(source.segmenter, "f" * 64, tmp_path / "labels")
    np.testing.assert_array_equal(other.labels("room-key", 3, frame), labels)
    assert other.cache_path("room-key", 3) != path and source.cache_path("room-key", 4) != path
    # the hash covers the model files
    assert files_hash([SEGMENTER / "labels.txt"]) != files_hash([SEGMENTER / "model.tflite"])
    with pytest.raises(FileNotFoundError, match="missing"):
        files_hash([tmp_path / "missing.tflite"])


def test_ground_truth_labels_require_labeled_frames(scene):
    frame = open_sequence(scene)[0]
    source = GroundTruthLabels(CLASSES.num_classes)
    assert source.labels("k", 0, frame).max() < CLASSES.num_classes
    frame.labels = None
    with pytest.raises(ValueError, match="no ground-truth labels"):
        source.labels("k", 0, frame)


def test_reduced_views_keep_the_geometry_of_the_pixels_they_pick(seven_scenes):
    frame = seven_scenes[0]
    view = reduced_view(0, frame, 4)
    assert view.depth.shape == (120, 160) and view.camera.shape == (120, 160)
    rows, cols = np.arange(120) * 4 + 2, np.arange(160) * 4 + 2
    np.testing.assert_array_equal(view.depth, np.where(frame.depth[np.ix_(rows, cols)] > 0,
                                                       frame.depth[np.ix_(rows, cols)], 0))
    np.testing.assert_array_equal(view.color, frame.color[np.ix_(rows, cols)])
    # a reduced pixel's ray is the ray of the full-resolution pixel it was picked from
    small = view.camera.pixel_rays("cpu", torch.float64)
    full = frame.camera.pixel_rays("cpu", torch.float64)[rows][:, cols]
    torch.testing.assert_close(small, full, rtol=0, atol=1e-12)


def test_bad_configs_and_sources_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="stride"):
        ChunkExtractionConfig(chunk_dims=(32, 32, 32), chunk_stride=(48, 16, 16))
    with pytest.raises(ValueError, match="input_fraction"):
        ChunkExtractionConfig(input_fraction=0.0)
    with pytest.raises(FileNotFoundError):
        extract_chunks(tmp_path / "nowhere", tmp_path / "out", GroundTruthLabels(3), progress=False)
    with pytest.raises(FileNotFoundError, match="manifest"):
        ChunkDataset(tmp_path)
