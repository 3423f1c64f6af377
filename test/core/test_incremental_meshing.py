"""Region-by-region meshes and voxel maps of a changing map equal a full re-mesh / resample after every change:
frames fused one by one (real 7-Scenes frames), 2D labels fused later, blocks dropped by the clearing radius, the
completion network's predictions written, the map cleared and reloaded; and only the changed regions are redone.
The compiled kernel's marching cubes give the torch path's mesh exactly (label shares and surface confidences to
their last bits)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semantic_recon_ros.core.config.completion import CompletionConfig
from semantic_recon_ros.core.config.volume import VolumeConfig
from semantic_recon_ros.core.incremental_meshing import BlockChanges, RegionMesher, RegionVoxelMap
from semantic_recon_ros.core.map import SemanticTSDFVolume, restore_volume, volume_state
from semantic_recon_ros.core.mesh import SemanticMesh
from semantic_recon_ros.core.meshing import extract_mesh
from semantic_recon_ros.core.voxel_map import VOXEL_POINT_DTYPE, surface_voxel_points
from support.frames import downscale

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CLASSES = ["a", "b", "c"]
PREDICTION_LAYERS = {"pred_tsdf": ((), 1.0), "pred_color": ((3,), 0.5), "pred_semantic": ((3,), 0.0),
                     "pred_confidence": ((), 0.0), "pred_weight": ((), 0.0)}


@pytest.fixture(scope="module")
def frames(seven_scenes):
    return [downscale(frame, 4) for frame in seven_scenes.subset(stride=40, max_frames=8)]


def assert_same_mesh(a: SemanticMesh, b: SemanticMesh, shares_to_last_bits: bool = False) -> None:
    """Equal meshes; with ``shares_to_last_bits`` the float label shares and surface confidences may differ in
    their last bits (the kernel's vertex attributes against the torch path's)."""
    assert a.num_triangles == b.num_triangles and a.num_vertices == b.num_vertices
    np.testing.assert_array_equal(a.triangles, b.triangles)
    for name in ("vertices", "colors", "labels", "confidence", "surface_confidence"):
        if shares_to_last_bits and name in ("confidence", "surface_confidence") and getattr(a, name) is not None:
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-6, atol=1e-7, err_msg=name)
        else:
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def voxel_rows(points: np.ndarray) -> np.ndarray:
    """The points sorted by position (region order and key order differ; the sets must not)."""
    return np.sort(points, order=["x", "y", "z"])


def update_in_steps(cache, max_blocks: int = 40) -> int:
    """Update until nothing is pending, at most ``max_blocks`` blocks per step (as the mapper does, releasing its
    lock in between); returns the number of steps."""
    steps = 1
    cache.update(max_blocks)
    while cache.pending:
        cache.update(max_blocks)
        steps += 1
    return steps


def with_predictions(volume: SemanticTSDFVolume) -> None:
    for name, (shape, fill) in PREDICTION_LAYERS.items():
        volume.grid.add_layer(name, (volume.config.voxels_per_block, *shape), fill)


def predict_floor(volume: SemanticTSDFVolume, first_block: int, count: int) -> torch.Tensor:
    """Write a predicted plane (and class 1) into ``count`` blocks from the ``first_block``-th, as the completion
    network's write does; returns the slots written."""
    grid, cfg = volume.grid, volume.config
    slots = grid.slots[first_block:first_block + count]
    z = grid.voxel_coords(slots[:, None] * cfg.voxels_per_block + torch.arange(cfg.voxels_per_block))[..., 2]
    plane_z = int(grid.block_coords(slots)[:, 2].float().mean() * cfg.block_size) + 3
    grid.layer("pred_tsdf")[slots] = ((plane_z + 0.5 - z) / cfg.truncation_voxels).clamp(-1, 1)
    grid.layer("pred_semantic")[slots] = torch.tensor([0.1, 0.8, 0.1])
    grid.layer("pred_confidence")[slots] = 0.9
    grid.layer("pred_weight")[slots] = 1.0
    grid.mark_rewritten(slots)
    return slots


