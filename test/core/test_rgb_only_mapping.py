"""RGB-only mapping with the Mapper: real 7-Scenes color frames back-projected exactly as the volume does it, the
features computed outside the map lock (DeepLab's with the real default segmenter), the Atlas network's surface as
the map, saving and loading; checkpoints that cannot serve refused with errors naming the problem (no trained RGB-only model
is shipped yet: the networks here are untrained)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.config import CompletionConfig, VolumeConfig
from semantic_recon_ros.core.map import SemanticTSDFVolume
from semantic_recon_ros.core.mapper import MapFrame, Mapper
from semantic_recon_ros.core.models import AtlasNet, AtlasNetConfig, S4RNet, S4RNetConfig, load_checkpoint, save_checkpoint
from semantic_recon_ros.core.rgb_only_features import ImageFeatureExtractor, feature_map_camera
from semantic_recon_ros.core.segmentation import load_segmenter

from support.frames import downscale

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CLASSES = load_class_set()
VOXEL, TRUNCATION = 0.04, 0.16  # the default volume settings
MAX_RANGE = 3.0
COMPLETION = CompletionConfig(min_observed_voxels=1)


@pytest.fixture(scope="module")
def frames(seven_scenes):
    """10 kitchen frames at 160 x 120 (feature maps of 40 x 30)."""
    return [downscale(seven_scenes[i], 4) for i in range(0, 200, 20)]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict:
    """Small untrained checkpoints of every kind this file needs (weights fixed by the seed)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    networks = {
        "color": AtlasNet(AtlasNetConfig(num_classes=CLASSES.num_classes, feature_source="color", base_width=4)),
        "deeplab": AtlasNet(AtlasNetConfig(num_classes=CLASSES.num_classes, feature_source="deeplab", base_width=4)),
        "s4r": S4RNet(S4RNetConfig(num_classes=CLASSES.num_classes, base_width=4)),
    }
    paths = {}
    for name, network in networks.items():
        paths[name] = folder / f"{name}.pt"
        save_checkpoint(paths[name], network, CLASSES.names, VOXEL, TRUNCATION)
    paths["three_classes"] = folder / "three_classes.pt"
    save_checkpoint(paths["three_classes"], AtlasNet(AtlasNetConfig(num_classes=3, feature_source="color",
                                                                    base_width=4)), CLASSES.names[:3], VOXEL, TRUNCATION)
    return paths


def color_only(frame) -> MapFrame:
    return MapFrame(frame.camera, frame.T_world_cam, frame.color, depth=None, stamp_ns=1)


def back_projected(frames, extractor: ImageFeatureExtractor) -> SemanticTSDFVolume:
    """The frames' features back-projected by the volume alone (the reference for the mapper's feature layers)."""
    volume = SemanticTSDFVolume(VolumeConfig(feature_dim=extractor.channels), CLASSES.names, "cpu")
    for frame in frames:
        volume.integrate_features(extractor(frame.color, frame.camera, frame.T_world_cam),
                                  feature_map_camera(frame.camera), frame.T_world_cam, max_range=MAX_RANGE)
    return volume


def assert_same_features(volume: SemanticTSDFVolume, reference: SemanticTSDFVolume) -> None:
    assert torch.equal(volume.grid.block_coords(), reference.grid.block_coords())
    for layer in ("features", "feature_weight"):
        assert torch.allclose(volume.grid.values(layer), reference.grid.values(layer), atol=1e-6), layer


def test_rgb_only_mapping_back_projects_the_frames_and_maps_the_network_surface(frames, checkpoints, tmp_path):
    mapper = Mapper(VolumeConfig(), CLASSES, "cpu", COMPLETION, checkpoint=checkpoints["color"],
                    rgb_only_max_range=MAX_RANGE)
    assert mapper.volume.config.feature_dim == 12  # the means of f and f^2, f = RGB + view direction (checkpoint)
    assert mapper.mesh_source == "completed" and mapper.voxel_map_source == "completed" and not mapper.has_additions
    for frame in frames:
        stats = mapper.integrate(color_only(frame))
        assert stats.voxels_updated > 0
    network, _ = load_checkpoint(checkpoints["color"], "cpu")
    assert_same_features(mapper.volume, back_projected(frames, ImageFeatureExtractor(network)))
    assert (mapper.volume.grid.values("weight") == 0).all()  # no depth, no fused geometry

    completion = mapper.complete(time_budget=float("inf"))
    assert completion.chunks_run > 0 and completion.chunks_pending == 0
    grid, slots = mapper.volume.grid, mapper.volume.grid.slots
    seen = grid.layer("feature_weight")[slots] > 0
    assert torch.equal(grid.layer("pred_weight")[slots] > 0, seen)
    # (an untrained network: its surface is checked with the trained default model below)
    saved = mapper.save(tmp_path / "map")
    assert sorted(p.name for p in saved.folder.iterdir()) == ["mesh_rgb.ply", "mesh_semantic.ply", "volume.pt"]
    assert saved.additions is None and saved.state.blocks == mapper.volume.num_blocks
    fresh = Mapper(VolumeConfig(), CLASSES, "cpu", COMPLETION, checkpoint=checkpoints["color"],
                   rgb_only_max_range=MAX_RANGE)
    fresh.load(tmp_path / "map")
    for layer in ("features", "feature_weight", "pred_tsdf", "pred_weight"):
        assert torch.equal(fresh.volume.grid.values(layer), mapper.volume.grid.values(layer)), layer
    assert fresh.complete(time_budget=float("inf")).chunks_run == completion.chunks_run  # the loaded chunks rerun


