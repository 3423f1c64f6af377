"""One frame's single-view prediction and its low-weight fill of a map's never-observed voxels
(core/single_view_prediction.py, core/live_single_view.py). Room 31 (a validation room, not one of the held-out
rooms 900-909) at 160x120, the shipped single-view model."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.completion import add_prediction_layers
from semantic_recon_ros.core.config import VolumeConfig
from semantic_recon_ros.core.datasets import open_sequence
from semantic_recon_ros.core.live_single_view import LiveSingleView
from semantic_recon_ros.core.mapper import MapFrame, Mapper
from semantic_recon_ros.core.meshing import extract_mesh
from semantic_recon_ros.core.models.single_view import FrustumGrid, FrustumGridConfig
from semantic_recon_ros.core.single_view_prediction import (SingleViewPrediction, SingleViewPredictor, UnobservedFill,
                                                           resolve_single_view_checkpoint)
from semantic_recon_ros.core.synthetic import DEFAULT_CAMERA, write_synthetic_scene
from semantic_recon_ros.core.config.completion import CompletionConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLASSES = load_class_set()
CAMERA = DEFAULT_CAMERA.scaled(160, 120)
SEED = 31
FILL_WEIGHT = 0.2


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    return list(open_sequence(write_synthetic_scene(tmp_path_factory.mktemp("single_view_fill") / "room", seed=SEED,
                                                    num_frames=4, camera=CAMERA)))


@pytest.fixture(scope="module")
def predictor():
    return SingleViewPredictor.from_checkpoint(resolve_single_view_checkpoint("default"), "cpu")


def map_frame(frame) -> MapFrame:
    return MapFrame(frame.camera, frame.T_world_cam, frame.color, frame.depth)


def fused_mapper(frames) -> Mapper:
    mapper = Mapper(VolumeConfig(), CLASSES, "cpu")
    for frame in frames:
        mapper.integrate(map_frame(frame))
    return mapper


def layers(mapper: Mapper) -> dict[str, torch.Tensor]:
    """Every layer of every block, by block coordinates (sorted), so maps with other slots compare."""
    grid = mapper.volume.grid
    return {"coords": grid.block_coords().clone(),
            **{name: grid.values(name).clone() for name in grid.layer_names}}


def test_the_prediction_of_a_room_frame_lies_in_the_cameras_frustum(room, predictor):
    frame = room[3]
    prediction = predictor.predict(frame.color, frame.camera, frame.T_world_cam)
    grid = prediction.grid
    assert tuple(prediction.tsdf.shape) == grid.shape and prediction.covered.all()  # the trained camera: no resampling
    assert np.array_equal(prediction.T_world_cam, frame.T_world_cam)
    mesh = prediction.mesh()
    assert mesh.num_triangles > 1000
    x, y, z = mesh.vertices.T.astype(np.float64)
    assert (z >= grid.config.near).all() and (z <= grid.config.far).all()
    u, v = x / z * CAMERA.fx + CAMERA.cx, y / z * CAMERA.fy + CAMERA.cy
    assert (u >= -0.5).all() and (u <= CAMERA.width - 0.5).all()
    assert (v >= -0.5).all() and (v <= CAMERA.height - 0.5).all()
    assert (mesh.labels >= 0).all() and set(np.unique(mesh.labels)) <= set(range(CLASSES.num_classes))


def test_a_planar_prediction_fills_the_map_exactly_where_the_plane_lies():
    """A prediction known in closed form: a plane at z = 2 m in a camera turned 30 degrees about the world's
    vertical, class "table"; the filled voxels are the map's band around that plane, with its signed distance (the
    grid's truncation of 1 m keeps the TSDF linear in depth, so that trilinear interpolation is exact there)."""
    config = FrustumGridConfig(cells_x=32, cells_y=24, cells_depth=32, near=0.3, far=5.0, truncation=1.0)
    grid = FrustumGrid(CAMERA, config)
    plane = 2.0
    tsdf = ((plane - grid.cell_centers_cam("cpu")[..., 2]) / config.truncation).clamp(-1, 1)
    probabilities = torch.zeros((CLASSES.num_classes, *grid.shape))
    probabilities[CLASSES.index("table")] = 1.0
    angle = np.radians(30)
    pose = np.eye(4)
    pose[:3, :3] = [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
    pose[:3, 3] = [0.3, -0.2, 0.1]
    prediction = SingleViewPrediction(grid, tsdf, probabilities, torch.ones(grid.shape[1:], dtype=torch.bool), pose,
                                      CLASSES.names, 0.0)
    mapper = Mapper(VolumeConfig(), CLASSES, "cpu")
    stats = mapper.fill_unobserved(prediction, FILL_WEIGHT)
    volume = mapper.volume
    assert stats.voxels_filled > 1000 and stats.blocks_allocated == volume.num_blocks and mapper.has_additions
    filled = (volume.grid.values("pred_weight") > 0).flatten(0, 1)
    flat = (volume.grid.slots[:, None] * volume.config.voxels_per_block
            + torch.arange(volume.config.voxels_per_block)).flatten()[filled]
    centres = volume.grid.voxel_coords(flat).double() * volume.config.voxel_size
    camera_z = ((centres - torch.as_tensor(pose[:3, 3])) @ torch.as_tensor(pose[:3, :3]))[:, 2]
    expected = (plane - camera_z) / volume.config.truncation
    pred_tsdf = volume.grid.layer("pred_tsdf").view(-1)[flat].double()
    assert expected.abs().max() < 1.0 + 1e-4  # only the band is written
    assert torch.allclose(pred_tsdf, expected, atol=1e-3)
    assert (volume.grid.layer("pred_weight").view(-1)[flat] == FILL_WEIGHT).all()
    assert (volume.grid.layer("pred_semantic").view(-1, CLASSES.num_classes)[flat].argmax(1)
            == CLASSES.index("table")).all()
    # shown as the network's additions where their confidence is trusted, never as observed surface
    assert extract_mesh(volume).num_triangles == 0
    trusting_fills = CompletionConfig(min_confidence=FILL_WEIGHT)
    assert extract_mesh(volume, source="additions", completion=trusting_fills).num_triangles > 0
    assert extract_mesh(volume, source="additions").num_triangles == 0  # below the default min_confidence


def test_the_fill_writes_only_voxels_never_observed_and_never_the_completion_networks(room, predictor):
    mapper = fused_mapper(room[:2])
    frame = room[3]
    prediction = predictor.predict(frame.color, frame.camera, frame.T_world_cam)
    add_prediction_layers(mapper.volume)
    grid = mapper.volume.grid
    # the completion network predicted the existing block where the fill would write most
    fill = UnobservedFill.of(mapper.volume, prediction)
    slots = grid.lookup_keys(fill.keys)
    writable = (fill.band & (grid.layer("weight")[slots.clamp(min=0)] == 0)).sum(dim=1) * (slots >= 0)
    grid.layer("pred_weight")[slots[writable.argmax()]] = 1.0
    grid.layer("pred_tsdf")[slots[writable.argmax()]] = -0.5
    before = layers(mapper)
    observed_mesh = extract_mesh(mapper.volume)

    assert mapper.fill_unobserved(prediction, FILL_WEIGHT, generation=mapper.generation - 1) is None  # before a reset
    assert all(torch.equal(value, layers(mapper)[name]) for name, value in before.items())
    stats = mapper.fill_unobserved(prediction, FILL_WEIGHT, generation=mapper.generation)
    after = layers(mapper)
    print(f"\nfill of frame 3 over frames 0-1 of room {SEED}: {stats}")
    assert stats.voxels_filled > 0 and stats.blocks_allocated > 0
    old = (after["coords"][:, None, :] == before["coords"][None]).all(-1).any(1)
    assert int(old.sum()) == len(before["coords"])
    for name in ("tsdf", "weight", "color", "semantic"):  # observations: unchanged, none in the new blocks
        assert torch.equal(after[name][old], before[name]), name
        assert (after[name][~old] == grid.layer_fill(name)).all(), name
    changed = (after["pred_weight"][old] != before["pred_weight"]) | (after["pred_tsdf"][old] != before["pred_tsdf"])
    observed = before["weight"] > 0
    assert changed.any() and not (changed & observed).any()  # no observed voxel gets a prediction
    completed = before["pred_weight"] == 1.0
    assert completed.any() and not (changed & completed).any()  # nor one the completion network predicted
    assert (after["pred_weight"][old][changed] == FILL_WEIGHT).all()
    assert extract_mesh(mapper.volume).num_triangles == observed_mesh.num_triangles  # the observed surface as before


def test_live_prediction_publishes_the_newest_frame_and_fills_the_map(room, predictor):
    mapper = fused_mapper(room[:1])
    published, done = [], threading.Event()

    def publish(result):
        published.append(result)
        done.set()

    live = LiveSingleView(mapper, predictor, rate=100.0, publish=publish, fill_weight=FILL_WEIGHT)
    try:
        live.offer(map_frame(room[1]), mapper.generation, "optical_frame")
        assert done.wait(60)
    finally:
        live.close()
    result = published[0]
    assert result.frame_id == "optical_frame" and result.mesh.num_triangles > 0
    assert result.fill.voxels_filled > 0 and mapper.has_additions
    summary = live.stats.period_summary()
    assert summary["runs"] == 1 and summary["errors"] == 0 and summary["voxels_filled"] == result.fill.voxels_filled
