"""Behaviour of the sparse volume: bad inputs, save/load, memory bound, adaptation, semantics, features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semantic_recon_ros.core.camera import PinholeCamera
from semantic_recon_ros.core.meshing import extract_mesh
from semantic_recon_ros.core.map import SemanticTSDFVolume, load_volume, save_volume, volume_state
from semantic_recon_ros.core.config.volume import VolumeConfig

from support.frames import downscale

CLASSES = ["wall", "floor", "chair"]
CAMERA = PinholeCamera(100.0, 100.0, 39.5, 29.5, 80, 60)


def wall_frame(distance: float) -> np.ndarray:
    """Depth of a fronto-parallel wall at ``distance`` metres."""
    return np.full(CAMERA.shape, distance, dtype=np.float32)


def snapshot(volume: SemanticTSDFVolume) -> dict:
    state = volume_state(volume)
    return {**state, "layers": {name: values.clone() for name, values in state["layers"].items()}}


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if key == "layers":
            assert a[key].keys() == b[key].keys()
            for name in a[key]:
                assert torch.equal(a[key][name], b[key][name]), name
        elif isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


@pytest.fixture
def volume():
    vol = SemanticTSDFVolume(VolumeConfig(voxel_size=0.05), CLASSES, "cpu")
    vol.integrate(wall_frame(1.0), CAMERA, np.eye(4), color=np.full((60, 80, 3), 200, np.uint8))
    return vol


@pytest.mark.parametrize("kwargs, message", [
    (dict(depth=np.ones((59, 80), np.float32)), "depth must be"),
    (dict(depth=np.ones((60, 80), np.uint16)), "float metres"),
    (dict(color=np.zeros((60, 81, 3), np.uint8)), "color must be"),
    (dict(color=np.zeros((60, 80, 3), np.float32)), "color must be"),
    (dict(labels=np.zeros((60, 80), np.float32)), "labels must be"),
    (dict(labels=np.zeros((30, 80), np.int32)), "labels must be"),
    (dict(class_probs=np.zeros((60, 80, 2), np.float32)), "class_probs must be"),
    (dict(class_probs=np.full((60, 80, 3), np.nan, np.float32)), "finite"),
    (dict(labels=np.zeros((60, 80), np.int32), class_probs=np.zeros((60, 80, 3), np.float32)), "either"),
    (dict(features=np.zeros((60, 80, 4), np.float32)), "feature_dim = 0"),
    (dict(T_world_cam=np.diag([2.0, 1.0, 1.0, 1.0])), "not a rigid"),
    (dict(T_world_cam=np.full((4, 4), np.nan)), "NaN"),
    (dict(T_world_cam=np.eye(3)), "4x4"),
])
def test_bad_input_raises_and_leaves_volume_untouched(volume, kwargs, message):
    before = snapshot(volume)
    args = dict(depth=wall_frame(0.9), camera=CAMERA, T_world_cam=np.eye(4)) | kwargs
    with pytest.raises(ValueError, match=message):
        volume.integrate(**args)
    assert_same_state(before, snapshot(volume))


def test_invalid_depth_values_are_ignored(volume):
    before = snapshot(volume)
    for bad in (0.0, np.nan, np.inf, -1.0, 0.05, 50.0):  # zero, NaN, inf, negative, below min, above max
        stats = volume.integrate(wall_frame(bad), CAMERA, np.eye(4))
        assert stats.valid_pixels == 0 and stats.voxels_updated == 0
    assert_same_state(before, snapshot(volume))
    # a frame half NaN / half valid updates only through the valid half
    depth = wall_frame(1.0)
    depth[:, :40] = np.nan
    stats = volume.integrate(depth, CAMERA, np.eye(4))
    assert stats.valid_pixels == 60 * 40 and stats.voxels_updated > 0


def test_wall_surface_position_and_color(volume):
    mesh = extract_mesh(volume)
    assert mesh.num_triangles > 100
    assert np.allclose(mesh.vertices[:, 2], 1.0, atol=0.005)  # flat wall at z = 1 m
    assert (mesh.colors == 200).all()
    assert (mesh.labels == -1).all()  # no labels fused


def test_save_load_round_trip_gives_identical_mesh(tmp_path, seven_scenes):
    config = VolumeConfig(voxel_size=0.05, feature_dim=2)
    vol = SemanticTSDFVolume(config, CLASSES, "cpu")
    rng = np.random.default_rng(1)
    for i in (0, 30, 60):
        f = downscale(seven_scenes[i], 4)
        vol.integrate(f.depth, f.camera, f.T_world_cam, color=f.color,
                      labels=rng.integers(0, 3, f.depth.shape),
                      features=rng.random((*f.depth.shape, 2)).astype(np.float32))
    path = save_volume(vol, tmp_path / "maps" / "map.pt")
    assert sorted(p.name for p in path.parent.iterdir()) == ["map.pt"]  # no temporary left behind
    loaded = load_volume(path, "cpu")
    assert loaded.config == config and loaded.class_names == tuple(CLASSES)
    assert_same_state(snapshot(vol), snapshot(loaded))
    a, b = extract_mesh(vol), extract_mesh(loaded)
    assert a.num_triangles > 1000
    for field in ("vertices", "triangles", "colors", "labels", "confidence"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field


def test_extra_layers_are_saved_and_loaded(tmp_path):
    vol = SemanticTSDFVolume(VolumeConfig(voxel_size=0.05), CLASSES, "cpu")
    vol.grid.add_layer("pred_tsdf", (vol.config.voxels_per_block,), 1.0)
    vol.integrate(wall_frame(1.0), CAMERA, np.eye(4))
    assert torch.all(vol.grid.layer("pred_tsdf")[vol.grid.slots] == 1.0)  # new blocks get the fill value
    vol.grid.layer("pred_tsdf")[vol.grid.slots[:3]] = -0.5
    loaded = load_volume(save_volume(vol, tmp_path / "map.pt"), "cpu")
    assert loaded.grid.layer_fill("pred_tsdf") == 1.0
    assert torch.equal(loaded.grid.layer("pred_tsdf")[loaded.grid.slots], vol.grid.layer("pred_tsdf")[vol.grid.slots])
    with pytest.raises(ValueError, match="exists"):
        vol.grid.add_layer("tsdf", (8,), 0.0)


def test_block_versions_mark_what_changed():
    vol = SemanticTSDFVolume(VolumeConfig(voxel_size=0.05), CLASSES, "cpu")
    vol.integrate(wall_frame(1.0), CAMERA, np.eye(4))
    first = vol.grid.slots.clone()
    # one change for the allocation, one for the observations
    assert vol.version == 2 and torch.all(vol.grid.block_versions(first) == 2)
    shifted = np.eye(4)
    shifted[0, 3] = 3.0  # look at a wall 3 m to the side: other blocks
    vol.integrate(wall_frame(1.0), CAMERA, shifted)
    assert vol.version == 4
    assert torch.all(vol.grid.block_versions(first) == 2)  # untouched blocks keep their version
    assert torch.equal(vol.grid.content_versions(), vol.grid.block_versions())
    assert int((vol.grid.block_versions() == 4).sum()) == vol.num_blocks - len(first)


def test_load_rejects_foreign_or_corrupt_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable volume"):
        load_volume(tmp_path / "junk.pt", "cpu")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a semantic_recon_ros volume"):
        load_volume(tmp_path / "other.pt", "cpu")
    with pytest.raises(FileNotFoundError):
        load_volume(tmp_path / "missing.pt", "cpu")


def test_memory_bound_drops_farthest_blocks(seven_scenes):
    config = VolumeConfig(voxel_size=0.04, max_blocks=150)
    vol = SemanticTSDFVolume(config, CLASSES, "cpu")
    dropped = refused = 0
    for i in range(0, 600, 60):
        f = downscale(seven_scenes[i], 4)
        stats = vol.integrate(f.depth, f.camera, f.T_world_cam)
        assert vol.num_blocks <= 150
        dropped += stats.blocks_dropped
        refused += stats.blocks_refused
        position = torch.tensor(f.T_world_cam[:3, 3], dtype=torch.float32)
        distances = (vol.block_centers(vol.grid.slots) - position).norm(dim=1)
        assert float(distances.max()) < 8.0
    assert dropped > 0
    assert vol.grid.capacity <= 150  # the pools never grew past the bound


def test_clearing_radius_keeps_only_nearby_blocks(seven_scenes):
    vol = SemanticTSDFVolume(VolumeConfig(voxel_size=0.04, clearing_radius=1.5), CLASSES, "cpu")
    f = downscale(seven_scenes[0], 4)
    stats = vol.integrate(f.depth, f.camera, f.T_world_cam)
    position = torch.tensor(f.T_world_cam[:3, 3], dtype=torch.float32)
    assert stats.blocks_dropped > 0
    assert float((vol.block_centers(vol.grid.slots) - position).norm(dim=1).max()) <= 1.5


def test_weight_cap_lets_the_map_adapt():
    def surface_after(max_weight: float) -> float:
        vol = SemanticTSDFVolume(VolumeConfig(voxel_size=0.02, max_weight=max_weight), CLASSES, "cpu")
        for _ in range(50):
            vol.integrate(wall_frame(1.0), CAMERA, np.eye(4))
        for _ in range(10):  # the wall moves 6 cm closer
            vol.integrate(wall_frame(0.94), CAMERA, np.eye(4))
        return float(np.median(extract_mesh(vol).vertices[:, 2]))

    assert abs(surface_after(max_weight=5.0) - 0.94) < 0.01  # adapted
    assert surface_after(max_weight=1000.0) > 0.98  # an uncapped map barely moves


def test_labels_and_probabilities_vote():
    vol = SemanticTSDFVolume(VolumeConfig(voxel_size=0.05), CLASSES, "cpu")
    labels = np.full(CAMERA.shape, 2, np.int32)
    labels[:, :10] = 99  # out of range = unlabeled
    for _ in range(3):
        vol.integrate(wall_frame(1.0), CAMERA, np.eye(4), labels=labels)
    probs = np.zeros((*CAMERA.shape, 3), np.float32)
    probs[..., 0] = 1.0
    vol.integrate(wall_frame(1.0), CAMERA, np.eye(4), class_probs=probs)
    mesh = extract_mesh(vol)
    center = np.abs(mesh.vertices[:, 0]) < 0.15
    assert (mesh.labels[center] == 2).all()
    assert np.allclose(mesh.confidence[center], 0.75, atol=1e-5)  # 3 votes chair, 1 wall


def test_features_running_average():
    vol = SemanticTSDFVolume(VolumeConfig(voxel_size=0.05, feature_dim=3), CLASSES, "cpu")
    for value in (1.0, 3.0):
        vol.integrate(wall_frame(1.0), CAMERA, np.eye(4), features=np.full((*CAMERA.shape, 3), value, np.float32))
    seen = vol.grid.layer("feature_weight")[vol.grid.slots] > 0
    assert seen.sum() > 1000
    assert torch.allclose(vol.grid.layer("features")[vol.grid.slots][seen], torch.tensor(2.0))
    assert torch.all(vol.grid.layer("feature_weight")[vol.grid.slots][seen] == 2)


def test_rgb_only_feature_backprojection_fills_the_frustum():
    vol = SemanticTSDFVolume(VolumeConfig(voxel_size=0.05, feature_dim=3), CLASSES, "cpu")
    features = np.zeros((*CAMERA.shape, 3), np.float32)
    features[:, :40, 0] = 1.0  # left half of the image: feature (1, 0, 0); right half (0, 0, 0)
    stats = vol.integrate_features(features, CAMERA, np.eye(4), max_range=2.0)
    assert stats.blocks_allocated > 0 and stats.voxels_updated > 10000
    assert float(vol.grid.layer("weight").sum()) == 0.0  # geometry untouched
    # sample voxel centres: inside the frustum and range -> the pixel's feature, one view
    voxels = torch.tensor([[-4, 0, 20], [4, 0, 20], [-10, 3, 36], [0, 0, 44], [0, 0, -10]])
    got = vol.grid.read_voxels(voxels)
    assert got["feature_weight"].tolist() == [1, 1, 1, 0, 0]  # z = 2.2 m beyond range, z < 0 behind
    assert got["features"][:, 0].tolist() == [1, 0, 1, 0, 0]
    # a second view averages
    vol.integrate_features(np.ones((*CAMERA.shape, 3), np.float32), CAMERA, np.eye(4), max_range=2.0)
    got = vol.grid.read_voxels(voxels[:2])
    assert torch.allclose(got["features"], torch.tensor([[1.0, 0.5, 0.5], [0.5, 0.5, 0.5]]))
    with pytest.raises(ValueError, match="max_range"):
        vol.integrate_features(features, CAMERA, np.eye(4), max_range=50.0)


def test_semantics_fused_later_equal_semantics_fused_with_the_geometry(seven_scenes):
    """integrate_semantics (a keyframe segmented after its geometry was fused) gives the votes integrate would have
    given; geometry and color stay as fused; nothing is allocated; class probabilities work the same way."""
    config = VolumeConfig(voxel_size=0.04)
    together = SemanticTSDFVolume(config, CLASSES, "cpu")
    later = SemanticTSDFVolume(config, CLASSES, "cpu")
    rng = np.random.default_rng(0)
    for i in range(0, 300, 60):
        f = downscale(seven_scenes[i], 4)
        labels = rng.integers(0, len(CLASSES), f.depth.shape)
        together.integrate(f.depth, f.camera, f.T_world_cam, color=f.color, labels=labels)
        later.integrate(f.depth, f.camera, f.T_world_cam, color=f.color)
        blocks, tsdf = later.num_blocks, later.grid.values("tsdf").clone()
        stats = later.integrate_semantics(f.depth, f.camera, f.T_world_cam, labels=labels)
        assert stats.voxels_updated > 0 and later.num_blocks == blocks
        assert torch.equal(later.grid.values("tsdf"), tsdf)
    assert torch.equal(together.grid.block_coords(), later.grid.block_coords())
    assert torch.allclose(together.grid.values("semantic"), later.grid.values("semantic"), atol=1e-4)
    assert float(later.grid.values("semantic").sum()) > 0
    with pytest.raises(ValueError, match="labels or class_probs"):
        later.integrate_semantics(f.depth, f.camera, f.T_world_cam)
