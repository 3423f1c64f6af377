"""Running a network over the live map: exact overlap-tile chunking, incremental scheduling, budgets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from semantic_recon_ros.core.camera import PinholeCamera
from semantic_recon_ros.core.completion import CompletionEngine
from semantic_recon_ros.core.completion_config import CompletionConfig
from semantic_recon_ros.core.meshing import extract_mesh
from semantic_recon_ros.core.tsdf_volume import SemanticTSDFVolume
from semantic_recon_ros.core.volume_config import VolumeConfig

CLASSES = ["a", "b", "c"]
CAMERA = PinholeCamera(100.0, 100.0, 39.5, 29.5, 80, 60)
CONFIG = CompletionConfig(chunk_size=32, chunk_margin=4, batch_size=2, time_budget=60.0, min_observed_voxels=1)


class LocalNetwork(nn.Module):
    """Translation-equivariant toy network: two 3x3x3 convolutions (receptive radius 2 < margin 4)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv3d(5, 8, 3, padding=1), nn.Tanh(), nn.Conv3d(8, 1 + 3 + 3, 3, padding=1))

    def forward(self, tsdf, observed, color):
        out = self.body(torch.cat((tsdf, observed, color), dim=1))
        return {"tsdf": torch.tanh(out[:, :1]), "color": torch.sigmoid(out[:, 1:4]), "semantic_logits": out[:, 4:]}


class PlaneNetwork(nn.Module):
    """Predicts a floor at world z = 0.8 m everywhere, whatever it sees (class 1, grey)."""

    def __init__(self, origin_of, voxel_size, truncation):
        super().__init__()
        self.origin_of, self.voxel_size, self.truncation = origin_of, voxel_size, truncation

    def forward(self, tsdf, observed, color):
        n, _, s = tsdf.shape[:3]
        z = torch.arange(s, dtype=torch.float32)[None, None, None, None, :] * self.voxel_size
        world_z = self.origin_of(n)[:, None, None, None, None] + z
        field = ((0.8 - world_z) / self.truncation).clamp(-1, 1).expand(n, 1, s, s, s)
        logits = torch.zeros(n, 3, s, s, s)
        logits[:, 1] = 5.0
        return {"tsdf": field, "color": torch.full((n, 3, s, s, s), 0.5), "semantic_logits": logits}


def wall_volume() -> SemanticTSDFVolume:
    volume = SemanticTSDFVolume(VolumeConfig(voxel_size=0.05, block_size=4), CLASSES, "cpu")
    for x in np.arange(-1.8, 1.81, 0.6):  # a 4.4 m wide wall: several chunks along x
        pose = np.eye(4)
        pose[0, 3] = x
        volume.integrate(np.full(CAMERA.shape, 1.0, np.float32), CAMERA, pose,
                         color=np.full((*CAMERA.shape, 3), 120, np.uint8))
    return volume


def test_chunked_predictions_equal_one_dense_run():
    volume = wall_volume()
    network = LocalNetwork().eval()
    engine = CompletionEngine(network, volume, CONFIG)
    stats = engine.run()
    assert stats.chunks_run >= 4 and stats.chunks_pending == 0  # the wall spans several chunks

    # the same network on one dense grid covering every chunk that ran
    core, margin = CONFIG.core_size, CONFIG.chunk_margin
    chunks = torch.tensor(stats.ran)
    low = chunks.min(dim=0).values * core - margin
    size = (chunks.max(dim=0).values - chunks.min(dim=0).values + 1) * core + 2 * margin
    grid = torch.stack(torch.meshgrid(*[torch.arange(int(n)) for n in size], indexing="ij"), -1).view(-1, 3) + low
    values = volume.read_voxels(grid)
    shape = (1, 1, *size.tolist())
    tsdf = values["tsdf"].view(shape)
    observed = (values["weight"] > 0).float().view(shape)
    color = (values["color"] / 255).T.reshape(1, 3, *size.tolist())
    with torch.inference_mode():
        dense = network(tsdf, observed, color)
    # compare on every voxel of the chunk cores that is not at the dense grid's own border
    interior = ((grid - low >= margin) & (grid - low < size - margin)).all(dim=1)
    predicted = volume.read_voxels(grid[interior])
    assert bool((predicted["pred_weight"] == 1).all())
    expected = dense["tsdf"].reshape(-1)[interior]
    assert torch.allclose(predicted["pred_tsdf"], expected, atol=1e-5)  # no seams at chunk borders
    expected_probs = torch.softmax(dense["semantic_logits"], dim=1).reshape(3, -1).T[interior]
    assert torch.allclose(predicted["pred_semantic"], expected_probs, atol=1e-5)


