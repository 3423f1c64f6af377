"""Running a network over the live map: exact overlap-tile chunking (predictions and their confidences), grid
alignment, incremental scheduling, budgets, resets and cancellation during a run, which predictions the map trusts
and whose labels win, checkpoint settings and calibrations."""

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
    network_dtype,
    resolve_checkpoint,
)
from semantic_recon_ros.core.completion_confidence import ConfidenceCalibration, surface_distance
from semantic_recon_ros.core.config.completion import CompletionConfig
from semantic_recon_ros.core.meshing import extract_mesh
from semantic_recon_ros.core.models import (S4RNet, S4RNetConfig, save_calibration, save_checkpoint,
                                            set_fast_cpu_convolutions)
from semantic_recon_ros.core.models.fast_conv import bfloat16_supported, native_bfloat16_available
from semantic_recon_ros.core.resources import share_file
from semantic_recon_ros.core.voxel_map import surface_voxel_points
from semantic_recon_ros.core.map import SemanticTSDFVolume, load_volume, save_volume
from semantic_recon_ros.core.config.volume import VolumeConfig

from support.completion_chunks import chunks_seeing

CLASSES = ["a", "b", "c"]
CAMERA = PinholeCamera(100.0, 100.0, 39.5, 29.5, 80, 60)
# min_confidence 0: blocks for every predicted surface, so chunked runs can be compared with one dense run
CONFIG = CompletionConfig(chunk_size=32, chunk_margin=4, batch_size=2, time_budget=60.0, min_observed_voxels=1,
                          min_confidence=0.0)
# confidence falling with the distance to the observed surface (1..4 voxels = chunk_margin, then farther) and
# rising with the network's class probability
GRADED = ConfidenceCalibration((2.0, 1.0, 0.0, -1.0, -2.0), 1.5)


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


@pytest.mark.parametrize("batch_size", [1, 3])  # one chunk per network call (the default) or several
def test_chunked_predictions_and_confidences_equal_one_dense_run(batch_size):
    volume = wall_volume()
    network = LocalNetwork().eval()
    engine = CompletionEngine(network, volume, replace(CONFIG, batch_size=batch_size), calibration=GRADED)
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
    # the confidences too: distances measured across chunk borders as in one dense box
    surface = (observed > 0) & (tsdf.abs() < 1 / volume.config.truncation_voxels)
    distance = surface_distance(surface, GRADED.max_distance).reshape(-1)[interior]
    expected_confidence = GRADED.confidence(distance, expected_probs.amax(dim=1))
    assert torch.allclose(predicted["pred_confidence"], expected_confidence, atol=1e-5)
    assert len(torch.unique(predicted["pred_confidence"].round(decimals=3))) > 5  # graded, not just 0 and 1


def test_surface_distance_is_the_chebyshev_distance_up_to_its_limit():
    generator = torch.Generator().manual_seed(0)
    surface = torch.rand((2, 1, 9, 10, 11), generator=generator) > 0.985
    surface[1] = False  # a box without surface: everything is farther than the limit
    distance = surface_distance(surface, 3)
    points = surface[0, 0].nonzero()
    grid = torch.stack(torch.meshgrid(*[torch.arange(n) for n in (9, 10, 11)], indexing="ij"), -1).view(-1, 1, 3)
    chebyshev = (grid - points[None]).abs().amax(dim=-1).amin(dim=1).view(9, 10, 11)
    assert len(points) > 0 and torch.equal(distance[0, 0], chebyshev.clamp(max=4))
    assert bool((distance[1] == 4).all())


def test_calibrations_round_trip_and_the_uncalibrated_rule_is_the_former_fill_radius():
    assert ConfidenceCalibration.from_dict(GRADED.to_dict()) == GRADED
    with pytest.raises(ValueError, match="invalid confidence calibration"):
        ConfidenceCalibration.from_dict({"distance_logits": [0.0, 1.0]})
    with pytest.raises(ValueError, match="at least 2 distance logits"):
        ConfidenceCalibration((1.0,), 0.0)
    probability = torch.full((12,), 0.7)
    distance = torch.arange(12)
    expected = torch.sigmoid(torch.tensor([2.0, 2, 1, 0, -1, -2, -2, -2, -2, -2, -2, -2]) + 1.5 * 0.7)
    assert torch.allclose(GRADED.confidence(distance, probability), expected)  # 0 counts as 1; > 4 as farther
    uncalibrated = ConfidenceCalibration.uncalibrated().confidence(distance, probability)
    assert uncalibrated.tolist() == [1.0] * 4 + [pytest.approx(0.0, abs=1e-12)] * 8  # 1 within 3 voxels, 0 beyond


