"""Running a network over the live map: exact overlap-tile chunking, grid alignment, incremental scheduling,
budgets, resets and cancellation during a run, checkpoint settings."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from semantic_recon_ros.core.camera import PinholeCamera
from semantic_recon_ros.core.completion import (
    DEFAULT_CHECKPOINT,
    DEFAULT_CHECKPOINT_FILE,
    CompletionEngine,
    resolve_checkpoint,
)
from semantic_recon_ros.core.config.completion import CompletionConfig
from semantic_recon_ros.core.meshing import extract_mesh
from semantic_recon_ros.core.models import S4RNetConfig
from semantic_recon_ros.core.models.s4r_unet import label_channels
from semantic_recon_ros.core.resources import share_file
from semantic_recon_ros.core.map import SemanticTSDFVolume, load_volume, save_volume
from semantic_recon_ros.core.config.volume import VolumeConfig

CLASSES = ["a", "b", "c"]
CAMERA = PinholeCamera(100.0, 100.0, 39.5, 29.5, 80, 60)
# fill_radius 0: every prediction is kept, so chunked runs can be compared with one dense run
CONFIG = CompletionConfig(chunk_size=32, chunk_margin=4, batch_size=2, time_budget=60.0, min_observed_voxels=1,
                          fill_radius=0)


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
    low = engine.chunk_origins(chunks.min(dim=0).values[None])[0]
    size = (chunks.max(dim=0).values - chunks.min(dim=0).values + 1) * core + 2 * margin
    grid = torch.stack(torch.meshgrid(*[torch.arange(int(n)) for n in size], indexing="ij"), -1).view(-1, 3) + low
    values = volume.grid.read_voxels(grid)
    shape = (1, 1, *size.tolist())
    tsdf = values["tsdf"].view(shape)
    observed = (values["weight"] > 0).float().view(shape)
    color = (values["color"] / 255).T.reshape(1, 3, *size.tolist())
    with torch.inference_mode():
        dense = network(tsdf, observed, color)
    # compare on every voxel of the chunk cores that is not at the dense grid's own border
    interior = ((grid - low >= margin) & (grid - low < size - margin)).all(dim=1)
    predicted = volume.grid.read_voxels(grid[interior])
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
    changed = volume.grid.block_coords()[volume.grid.block_versions() == volume.version]
    cb, mb = engine.core_blocks, engine.margin_blocks
    touched = set()
    for b in (changed - engine.grid_offset).tolist():  # chunks whose input box (core + margin) holds a changed block
        ranges = [range((v - mb - cb) // cb + 1, (v + mb) // cb + 1) for v in b]
        touched |= {(x, y, z) for x in ranges[0] for y in ranges[1] for z in ranges[2]}
    second = engine.run()
    ran_first, ran_second = {tuple(c) for c in first.ran}, {tuple(c) for c in second.ran}
    assert 0 < len(ran_second) < len(ran_first)
    assert touched & ran_first == ran_second  # exactly the chunks that see the change


def test_a_loaded_map_is_completed_like_the_fused_one(tmp_path):
    volume = wall_volume()
    fused = CompletionEngine(LocalNetwork().eval(), volume, CONFIG).run()
    loaded = load_volume(save_volume(volume, tmp_path / "volume.pt"), "cpu")
    engine = CompletionEngine(LocalNetwork().eval(), loaded, CONFIG)
    assert {tuple(c) for c in engine.run().ran} == {tuple(c) for c in fused.ran} != set()
    assert torch.equal(loaded.grid.layer("pred_tsdf")[loaded.grid.slots], volume.grid.layer("pred_tsdf")[volume.grid.slots])


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
    origins["z"] = engine.chunk_origins(batch.chunks)[:, 2].float() * 0.05
    allocated = engine.write(batch, engine.predict(batch))
    assert allocated > 0  # blocks for the predicted floor, never observed
    completed = extract_mesh(volume, source="completed")
    assert completed.num_triangles > 100 and np.allclose(completed.vertices[:, 2], 0.8, atol=1e-4)
    assert (completed.labels == 1).all()
    observed = extract_mesh(volume, source="observed")
    both = extract_mesh(volume, source="both")
    assert both.num_triangles > observed.num_triangles
    assert (observed.labels == 1).all()  # network labels replace missing 2D labels where predicted


def complete_wall_with_a_floor_network(fill_radius: int, wall_class: int | None = None) -> SemanticTSDFVolume:
    """A wall at z = 1 m (5 cm voxels; 2D labels ``wall_class`` if given) completed by :class:`PlaneNetwork`,
    whose floor at z = 0.8 m lies 3 voxels from the wall's observed surface voxels (|sdf| < 1 voxel: z >= 0.95 m)."""
    volume = SemanticTSDFVolume(VolumeConfig(voxel_size=0.05, block_size=4), CLASSES, "cpu")
    labels = None if wall_class is None else np.full(CAMERA.shape, wall_class, np.int32)
    volume.integrate(np.full(CAMERA.shape, 1.0, np.float32), CAMERA, np.eye(4), labels=labels)
    engine = CompletionEngine(None, volume, replace(CONFIG, fill_radius=fill_radius))
    origins = {}
    engine.network = PlaneNetwork(lambda n: origins["z"][:n], 0.05, volume.config.truncation)
    chunks, versions = engine.plan()
    batch = engine.gather(chunks, versions)
    origins["z"] = engine.chunk_origins(batch.chunks)[:, 2].float() * 0.05
    engine.write(batch, engine.predict(batch))
    return volume