def test_block_changes_report_changes_additions_and_removals(frames):
    volume = SemanticTSDFVolume(VolumeConfig(voxel_size=0.04), CLASSES, "cpu")
    changes = BlockChanges(volume.grid)
    assert [t.numel() for t in changes.take()] == [0, 0, 0]
    volume.integrate(frames[0].depth, frames[0].camera, frames[0].T_world_cam)
    observed, rewritten, removed = changes.take()
    assert torch.equal(observed, volume.grid.keys) and rewritten.numel() == 0 and removed.numel() == 0
    assert [t.numel() for t in changes.take()] == [0, 0, 0]  # nothing new
    volume.grid.mark_rewritten(volume.grid.slots[:5])
    observed, rewritten, removed = changes.take()
    assert observed.numel() == 0 and torch.equal(rewritten, volume.grid.keys[:5]) and removed.numel() == 0
    volume.grid.mark_rewritten(volume.grid.slots[:3])
    volume.grid.mark_changed(volume.grid.slots[1:2])  # observed after the rewrite: an observation change
    observed, rewritten, _ = changes.take()
    assert torch.equal(observed, volume.grid.keys[1:2]) and torch.equal(rewritten, volume.grid.keys[[0, 2]])
    before = volume.grid.keys
    volume.grid.remove(torch.arange(volume.num_blocks) % 2 == 0)
    observed, rewritten, removed = changes.take()
    assert observed.numel() == 0 and rewritten.numel() == 0 and torch.equal(removed, before[::2])