def test_only_changed_chunks_are_rerun():
    volume = wall_volume()
    engine = CompletionEngine(LocalNetwork().eval(), volume, CONFIG)
    first = engine.run()
    assert engine.plan()[0].numel() == 0 and engine.run().chunks_run == 0  # nothing changed: nothing to do
    pose = np.eye(4)
    pose[0, 3] = 1.8
    volume.integrate(np.full(CAMERA.shape, 1.0, np.float32), CAMERA, pose)  # re-observe the right end
    changed = volume.grid.block_coords()[volume.grid.block_versions() == volume.version]
    touched = chunks_seeing(engine, changed)  # chunks whose input box (core + margin) holds a changed block
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


def complete_wall_with_a_floor_network(calibration: ConfidenceCalibration | None = None,
                                       wall_class: int | None = None) -> SemanticTSDFVolume:
    """A wall at z = 1 m (5 cm voxels; 2D labels ``wall_class`` if given) completed by :class:`PlaneNetwork`,
    whose floor at z = 0.8 m lies 3 voxels from the wall's observed surface voxels (|sdf| < 1 voxel: z >= 0.95 m);
    every prediction is stored, with confidences by ``calibration`` (None: uncalibrated)."""
    volume = SemanticTSDFVolume(VolumeConfig(voxel_size=0.05, block_size=4), CLASSES, "cpu")
    labels = None if wall_class is None else np.full(CAMERA.shape, wall_class, np.int32)
    volume.integrate(np.full(CAMERA.shape, 1.0, np.float32), CAMERA, np.eye(4), labels=labels)
    engine = CompletionEngine(None, volume, CONFIG, calibration=calibration)
    origins = {}
    engine.network = PlaneNetwork(lambda n: origins["z"][:n], 0.05, volume.config.truncation)
    chunks, versions = engine.plan()
    batch = engine.gather(chunks, versions)
    origins["z"] = engine.chunk_origins(batch.chunks)[:, 2].float() * 0.05
    engine.write(batch, engine.predict(batch))
    return volume


def test_the_map_adds_the_network_surface_only_where_it_is_confident():
    volume = complete_wall_with_a_floor_network()  # uncalibrated: confidence 1 within 3 voxels, 0 beyond
    wall = extract_mesh(volume, source="observed")
    added = extract_mesh(volume, source="additions")
    everywhere = extract_mesh(volume, source="additions", completion=replace(CONFIG, min_confidence=0.0))
    # the additions: the floor, and seams where the observed wall's field meets the predicted one next to it
    floor = added.vertices[np.abs(added.vertices[:, 2] - 0.8) < 1e-4]
    assert len(floor) > 100 and np.allclose(added.surface_confidence, 1.0)
    # the trusted floor lies under the wall, at most 3 voxels beyond its sides; the whole prediction goes farther
    for axis in (0, 1):
        assert floor[:, axis].min() >= wall.vertices[:, axis].min() - 3 * 0.05 - 1e-6
        assert floor[:, axis].max() <= wall.vertices[:, axis].max() + 3 * 0.05 + 1e-6
    assert (np.abs(everywhere.vertices[:, 2] - 0.8) < 1e-4).sum() > len(floor)
    # the network alone ("completed") is not filtered; the map ("both") is the observed surface plus the additions
    completed = extract_mesh(volume, source="completed")
    assert np.allclose(completed.vertices[:, 2], 0.8, atol=1e-4) and len(completed.vertices) > len(floor)
    both = extract_mesh(volume, source="both")
    assert both.num_triangles == wall.num_triangles + added.num_triangles
    assert wall.surface_confidence is None and both.surface_confidence.min() == pytest.approx(1.0)
    # a calibration that trusts the network less: the floor, 3 voxels from the wall, is below 0.5
    doubtful = complete_wall_with_a_floor_network(ConfidenceCalibration((3.0, 1.0, -1.0, -3.0, -5.0), 0.0))
    assert not (np.abs(extract_mesh(doubtful, source="additions").vertices[:, 2] - 0.8) < 1e-4).any()
    lenient = extract_mesh(doubtful, source="additions", completion=replace(CONFIG, min_confidence=0.2))
    on_floor = np.abs(lenient.vertices[:, 2] - 0.8) < 1e-4
    assert on_floor.sum() > 100
    assert np.allclose(lenient.surface_confidence[on_floor], torch.sigmoid(torch.tensor(-1.0)).item())