def test_only_changed_chunks_are_rerun():
    volume = wall_volume()
    engine = CompletionEngine(LocalNetwork().eval(), volume, CONFIG)
    first = engine.run()
    assert engine.plan()[0].numel() == 0 and engine.run().chunks_run == 0  # nothing changed: nothing to do
    pose = np.eye(4)
    pose[0, 3] = 1.8
    volume.integrate(np.full(CAMERA.shape, 1.0, np.float32), CAMERA, pose)  # re-observe the right end
    changed = volume.block_coords[volume.index.slots][volume.block_version[volume.index.slots] == volume.version]
    cb, mb = engine.core_blocks, engine.margin_blocks
    touched = set()
    for b in changed.tolist():  # chunks whose input box (core + margin) holds a changed block
        ranges = [range((v - mb - cb) // cb + 1, (v + mb) // cb + 1) for v in b]
        touched |= {(x, y, z) for x in ranges[0] for y in ranges[1] for z in ranges[2]}
    second = engine.run()
    ran_first, ran_second = {tuple(c) for c in first.ran}, {tuple(c) for c in second.ran}
    assert 0 < len(ran_second) < len(ran_first)
    assert touched & ran_first == ran_second  # exactly the chunks that see the change


def test_time_budget_leaves_the_rest_pending():
    volume = wall_volume()
    engine = CompletionEngine(LocalNetwork().eval(), volume,
                              CompletionConfig(chunk_size=32, chunk_margin=4, batch_size=1, time_budget=0.01,
                                               min_observed_voxels=1))
    stats = engine.run()
    assert stats.chunks_run == 1 and stats.chunks_pending > 0  # one batch always runs
    while stats.chunks_pending:
        stats = engine.run()
    assert engine.plan()[0].numel() == 0


def test_completion_fills_unobserved_space_and_meshes():
    volume = SemanticTSDFVolume(VolumeConfig(voxel_size=0.05, block_size=4), CLASSES, "cpu")
    volume.integrate(np.full(CAMERA.shape, 1.0, np.float32), CAMERA, np.eye(4))  # a wall at z = 1 m
    engine = CompletionEngine(None, volume, CONFIG)
    origins = {}

    def origin_z(n):  # world z of voxel 0 of the chunks being predicted
        return origins["z"][:n]

    engine.network = PlaneNetwork(origin_z, 0.05, volume.config.truncation)
    chunks, versions = engine.plan()
    batch = engine.gather(chunks, versions)
    origins["z"] = (batch.chunks[:, 2] * CONFIG.core_size - CONFIG.chunk_margin).float() * 0.05
    allocated = engine.write(batch, engine.predict(batch))
    assert allocated > 0  # blocks for the predicted floor, never observed
    completed = extract_mesh(volume, source="completed")
    assert completed.num_triangles > 100 and np.allclose(completed.vertices[:, 2], 0.8, atol=1e-4)
    assert (completed.labels == 1).all()
    observed = extract_mesh(volume, source="observed")
    both = extract_mesh(volume, source="both")
    assert both.num_triangles > observed.num_triangles
    assert (observed.labels == 1).all()  # network labels replace missing 2D labels where predicted


def test_configuration_mismatches_fail_clearly():
    volume = SemanticTSDFVolume(VolumeConfig(voxel_size=0.05, block_size=8), CLASSES, "cpu")
    with pytest.raises(ValueError, match="multiples of the volume's block_size"):
        CompletionEngine(LocalNetwork(), volume, CompletionConfig(chunk_size=32, chunk_margin=4))
    with pytest.raises(ValueError, match="multiple of 16"):
        CompletionConfig(chunk_size=40)
    with pytest.raises(ValueError, match="needs the completion network"):
        extract_mesh(SemanticTSDFVolume(VolumeConfig(), CLASSES, "cpu"), source="both")