@pytest.mark.parametrize("source", ["observed", "both", "additions"])
def test_region_meshes_equal_a_full_remesh_after_every_change(frames, source):
    # a clearing radius that drops blocks as the camera moves on
    volume = SemanticTSDFVolume(VolumeConfig(voxel_size=0.04, clearing_radius=2.5), CLASSES, "cpu")
    with_predictions(volume)
    completion = CompletionConfig(min_confidence=0.5, label_override_probability=0.4)
    mesher = RegionMesher(volume, source, completion, region_blocks=3)
    voxels = RegionVoxelMap(volume, 1.0, source, completion, region_blocks=3)
    blocks_dropped = 0
    for index, frame in enumerate(frames):
        stats = volume.integrate(frame.depth, frame.camera, frame.T_world_cam, color=frame.color)
        blocks_dropped += stats.blocks_dropped
        if index % 2:  # labels of an earlier frame arrive late (a segmented keyframe)
            labels = (frames[index - 1].depth * 10).astype(np.int64) % 3
            volume.integrate_semantics(frames[index - 1].depth, frame.camera, frames[index - 1].T_world_cam,
                                       labels=labels)
        if index in (2, 5):
            predict_floor(volume, volume.num_blocks // 3, 40)
        steps = update_in_steps(mesher)
        update_in_steps(voxels)
        assert index > 0 or steps > 1  # the first frame alone holds more than 40 blocks
        assert_same_mesh(mesher.mesh(), extract_mesh(volume, source=source, completion=completion, region_blocks=3))
        assert voxels.points().dtype == VOXEL_POINT_DTYPE
        np.testing.assert_array_equal(voxel_rows(voxels.points()),
                                      voxel_rows(surface_voxel_points(volume, 1.0, source, completion)))
    assert blocks_dropped > 0 and mesher.mesh().num_triangles > 0
    assert mesher.update() == []  # nothing changed, nothing redone
    # a change of a few blocks redoes only their regions and those of the blocks whose cubes read them
    written = predict_floor(volume, 10, 2)
    coords = volume.grid.block_coords(written)
    readers = {tuple(c) for b in coords.tolist() for c in (np.array(b)[None] - np.indices((2, 2, 2)).reshape(3, -1).T)}
    expected = {tuple(np.floor_divide(c, 3)) for c in readers}
    redone = set(mesher.update())
    if source == "observed":  # predictions only: the regions whose labels changed are relabelled, not re-meshed
        assert redone and redone <= expected
    else:
        assert redone == expected and len(expected) < len(mesher.changes_since(0))
    assert_same_mesh(mesher.mesh(), extract_mesh(volume, source=source, completion=completion, region_blocks=3))

    assert volume.use_fusion_kernel  # the meshes above come from the kernel; the torch path meshes the same
    volume.use_fusion_kernel = False
    assert_same_mesh(mesher.mesh(), extract_mesh(volume, source=source, completion=completion, region_blocks=3),
                     shares_to_last_bits=True)
    volume.use_fusion_kernel = True

    state = volume_state(volume)
    volume.clear()
    assert len(mesher.update()) > 0 and mesher.mesh().num_triangles == 0 and voxels.update() and voxels.points().size == 0
    restore_volume(volume, state)
    mesher.update(), voxels.update()
    assert_same_mesh(mesher.mesh(), extract_mesh(volume, source=source, completion=completion, region_blocks=3))


def test_predictions_relabel_the_observed_mesh_without_remeshing_it(frames):
    volume = SemanticTSDFVolume(VolumeConfig(voxel_size=0.04), CLASSES, "cpu")
    with_predictions(volume)
    labels = (frames[0].depth * 10).astype(np.int64) % 3
    volume.integrate(frames[0].depth, frames[0].camera, frames[0].T_world_cam, color=frames[0].color, labels=labels)
    for frame in frames[1:4]:  # no labels: voxels seen only here have no votes
        volume.integrate(frame.depth, frame.camera, frame.T_world_cam, color=frame.color)
    # the network's class (probability 0.8) replaces no votes (override above 0.9), only missing ones
    completion = CompletionConfig(min_confidence=0.5, label_override_probability=0.9)
    mesher = RegionMesher(volume, "observed", completion, region_blocks=3)
    update_in_steps(mesher)
    before = mesher.changes_since(0)
    predict_floor(volume, 0, volume.num_blocks)
    redone = set(mesher.update())
    after = mesher.changes_since(0)
    assert after.keys() == before.keys() and redone and len(redone) < len(before)
    for region, piece in after.items():
        if region not in redone:
            assert piece is before[region]
            continue
        assert piece.mesh.triangles is before[region].mesh.triangles  # the same triangles, not re-marched
        assert piece.mesh.vertices is before[region].mesh.vertices and piece.mesh.colors is before[region].mesh.colors
        assert (piece.mesh.labels != before[region].mesh.labels).any()
        assert (piece.mesh.labels[piece.mesh.labels != before[region].mesh.labels] == 1).all()  # the network's
    assert_same_mesh(mesher.mesh(), extract_mesh(volume, source="observed", completion=completion, region_blocks=3))
    assert mesher.update() == []


def test_changes_since_give_each_consumer_what_it_has_not_seen(frames):
    volume = SemanticTSDFVolume(VolumeConfig(voxel_size=0.04), CLASSES, "cpu")
    mesher = RegionMesher(volume, region_blocks=2)
    volume.integrate(frames[0].depth, frames[0].camera, frames[0].T_world_cam)
    first = set(mesher.update())
    seen = mesher.revision
    everything = mesher.changes_since(0)
    assert set(everything) <= first and all(piece is not None for piece in everything.values())
    volume.integrate(frames[1].depth, frames[1].camera, frames[1].T_world_cam)
    second = mesher.update()
    assert set(mesher.changes_since(seen)) == set(second)
    volume.grid.remove(torch.ones(volume.num_blocks, dtype=torch.bool))
    mesher.update()
    vanished = mesher.changes_since(seen)
    assert vanished and all(piece is None for piece in vanished.values())  # consumers learn what to delete
    assert mesher.changes_since(0) == {}


def test_region_pieces_own_their_arrays(frames):
    """A piece must not be a view into the arrays of the update that made it: a long-lived piece would keep all of
    that update's vertices alive (peak memory of bench_fusion.py's 16 m hall case: 780 MB against 611 MB)."""
    volume = SemanticTSDFVolume(VolumeConfig(voxel_size=0.04), CLASSES, "cpu")
    mesher = RegionMesher(volume, region_blocks=2)
    volume.integrate(frames[0].depth, frames[0].camera, frames[0].T_world_cam)
    mesher.update()
    pieces = mesher.pieces()
    assert len(pieces) > 2
    for piece in pieces:
        for name in ("vertices", "colors", "labels", "confidence", "triangles"):
            assert getattr(piece.mesh, name).base is None, name
        assert piece.vertex_keys.base is None and np.all(np.diff(piece.vertex_keys) > 0)


def test_a_map_too_far_from_the_origin_is_refused_with_a_clear_error():
    volume = SemanticTSDFVolume(VolumeConfig(voxel_size=0.01, max_depth=2.0, min_depth=0.1), CLASSES, "cpu")
    far = torch.tensor([[70_000, 0, 0]])  # 5.6 km away in 1 cm voxels, past the edge keys' range
    volume.grid.allocate(far)
    volume.grid.layer("tsdf")[volume.grid.slots] = torch.linspace(-1, 1, 512)
    volume.grid.layer("weight")[volume.grid.slots] = 1.0
    with pytest.raises(ValueError, match="too far"):
        extract_mesh(volume)