def test_the_network_labels_win_where_it_is_sure_and_where_nothing_was_voted():
    volume = complete_wall_with_a_floor_network(wall_class=2)  # the network: class 1 everywhere, probability 0.987
    sure = torch.softmax(torch.tensor([0.0, 5.0, 0.0]), dim=0)[1].item()
    for override, wall_label in ((0.4, 1), (sure - 1e-3, 1), (sure + 1e-3, 2), (1.0, 2)):
        config = replace(CONFIG, label_override_probability=override)
        observed = extract_mesh(volume, source="observed", completion=config)
        assert observed.num_triangles > 0 and (observed.labels == wall_label).all(), override
        both = extract_mesh(volume, source="both", completion=config)
        on_wall, on_floor = (np.abs(both.vertices[:, 2] - z) < 0.03 for z in (1.0, 0.8))
        assert on_wall.any() and on_floor.any()
        assert (both.labels[on_wall] == wall_label).all() and (both.labels[on_floor] == 1).all()  # floor: no votes
    completed = extract_mesh(volume, source="completed")  # the network's own classes only
    assert completed.num_triangles > 0 and (completed.labels == 1).all()


class LabelEcho(nn.Module):
    """A label-input network (``config.label_input``) that keeps the labels it gets and predicts them as classes."""

    config = S4RNetConfig(num_classes=3, label_input=True)

    def forward(self, tsdf, observed, color, labels):
        self.seen = labels
        one_hot = torch.nn.functional.one_hot(labels.clamp(min=0), 3).movedim(-1, 1) * (labels >= 0)[:, None]
        return {"tsdf": tsdf, "color": color, "semantic_logits": 10.0 * one_hot}


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
    best, most_voted = engine.read_chunks(batch.chunks, ("semantic",))["semantic"].max(dim=1)  # dense votes' argmax
    assert torch.equal(batch.labels, torch.where(best > 0, most_voted, -1))
    engine.run()
    assert torch.equal(network.seen, batch.labels[-len(network.seen):])
    predicted = volume.grid.layer("pred_weight") > 0
    classes = volume.grid.layer("pred_semantic").argmax(dim=-1)
    assert bool((classes[predicted & (volume.grid.layer("semantic").sum(dim=-1) > 0)] == 2).all())
    assert CompletionEngine(LocalNetwork(), volume, CONFIG).gather(*plan).labels is None  # label-free networks