class WatchedSegmenter:
    """The real default segmenter, noting for every image whether the mapper's lock was free while it ran."""

    def __init__(self, segmenter, lock_free: threading.Event, called: threading.Event):
        self.segmenter, self.class_names = segmenter, segmenter.class_names
        self.lock_free, self.called = lock_free, called
        self.calls = 0

    def predict(self, color: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.called.set()
        if not self.lock_free.wait(timeout=60):
            raise AssertionError("the map lock stayed held while the features were computed")
        return self.segmenter.predict(color)


def test_deeplab_features_come_from_the_segmenter_outside_the_map_lock(frames, checkpoints, shared_data):
    real = load_segmenter("default", CLASSES.names, "cpu", num_threads=1)
    lock_free, called = threading.Event(), threading.Event()
    made = []

    def factory():
        made.append(WatchedSegmenter(real, lock_free, called))
        return made[-1]

    colored = Mapper(VolumeConfig(), CLASSES, "cpu", COMPLETION, checkpoint=checkpoints["color"],
                     rgb_only_max_range=MAX_RANGE, segmenter_factory=factory)
    assert made == [] and colored.feature_extractor.segmenter is None  # color features need no segmenter
    mapper = Mapper(VolumeConfig(), CLASSES, "cpu", COMPLETION, checkpoint=checkpoints["deeplab"],
                    rgb_only_max_range=MAX_RANGE, segmenter_factory=factory)
    assert len(made) == 1 and mapper.volume.config.feature_dim == 2 * (3 + 3 + CLASSES.num_classes)
    segmenter = made[0]

    # the first frame's segmentation starts while this thread holds the map lock, and ends only once it is free
    integration = threading.Thread(target=mapper.integrate, args=(color_only(frames[0]),))
    with mapper.lock:
        integration.start()
        assert called.wait(timeout=60), "the features were not computed while the map lock was held"
        lock_free.set()
    integration.join()
    for frame in frames[1:3]:
        mapper.integrate(color_only(frame))
    assert segmenter.calls == 3 and mapper.stats.period_summary()["integrated"] == 3

    network, _ = load_checkpoint(checkpoints["deeplab"], "cpu")
    reference = back_projected(frames[:3], ImageFeatureExtractor(network, real))
    assert_same_features(mapper.volume, reference)
    seen = mapper.volume.grid.values("feature_weight") > 0
    probabilities = mapper.volume.grid.values("features")[seen][:, 6:6 + CLASSES.num_classes]  # after RGB, direction
    assert bool((probabilities.sum(dim=1) <= 1 + 1e-4).all()) and float(probabilities.amax(dim=1).mean()) > 0.3


def test_checkpoints_that_cannot_serve_are_refused(checkpoints, tmp_path):
    def rgb_only(**kwargs) -> Mapper:
        return Mapper(**{"volume_config": VolumeConfig(), "classes": CLASSES, "completion_config": COMPLETION,
                         "rgb_only_max_range": MAX_RANGE, **kwargs})

    for missing in (None, ""):
        with pytest.raises(ValueError, match="RGB-only mapping needs an Atlas checkpoint .* maps no geometry"):
            rgb_only(checkpoint=missing)
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*missing.pt"):
        rgb_only(checkpoint=tmp_path / "missing.pt", strict_checkpoint=False)  # RGB-only needs its network
    with pytest.raises(ValueError, match=r"s4r.pt: model 's4r' completes a depth-fused RGB-D map; RGB-only mapping "
                                         r"needs an Atlas checkpoint"):
        rgb_only(checkpoint=checkpoints["s4r"], strict_checkpoint=False)
    with pytest.raises(ValueError, match=r"three_classes.pt: trained for classes \['wall', 'floor', 'ceiling'\]"):
        rgb_only(checkpoint=checkpoints["three_classes"])
    with pytest.raises(ValueError, match=r"color.pt: trained for voxel size 0.04 m, the map uses 0.05 m"):
        rgb_only(checkpoint=checkpoints["color"], volume_config=VolumeConfig(voxel_size=0.05))
    with pytest.raises(ValueError, match=r"volume.feature_dim is 3, but the Atlas checkpoint's 'color' features take "
                                         r"12 channels per voxel: set volume.feature_dim to 12, or to 0"):
        rgb_only(checkpoint=checkpoints["color"], volume_config=VolumeConfig(feature_dim=3))
    with pytest.raises(ValueError, match=r"deeplab.pt: the Atlas network's feature source is 'deeplab': it needs the "
                                         r"2D segmenter"):
        rgb_only(checkpoint=checkpoints["deeplab"])
    with pytest.raises(ValueError, match=r"rgb_only_max_range \(6.0\) must lie in \(volume.min_depth, volume.max_depth"):
        rgb_only(checkpoint=checkpoints["color"], rgb_only_max_range=6.0)
    # an RGB-D map refuses an Atlas checkpoint: strictly, or by mapping with fusion only and saying why
    with pytest.raises(ValueError, match=r"color.pt: model 'atlas' reconstructs from images alone"):
        Mapper(VolumeConfig(), CLASSES, checkpoint=checkpoints["color"])
    lenient = Mapper(VolumeConfig(), CLASSES, checkpoint=checkpoints["color"], strict_checkpoint=False)
    assert lenient.engine is None and "reconstructs from images alone" in lenient.completion_error