def test_predictions_beyond_the_fill_radius_are_discarded():
    assert extract_mesh(complete_wall_with_a_floor_network(2), source="completed").num_triangles == 0
    wall = extract_mesh(complete_wall_with_a_floor_network(0), source="observed")
    floor = extract_mesh(complete_wall_with_a_floor_network(3), source="completed")
    everywhere = extract_mesh(complete_wall_with_a_floor_network(0), source="completed")
    assert floor.num_triangles > 100 and np.allclose(floor.vertices[:, 2], 0.8, atol=1e-4)
    # the kept floor lies under the wall, at most 3 voxels beyond its sides
    for axis in (0, 1):
        assert floor.vertices[:, axis].min() >= wall.vertices[:, axis].min() - 3 * 0.05 - 1e-6
        assert floor.vertices[:, axis].max() <= wall.vertices[:, axis].max() + 3 * 0.05 + 1e-6
    assert floor.num_triangles < everywhere.num_triangles


def test_fused_labels_win_where_observed_and_the_network_labels_the_rest():
    volume = complete_wall_with_a_floor_network(3, wall_class=2)  # the network says class 1 everywhere
    observed = extract_mesh(volume, source="observed")
    assert observed.num_triangles > 0 and (observed.labels == 2).all()
    both = extract_mesh(volume, source="both")
    on_wall, on_floor = (np.abs(both.vertices[:, 2] - z) < 0.03 for z in (1.0, 0.8))
    assert on_wall.any() and on_floor.any()
    assert (both.labels[on_wall] == 2).all() and (both.labels[on_floor] == 1).all()
    completed = extract_mesh(volume, source="completed")  # the network's own classes only
    assert completed.num_triangles > 0 and (completed.labels == 1).all()


class LabelEcho(nn.Module):
    """A label-input network (``config.label_input``) that keeps the labels it gets and predicts them as classes."""

    config = S4RNetConfig(num_classes=3, label_input=True)

    def forward(self, tsdf, observed, color, labels):
        self.seen = labels
        return {"tsdf": tsdf, "color": color, "semantic_logits": 10 * label_channels(labels, 3, tsdf)}