def test_bfloat16_completion_writes_what_float32_does_within_its_precision():
    assert network_dtype("float32", "cpu") == torch.float32
    assert network_dtype("auto", "cpu") == (torch.bfloat16 if native_bfloat16_available() else torch.float32)
    assert network_dtype("bfloat16", "cuda") == torch.float32  # the oneDNN fast path is the CPU's
    if not bfloat16_supported():  # a CPU without AVX512: refused with a clear error
        with pytest.raises(ValueError, match="precision bfloat16"):
            network_dtype("bfloat16", "cpu")
        return
    assert network_dtype("bfloat16", "cpu") == torch.bfloat16
    torch.manual_seed(0)
    network = S4RNet(S4RNetConfig(num_classes=len(CLASSES), base_width=4, label_input=True)).eval()
    set_fast_cpu_convolutions(network, True)
    volumes = {}
    for precision in ("float32", "bfloat16"):
        volumes[precision] = wall_volume()
        CompletionEngine(network, volumes[precision], replace(CONFIG, precision=precision)).run()
    B = volumes["float32"].config.block_size
    voxels = (volumes["float32"].grid.block_coords()[:, None] * B + torch.cartesian_prod(*[torch.arange(B)] * 3))
    reference, low = (volumes[name].grid.read_voxels(voxels.view(-1, 3)) for name in ("float32", "bfloat16"))
    both = (reference["pred_weight"] == 1) & (low["pred_weight"] == 1)
    assert int(both.sum()) > 0.99 * int((reference["pred_weight"] == 1).sum()) > 1000
    assert low["pred_tsdf"].dtype == torch.float32  # the map's layers stay float32
    assert (low["pred_tsdf"][both] - reference["pred_tsdf"][both]).abs().max() < 0.05
    assert (low["pred_semantic"][both] - reference["pred_semantic"][both]).abs().max() < 0.05
    assert not torch.equal(low["pred_tsdf"][both], reference["pred_tsdf"][both])


def test_configuration_mismatches_fail_clearly():
    volume = SemanticTSDFVolume(VolumeConfig(voxel_size=0.05, block_size=8), CLASSES, "cpu")
    with pytest.raises(ValueError, match="multiples of the volume's block_size"):
        CompletionEngine(LocalNetwork(), volume, CompletionConfig(chunk_size=32, chunk_margin=4))
    with pytest.raises(ValueError, match="multiple of 16"):
        CompletionConfig(chunk_size=40)
    with pytest.raises(ValueError, match=r"min_confidence = 1.5 is outside \[0, 1\]"):
        CompletionConfig(min_confidence=1.5)
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
    for layer in ("pred_tsdf", "pred_semantic", "pred_confidence", "pred_weight"):  # as one uninterrupted run
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


def test_a_checkpoint_carries_its_calibration_to_the_engine(tmp_path):
    path = tmp_path / "net.pt"
    network = S4RNet(S4RNetConfig(num_classes=3, base_width=4))
    save_checkpoint(path, network, CLASSES, voxel_size=0.05, truncation=0.2)
    volume = SemanticTSDFVolume(VolumeConfig(voxel_size=0.05, block_size=4), CLASSES, "cpu")
    assert CompletionEngine.from_checkpoint(path, volume, CONFIG).calibration == ConfidenceCalibration.uncalibrated()
    path.chmod(0o644)
    save_calibration(path, GRADED.to_dict())
    assert path.stat().st_mode & 0o777 == 0o644  # the file stays readable by others, as installed models must be
    engine = CompletionEngine.from_checkpoint(path, volume, CONFIG)
    assert engine.calibration == GRADED
    weights = torch.load(path, weights_only=True)["state_dict"]
    assert all(torch.equal(weights[name], value) for name, value in network.state_dict().items())
    save_calibration(path, {"distance_logits": "none"})
    with pytest.raises(ValueError, match="invalid confidence calibration"):
        CompletionEngine.from_checkpoint(path, volume, CONFIG)


def test_voxel_maps_flag_the_additions_and_carry_their_confidence():
    volume = complete_wall_with_a_floor_network(GRADED)
    completion = replace(CONFIG, min_confidence=0.75)  # the floor, 3 voxels away: 0.81; 4 voxels away: 0.62
    both = surface_voxel_points(volume, 1.0, "both", completion)
    observed = surface_voxel_points(volume, 1.0, "observed", completion)
    additions = surface_voxel_points(volume, 1.0, "additions", completion)
    assert len(observed) > 0 and len(additions) > 0 and len(both) == len(observed) + len(additions)
    assert (both["surface_confidence"][both["observed"] == 1] == 1.0).all()
    np.testing.assert_array_equal(both[both["observed"] == 0], additions)
    assert (additions["observed"] == 0).all() and (additions["surface_confidence"] >= 0.75).all()
    assert (observed["surface_confidence"] == 1.0).all()
    # the voxels the network predicted but the map does not trust carry their confidence in the raw view
    completed = surface_voxel_points(volume, 1.0, "completed", completion)
    assert (completed["surface_confidence"] < 0.75).any() and len(completed) > len(additions)
