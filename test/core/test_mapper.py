"""The core Mapper: fuses exactly like the volume, saves and loads every layer, refuses maps that do not fit,
resets, and reports a checkpoint it cannot use instead of failing when asked to."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.config import CompletionConfig, VolumeConfig
from semantic_recon_ros.core.map import SemanticTSDFVolume
from semantic_recon_ros.core.keyframe_segmentation import KeyframePolicy, KeyframeSegmentation
from semantic_recon_ros.core import mapper as mapper_module
from semantic_recon_ros.core.mapper import VOLUME_FILE, MapFrame, Mapper
from semantic_recon_ros.core.meshing import extract_mesh
from semantic_recon_ros.core.ply import read_semantic_ply

from support.frames import downscale

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CLASSES = load_class_set()


class FloorNetwork(nn.Module):
    """Keeps the input TSDF where observed, predicts free space elsewhere, class 1 everywhere."""

    def forward(self, tsdf, observed, color):
        logits = torch.zeros(tsdf.shape[0], CLASSES.num_classes, *tsdf.shape[2:])
        logits[:, 1] = 5.0
        return {"tsdf": torch.where(observed > 0, tsdf, torch.ones_like(tsdf)), "color": color,
                "semantic_logits": logits}


@pytest.fixture(scope="module")
def frames(seven_scenes):
    return [downscale(seven_scenes[i], 4) for i in range(0, 200, 20)]


def as_map_frame(frame, stamp_ns: int = 0) -> MapFrame:
    labels = (frame.depth > 1.5).astype(np.int64)  # two classes by distance: some votes in every layer
    return MapFrame(frame.camera, frame.T_world_cam, frame.color, frame.depth, labels, stamp_ns=stamp_ns)


def assert_same_layers(a: SemanticTSDFVolume, b: SemanticTSDFVolume) -> None:
    assert torch.equal(a.grid.block_coords(), b.grid.block_coords())
    assert set(a.grid.layer_names) == set(b.grid.layer_names)
    for layer in a.grid.layer_names:
        assert torch.equal(a.grid.values(layer), b.grid.values(layer)), layer


def test_the_mapper_fuses_exactly_like_the_volume(frames):
    mapper = Mapper(VolumeConfig(), CLASSES)
    volume = SemanticTSDFVolume(VolumeConfig(), CLASSES.names, "cpu")
    for i, frame in enumerate(frames):
        map_frame = as_map_frame(frame, stamp_ns=1000 + i)
        stats = mapper.integrate(map_frame)
        expected = volume.integrate(frame.depth, frame.camera, frame.T_world_cam, color=frame.color,
                                    labels=map_frame.labels)
        assert stats == expected
    assert_same_layers(mapper.volume, volume)
    state = mapper.state
    assert state.version == len(frames) and state.stamp_ns == 1000 + len(frames) - 1
    assert state.blocks == volume.num_blocks and mapper.stats.period_summary()["integrated"] == len(frames)


def test_save_and_load_restore_every_layer_and_discard_older_frames(frames, tmp_path):
    mapper = Mapper(VolumeConfig(), CLASSES, mesh_source="both")
    mapper.attach_network(FloorNetwork(), CompletionConfig(min_observed_voxels=0))
    for frame in frames:
        mapper.integrate(as_map_frame(frame))
    completion = mapper.complete(time_budget=float("inf"))
    assert completion.chunks_run > 0 and float(mapper.volume.grid.values("pred_weight").sum()) > 0
    saved = mapper.save(tmp_path / "map")
    assert sorted(p.name for p in saved.folder.iterdir()) == [
        "mesh_additions.ply", "mesh_rgb.ply", "mesh_semantic.ply", "volume.pt"]
    assert sorted(p.name for p in (tmp_path / "map").iterdir()) == [  # the files as links into current
        "current", "maps", "mesh_additions.ply", "mesh_rgb.ply", "mesh_semantic.ply", "volume.pt"]
    semantic, names = read_semantic_ply(saved.mesh_semantic)
    assert names == list(CLASSES.names) and semantic.num_triangles == saved.mesh.num_triangles > 0
    # the network's additions have their own file; with them the observed surface becomes the "both" mesh
    additions, _ = read_semantic_ply(saved.mesh_additions)
    both, _ = mapper.mesh("both")
    assert additions.num_triangles == saved.additions.num_triangles > 0
    assert both.num_triangles == saved.mesh.num_triangles + additions.num_triangles
    np.testing.assert_array_equal(additions.surface_confidence, saved.additions.surface_confidence)

    fresh = Mapper(VolumeConfig(), CLASSES)  # no network: the prediction layers come from the file
    generation = fresh.generation
    state = fresh.load(tmp_path / "map")
    assert_same_layers(fresh.volume, mapper.volume)
    assert state.blocks == mapper.volume.num_blocks and fresh.generation == generation + 1
    assert fresh.integrate(as_map_frame(frames[0]), generation=generation) is None  # received before the load
    assert fresh.state.version == state.version
    assert fresh.integrate(as_map_frame(frames[0]), generation=fresh.generation).valid_pixels > 0
    fresh.load(tmp_path / "map" / VOLUME_FILE)  # the file itself works too
    assert_same_layers(fresh.volume, mapper.volume)


def test_a_live_mesh_update_ends_while_frames_keep_changing_the_map(frames, monkeypatch):
    """The live outputs redo the regions changed before the update began, in steps between which frames are fused,
    and leave what those frames change to the next update; a whole mesh after the frames stop equals a full
    re-mesh. (Chasing every change, an update of one region per step would not end while frames keep coming.)"""
    for steps in ("LIVE_STEP_BLOCKS", "MESH_STEP_BLOCKS"):
        monkeypatch.setattr(mapper_module, steps, 1)  # about one region per hold of the map
    mapper = Mapper(VolumeConfig(), CLASSES)
    geometry = [MapFrame(f.camera, f.T_world_cam, f.color, f.depth) for f in frames]
    for frame in geometry[:3]:
        mapper.integrate(frame)
    stop, fused = threading.Event(), []

    def keep_fusing() -> None:
        while not stop.is_set() and len(fused) < 2000:
            mapper.integrate(geometry[len(fused) % len(geometry)])
            fused.append(mapper.state.version)

    fusing = threading.Thread(target=keep_fusing)
    begun = mapper.state.version
    fusing.start()
    try:
        changes, state = mapper.mesh_changes({"observed": 0})
        fused_meanwhile = len(fused)
    finally:
        stop.set()
        fusing.join()
    assert len(fused) < 2000 and fused_meanwhile > 0  # frames were fused between the steps, the update ended
    assert begun <= state.version < mapper.state.version  # the state the update began from
    assert len(changes["observed"][0]) > 10
    mesh, _ = mapper.mesh()
    full = extract_mesh(mapper.volume)
    assert mesh.num_triangles == full.num_triangles
    np.testing.assert_array_equal(np.sort(mesh.vertices, axis=0), np.sort(full.vertices, axis=0))


def test_a_map_that_does_not_fit_is_refused_and_the_map_kept(frames, tmp_path):
    mapper = Mapper(VolumeConfig(), CLASSES)
    mapper.integrate(as_map_frame(frames[0]))
    mapper.save(tmp_path)
    other = Mapper(VolumeConfig(voxel_size=0.05), CLASSES)
    other.integrate(as_map_frame(frames[1]))
    blocks, version = other.volume.num_blocks, other.state.version
    with pytest.raises(ValueError, match=r"voxel_size 0.04 \(this map: 0.05\)"):
        other.load(tmp_path)
    assert other.volume.num_blocks == blocks and other.state.version == version
    with pytest.raises(ValueError, match="classes"):
        Mapper(VolumeConfig(), CLASSES.names[:3]).load(tmp_path)
    with pytest.raises(FileNotFoundError):
        other.load(tmp_path / "missing")


def test_reset_empties_the_map(frames):
    mapper = Mapper(VolumeConfig(), CLASSES)
    mapper.integrate(as_map_frame(frames[0], stamp_ns=5))
    blocks, state = mapper.reset()
    assert blocks > 0 and state.blocks == 0 and state.stamp_ns == 0 and mapper.volume.num_blocks == 0
    mesh, _ = mapper.mesh()
    assert mesh.num_triangles == 0


def test_modes_and_checkpoints_that_cannot_be_used(tmp_path):
    with pytest.raises(ValueError, match="RGB-only mapping needs an Atlas checkpoint"):  # test_rgb_only_mapping.py
        Mapper(VolumeConfig(), CLASSES, rgb_only_max_range=3.0)
    with pytest.raises(FileNotFoundError):
        Mapper(VolumeConfig(), CLASSES, checkpoint=tmp_path / "missing.pt")
    lenient = Mapper(VolumeConfig(), CLASSES, checkpoint=tmp_path / "missing.pt", strict_checkpoint=False)
    assert lenient.engine is None and "missing.pt" in lenient.completion_error and lenient.mesh_source == "observed"
    assert lenient.complete() is None


class ConstantSegmenter:
    """Says "floor" (class 1) everywhere and counts its calls; slow enough to overlap integration."""

    class_names = CLASSES.names

    def __init__(self, seconds: float = 0.05):
        self.calls, self.seconds = 0, seconds

    def predict(self, color):
        self.calls += 1
        time.sleep(self.seconds)
        probs = np.zeros((*color.shape[:2], CLASSES.num_classes), np.float32)
        probs[..., 1] = 1.0
        return probs


def test_keyframes_are_segmented_in_the_background_and_fused(frames):
    mapper = Mapper(VolumeConfig(), CLASSES)
    segmentation = KeyframeSegmentation(mapper, ConstantSegmenter(), rate=50.0)
    try:
        for frame in frames:
            geometry_only = MapFrame(frame.camera, frame.T_world_cam, frame.color, frame.depth)
            mapper.integrate(geometry_only)
            segmentation.offer(geometry_only, mapper.generation)
            time.sleep(0.1)
        still = MapFrame(frames[-1].camera, frames[-1].T_world_cam, frames[-1].color, frames[-1].depth)
        segmentation.offer(still, mapper.generation)  # no motion since the last keyframe
        time.sleep(0.2)
    finally:
        segmentation.close()
    keyframes, previous = 0, None  # frames that moved enough since the previous keyframe
    for frame in frames:
        if KeyframePolicy().moved(previous, frame.T_world_cam):
            keyframes, previous = keyframes + 1, frame.T_world_cam
    summary = segmentation.stats.period_summary()
    assert keyframes >= len(frames) - 2
    assert summary["runs"] == keyframes and summary["errors"] == 0, summary
    assert summary["skipped"] == {"no_motion": len(frames) + 1 - keyframes}, summary
    mesh, _ = mapper.mesh()
    assert (mesh.labels == 1).mean() > 0.95  # every fused label says floor


def test_a_segmenter_for_other_classes_is_refused(frames):
    segmenter = ConstantSegmenter()
    segmenter.class_names = ("a", "b")
    with pytest.raises(ValueError, match="not the map's"):
        KeyframeSegmentation(Mapper(VolumeConfig(), CLASSES), segmenter, rate=1.0)