def test_label_input_networks_get_the_fused_labels():
    volume = SemanticTSDFVolume(VolumeConfig(voxel_size=0.05, block_size=4), CLASSES, "cpu")
    labels = np.full(CAMERA.shape, -1, np.int32)
    labels[:, : CAMERA.width // 2] = 2  # the left half of the wall is labeled class 2, the right half not at all
    volume.integrate(np.full(CAMERA.shape, 1.0, np.float32), CAMERA, np.eye(4), labels=labels)
    network = LabelEcho()
    engine = CompletionEngine(network, volume, CONFIG)
    plan = engine.plan()
    batch = engine.gather(*plan)
    assert batch.labels.shape == (len(batch.chunks), *batch.tsdf.shape[2:])
    voted = volume.grid.layer("semantic")[volume.grid.slots].sum(dim=-1) > 0
    assert int((batch.labels == 2).sum()) == int(voted.sum()) > 0  # every voxel with votes, once, as class 2
    labeled = batch.labels >= 0
    assert int((labeled & (batch.labels != 2)).sum()) == 0 and bool((labeled <= (batch.observed[:, 0] > 0)).all())
    engine.run()
    assert torch.equal(network.seen, batch.labels[-len(network.seen):])
    predicted = volume.grid.layer("pred_weight") > 0
    classes = volume.grid.layer("pred_semantic").argmax(dim=-1)
    assert bool((classes[predicted & (volume.grid.layer("semantic").sum(dim=-1) > 0)] == 2).all())
    assert CompletionEngine(LocalNetwork(), volume, CONFIG).gather(*plan).labels is None  # label-free networks


def test_configuration_mismatches_fail_clearly():
    volume = SemanticTSDFVolume(VolumeConfig(voxel_size=0.05, block_size=8), CLASSES, "cpu")
    with pytest.raises(ValueError, match="multiples of the volume's block_size"):
        CompletionEngine(LocalNetwork(), volume, CompletionConfig(chunk_size=32, chunk_margin=4))
    with pytest.raises(ValueError, match="multiple of 16"):
        CompletionConfig(chunk_size=40)
    with pytest.raises(ValueError, match="must not exceed chunk_margin"):
        CompletionConfig(chunk_size=32, chunk_margin=4, fill_radius=5)
    with pytest.raises(ValueError, match="needs the completion network"):
        extract_mesh(SemanticTSDFVolume(VolumeConfig(), CLASSES, "cpu"), source="both")


def surface_chunks(engine: CompletionEngine) -> set[tuple[int, int, int]]:
    """Chunks (in the engine's grid) whose core holds a block with an observed voxel near the surface."""
    volume, B = engine.volume, engine.volume.config.block_size
    slots = volume.grid.slots
    near = ((volume.grid.layer("weight")[slots] > 0) & (volume.grid.layer("tsdf")[slots].abs() < 1)).any(dim=1)
    blocks = volume.grid.block_coords(slots)[near]
    first_core_block = engine.chunk_origins(torch.zeros(1, 3, dtype=torch.int64))[0] // B + engine.margin_blocks
    return {tuple(c) for c in torch.div(blocks - first_core_block, engine.core_blocks, rounding_mode="floor").tolist()}


def test_aligned_grid_needs_fewer_chunks_and_covers_the_surface():
    volume = wall_volume()  # a wall at z = 1 m = voxel 20: its truncation band spans blocks 4..6 (block_size 4)
    fixed = CompletionEngine(LocalNetwork().eval(), volume, replace(CONFIG, align_grid=False))
    aligned = CompletionEngine(LocalNetwork().eval(), volume, CONFIG)
    fixed_chunks, aligned_chunks = fixed.plan()[0], aligned.plan()[0]
    assert fixed.grid_offset.tolist() == [0, 0, 0]
    assert len(aligned_chunks) < len(fixed_chunks)  # the band straddles a core border of the fixed grid (at block 6)
    for engine, chunks in ((fixed, fixed_chunks), (aligned, aligned_chunks)):
        assert {tuple(c) for c in chunks.tolist()} == surface_chunks(engine)  # every surface block in exactly one core
    offset = aligned.grid_offset.clone()
    volume.integrate(np.full(CAMERA.shape, 1.2, np.float32), CAMERA, np.eye(4))  # new observations...
    assert aligned.plan()[0].numel() > 0 and torch.equal(aligned.grid_offset, offset)  # ...keep the grid
    aligned.reset()
    assert aligned.grid_offset is None


def test_chunks_without_observed_surface_are_not_run():
    volume = wall_volume()
    pose = np.eye(4)
    pose[0, 3] = 6.0  # a separate patch of wall, several chunks away
    volume.integrate(np.full(CAMERA.shape, 1.0, np.float32), CAMERA, pose)
    engine = CompletionEngine(LocalNetwork().eval(), volume, CONFIG)
    with_patch = {tuple(c) for c in engine.plan()[0].tolist()}
    engine.reset()
    # the patch becomes space observed as free (tsdf +1): its blocks stay, observed and changed, without surface
    patch = volume.grid.block_coords()
    patch = patch[patch[:, 0] * 4 * 0.05 > 4.5]
    assert len(patch) > 0
    local = torch.cartesian_prod(*[torch.arange(4)] * 3)
    voxels = (patch[:, None, :] * 4 + local).view(-1, 3)
    volume.grid.write_voxels(voxels, tsdf=torch.ones(len(voxels)))
    without_patch = {tuple(c) for c in engine.plan()[0].tolist()}
    assert len(without_patch) < len(with_patch)
    assert without_patch == surface_chunks(engine)


class ResettingNetwork(nn.Module):
    """Empties the map while it computes its first batch, as ~/reset_map does from another thread."""

    def __init__(self, engine_of):
        super().__init__()
        self.local, self.engine_of, self.calls = LocalNetwork().eval(), engine_of, 0

    def forward(self, tsdf, observed, color):
        self.calls += 1
        if self.calls == 1:
            engine = self.engine_of()
            engine.volume.clear()
            engine.reset()
        return self.local(tsdf, observed, color)


def test_a_reset_during_a_run_discards_its_predictions():
    volume = wall_volume()
    engines = []
    engine = CompletionEngine(ResettingNetwork(lambda: engines[0]), volume, CONFIG)
    engines.append(engine)
    stats = engine.run()
    assert stats.interrupted and stats.chunks_run == 0 and stats.chunks_pending == 0 and stats.blocks_allocated == 0
    assert volume.num_blocks == 0  # nothing was written into the emptied map
    assert engine.plan()[0].numel() == 0
    volume.integrate(np.full(CAMERA.shape, 1.0, np.float32), CAMERA, np.eye(4))
    again = engine.run()
    assert again.chunks_run > 0 and not again.interrupted and engine.grid_offset is not None


def test_cancel_progress_and_a_network_thread():
    reference_volume, volume = wall_volume(), wall_volume()
    network = LocalNetwork().eval()
    reference = CompletionEngine(network, reference_volume, CONFIG).run()
    engine = CompletionEngine(network, volume, CONFIG)
    calls, progress, threads = [], [], []

    def on_network_thread(compute):
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(lambda: (threads.append(threading.get_ident()), compute())[1]).result()

    first = engine.run(cancelled=lambda: bool(calls.append(1) or len(calls) > 1),
                       progress=lambda done, planned: progress.append((done, planned)),
                       run_network=on_network_thread)
    assert first.interrupted and first.chunks_run == CONFIG.batch_size and first.chunks_pending > 0
    assert progress == [(CONFIG.batch_size, reference.chunks_run)]
    assert threads and threading.get_ident() not in threads
    rest = engine.run(run_network=on_network_thread)
    assert first.chunks_run + rest.chunks_run == reference.chunks_run and not rest.interrupted
    for layer in ("pred_tsdf", "pred_semantic", "pred_weight"):  # same predictions as one uninterrupted run
        assert torch.equal(volume.grid.layer(layer)[volume.grid.slots],
                           reference_volume.grid.layer(layer)[reference_volume.grid.slots])


def test_checkpoint_settings_resolve_to_files(tmp_path, monkeypatch):
    assert resolve_checkpoint("") is None and resolve_checkpoint(None) is None
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*missing.pt"):
        resolve_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "net.pt").write_bytes(b"x")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_checkpoint("~/net.pt") == tmp_path / "net.pt"
    try:
        installed = share_file(DEFAULT_CHECKPOINT_FILE)
    except FileNotFoundError:
        with pytest.raises(FileNotFoundError, match="'default': the default completion model is not installed"):
            resolve_checkpoint(DEFAULT_CHECKPOINT)
    else:
        assert resolve_checkpoint(DEFAULT_CHECKPOINT) == installed
