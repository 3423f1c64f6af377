"""The Atlas network over an RGB-only map: chunks seen by a view are run through the S4R engine's machinery, the
predictions land exactly where the network put them and only where a view saw the voxel, changed chunks are rerun,
and checkpoints of the wrong kind are refused by both engines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semantic_recon_ros.core.camera import PinholeCamera
from semantic_recon_ros.core.completion import CompletionEngine
from semantic_recon_ros.core.config.completion import CompletionConfig
from semantic_recon_ros.core.config.volume import VolumeConfig
from semantic_recon_ros.core.map import SemanticTSDFVolume
from semantic_recon_ros.core.models import AtlasNet, AtlasNetConfig, S4RNet, S4RNetConfig, save_checkpoint
from semantic_recon_ros.core.rgb_only_completion import RgbOnlyCompletionEngine
from semantic_recon_ros.core.rgb_only_features import ImageFeatureExtractor, feature_map_camera

from support.completion_chunks import chunks_seeing

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CLASSES = ["a", "b", "c"]
CAMERA = PinholeCamera(400.0, 400.0, 159.5, 119.5, 320, 240)  # feature maps: 80 x 60
VOXEL, BLOCK = 0.05, 4
CONFIG = CompletionConfig(chunk_size=32, chunk_margin=4, batch_size=2, time_budget=60.0, min_observed_voxels=1)
MAX_RANGE = 1.5


def atlas(seed: int = 0) -> AtlasNet:
    torch.manual_seed(seed)
    return AtlasNet(AtlasNetConfig(num_classes=len(CLASSES), feature_source="color", base_width=4)).eval()


def stripes(shift: int) -> np.ndarray:
    """A (240, 320, 3) uint8 image of colored vertical stripes (the views differ, so voxels see varied features)."""
    u = (np.arange(CAMERA.width) + shift) // 20
    row = np.stack([(u * 50) % 256, (u * 90 + 30) % 256, (u * 20 + 200) % 256], axis=-1).astype(np.uint8)
    return np.ascontiguousarray(np.broadcast_to(row, (*CAMERA.shape, 3)))


def pose(x: float, yaw: float = 0.0) -> np.ndarray:
    T = np.eye(4)
    c, s = np.cos(yaw), np.sin(yaw)
    T[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    T[0, 3] = x
    return T


def add_view(volume: SemanticTSDFVolume, extractor: ImageFeatureExtractor, x: float, yaw: float = 0.0) -> None:
    volume.integrate_features(extractor(stripes(int(x * 100)), CAMERA, pose(x, yaw)), feature_map_camera(CAMERA),
                              pose(x, yaw), max_range=MAX_RANGE)


def rgb_only_map(network: AtlasNet) -> tuple[SemanticTSDFVolume, ImageFeatureExtractor]:
    volume = SemanticTSDFVolume(VolumeConfig(voxel_size=VOXEL, block_size=BLOCK,
                                             feature_dim=network.config.volume_channels), CLASSES, "cpu")
    extractor = ImageFeatureExtractor(network)
    for x, yaw in ((0.0, 0.0), (0.4, -0.3), (1.6, 0.2)):
        add_view(volume, extractor, x, yaw)
    return volume, extractor


def seen_chunks(engine: CompletionEngine) -> set[tuple[int, int, int]]:
    """Chunks (in the engine's grid) whose core holds a block with a voxel seen by a view."""
    volume = engine.volume
    slots = volume.grid.slots
    seen = (volume.grid.layer("feature_weight")[slots] > 0).any(dim=1)
    blocks = volume.grid.block_coords(slots)[seen]
    first_core_block = engine.chunk_origins(torch.zeros(1, 3, dtype=torch.int64))[0] // BLOCK + engine.margin_blocks
    return {tuple(c) for c in torch.div(blocks - first_core_block, engine.core_blocks, rounding_mode="floor").tolist()}


def core_voxels(engine: CompletionEngine, chunk: torch.Tensor) -> torch.Tensor:
    """(c^3, 3) voxel coordinates of a chunk's core, x-major."""
    first = engine.chunk_origins(chunk[None])[0] + CONFIG.chunk_margin
    axes = [torch.arange(CONFIG.core_size) + int(v) for v in first]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).view(-1, 3)


def test_predictions_come_from_the_network_and_only_where_views_saw():
    network = atlas()
    volume, _ = rgb_only_map(network)
    engine = RgbOnlyCompletionEngine(network, volume, CONFIG)
    assert engine.network_dtype == torch.float32  # whatever completion.precision says
    planned = {tuple(c) for c in engine.plan()[0].tolist()}
    assert len(planned) >= 4 and planned == seen_chunks(engine)  # every chunk a view saw, and no other
    blocks = volume.num_blocks
    stats = engine.run()
    assert stats.chunks_run == len(planned) and stats.chunks_pending == 0 and stats.blocks_allocated == 0
    assert volume.num_blocks == blocks

    grid, slots = volume.grid, volume.grid.slots
    seen = grid.layer("feature_weight")[slots] > 0
    assert 0 < int(seen.sum()) < seen.numel()  # the frustums end inside some blocks
    assert torch.equal(grid.layer("pred_weight")[slots] > 0, seen)  # predicted exactly where a view saw the voxel
    features, color = grid.layer("features")[slots], grid.layer("pred_color")[slots]
    assert torch.allclose(color[seen], features[seen][:, :3])  # the views' mean RGB
    semantic = grid.layer("pred_semantic")[slots]
    assert torch.allclose(semantic[seen].sum(dim=1), torch.ones(int(seen.sum())), atol=1e-5)
    confidence = grid.layer("pred_confidence")[slots]
    assert torch.allclose(confidence[seen], semantic[seen].amax(dim=1)) and bool((confidence[~seen] == 0).all())

    # the chunk views saw most, its input read voxel by voxel and run by hand: the map holds the network's core
    chunk = max((torch.tensor(c) for c in stats.ran),
                key=lambda c: int((grid.read_voxels(core_voxels(engine, c))["feature_weight"] > 0).sum()))
    size = CONFIG.chunk_size
    origin = engine.chunk_origins(chunk[None])[0]
    axes = [torch.arange(size) + int(v) for v in origin]
    inputs = grid.read_voxels(torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).view(-1, 3))
    feature_volume = inputs["features"].T.reshape(1, -1, size, size, size)
    observed = (inputs["feature_weight"] > 0).view(1, 1, size, size, size)
    with torch.inference_mode():
        expected = network.reconstruct(feature_volume, observed)["tsdf"]
    m, c = CONFIG.chunk_margin, CONFIG.core_size
    expected = expected[0, 0, m:m + c, m:m + c, m:m + c].reshape(-1)
    written = grid.read_voxels(core_voxels(engine, chunk))
    core_seen = written["pred_weight"] > 0
    assert int(core_seen.sum()) > 1000
    assert torch.allclose(written["pred_tsdf"][core_seen], expected[core_seen], atol=1e-5)


def test_only_chunks_whose_views_changed_are_rerun():
    network = atlas()
    volume, extractor = rgb_only_map(network)
    engine = RgbOnlyCompletionEngine(network, volume, CONFIG)
    first = engine.run()
    assert engine.plan()[0].numel() == 0 and engine.run().chunks_run == 0  # nothing new: nothing to do
    before = volume.grid.layer("pred_tsdf").clone()
    add_view(volume, extractor, 1.7, 0.25)  # another look at the right end
    changed = volume.grid.block_coords()[volume.grid.block_versions() == volume.grid.version]
    touched = chunks_seeing(engine, changed)  # chunks whose input box (core + margin) holds a changed block
    second = engine.run()
    ran_first, ran_second = {tuple(c) for c in first.ran}, {tuple(c) for c in second.ran}
    assert 0 < len(ran_second) < len(ran_first)
    assert ran_second == touched & seen_chunks(engine)  # exactly the seen chunks that see the change
    for chunk in ran_first - ran_second:  # the others keep their predictions
        slots = volume.grid.lookup(torch.unique(torch.div(core_voxels(engine, torch.tensor(chunk)), BLOCK,
                                                          rounding_mode="floor"), dim=0))
        slots = slots[slots >= 0]
        assert torch.equal(volume.grid.layer("pred_tsdf")[slots], before[slots])


def test_each_engine_refuses_the_other_kind_of_checkpoint(tmp_path):
    network = atlas()
    volume, _ = rgb_only_map(network)
    save_checkpoint(tmp_path / "atlas.pt", network, CLASSES, VOXEL, BLOCK * VOXEL)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "s4r.pt", S4RNet(S4RNetConfig(num_classes=3, base_width=4)), CLASSES, VOXEL,
                    BLOCK * VOXEL)
    engine = RgbOnlyCompletionEngine.from_checkpoint(tmp_path / "atlas.pt", volume, CONFIG)
    assert engine.run().chunks_run > 0
    with pytest.raises(ValueError, match=r"s4r.pt: model 's4r' completes a depth-fused RGB-D map; RGB-only mapping "
                                         r"needs an Atlas checkpoint \(model 'atlas'\)"):
        RgbOnlyCompletionEngine.from_checkpoint(tmp_path / "s4r.pt", volume, CONFIG)
    with pytest.raises(ValueError, match=r"atlas.pt: model 'atlas' reconstructs from images alone \(RGB-only mapping, "
                                         r"rgb_only\); completing a fused RGB-D map needs an S4R checkpoint"):
        CompletionEngine.from_checkpoint(tmp_path / "atlas.pt", volume, CONFIG)
    other = SemanticTSDFVolume(VolumeConfig(voxel_size=VOXEL, block_size=BLOCK, feature_dim=3), CLASSES, "cpu")
    with pytest.raises(ValueError, match=r"keeps 3 feature channels per voxel, the Atlas network reads 12"):
        RgbOnlyCompletionEngine.from_checkpoint(tmp_path / "atlas.pt", other, CONFIG)
