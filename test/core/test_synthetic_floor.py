"""The synthetic building floor: rooms joined to a corridor by doorways, the camera tour through them, files."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.datasets import open_sequence
from semantic_recon_ros.core.synthetic import (
    DEFAULT_CAMERA,
    FloorConfig,
    FloorPathConfig,
    SceneRenderer,
    floor_camera_path,
    generate_floor,
    ground_truth_grid,
    load_ground_truth,
    union_sdf,
    write_synthetic_floor,
)

SMALL_CAMERA = DEFAULT_CAMERA.scaled(80, 60)
STRUCTURE = {"wall", "floor", "ceiling", "window", "door"}
SMALL_FLOOR = FloorConfig(size_x=13.0, size_y=11.0)  # two rooms a side, fast to render and mesh


def segment_sdf(floor, start_xy, end_xy, z: float = 1.0, samples: int = 200) -> np.ndarray:
    """Distances to the boxes along a horizontal segment at height z."""
    t = np.linspace(0.0, 1.0, samples)[:, None]
    xy = np.asarray(start_xy) + t * (np.asarray(end_xy) - np.asarray(start_xy))
    return union_sdf(np.column_stack((xy, np.full(samples, z))), floor.scene.box_arrays)[0]


@pytest.fixture(scope="module")
def floor():
    return generate_floor(0)


@pytest.fixture(scope="module")
def tour(floor):
    return floor_camera_path(floor)


def test_same_seed_gives_the_same_floor_and_tour_and_other_seeds_differ():
    a, b, c = generate_floor(5, SMALL_FLOOR), generate_floor(5, SMALL_FLOOR), generate_floor(6, SMALL_FLOOR)
    assert a.scene.to_dict() == b.scene.to_dict() and a.layout_dict() == b.layout_dict()
    assert a.scene.to_dict() != c.scene.to_dict()
    np.testing.assert_array_equal(floor_camera_path(a), floor_camera_path(b))
    assert len(floor_camera_path(a)) != len(floor_camera_path(c)) or \
        not np.array_equal(floor_camera_path(a), floor_camera_path(c))


def test_floor_has_furnished_rooms_on_both_sides_of_the_corridor(floor):
    names = load_class_set().names
    X, Y, height = floor.scene.room_size
    assert (X, Y) == (30.0, 20.0) and 2.6 <= height <= 3.0
    sides = [room.side for room in floor.rooms]
    assert sides.count("south") >= 3 and sides.count("north") >= 3
    (cx0, cy0), (cx1, cy1) = floor.corridor
    assert (cx0, cx1) == (0.0, 30.0) and 1.8 <= cy1 - cy0 <= 2.4
    area = sum(np.prod(r.bounds[1] - r.bounds[0]) for r in floor.rooms) + 30.0 * (cy1 - cy0)
    assert area > 0.95 * X * Y  # rooms and corridor fill the floor (walls take the rest)
    box_class = [names[i] for i in floor.scene.class_ids]
    corners = floor.scene.box_arrays.axis_aligned_bounds()
    room_of_box = np.full(len(corners), -1)
    for room in floor.rooms:
        inside = ((corners[:, 0, :2] > room.bounds[0] - 0.01) & (corners[:, 1, :2] < room.bounds[1] + 0.01)).all(axis=1)
        room_of_box[inside] = room.index
    furniture = np.array([name not in STRUCTURE for name in box_class])
    assert (room_of_box[furniture] >= 0).all(), "every piece of furniture stands inside one room"
    for room in floor.rooms:
        kinds = {box_class[b] for b in np.flatnonzero(furniture & (room_of_box == room.index))}
        assert "table" in kinds and len(kinds) >= 3, (room.index, kinds)
        assert any(box_class[b] == "window" for b in np.flatnonzero(room_of_box == room.index))


def test_every_room_has_an_open_doorway_into_the_corridor_and_walls_beside_it(floor):
    corridor_y = floor.corridor[:, 1].mean()
    # the corridor is free from end to end
    assert segment_sdf(floor, (1.0, corridor_y), (29.0, corridor_y)).min() > 0.5
    for room in floor.rooms:
        door = room.doorway_center
        inside = door + room.into_room * 1.0
        # through the doorway, at head and at knee height, nothing is in the way
        for z in (0.4, 1.6):
            assert segment_sdf(floor, (door[0], corridor_y), inside, z).min() > 0.2, room.index
        # the same walk 0.3 m beside the doorway's edge goes through the wall
        side = np.array([room.doorway_width / 2 + 0.3, 0.0])
        assert segment_sdf(floor, (door[0] + side[0], corridor_y), inside + side).min() < 0
        assert segment_sdf(floor, (door[0] - side[0], corridor_y), inside - side).min() < 0
        # above the doorway there is a lintel up to the ceiling
        assert segment_sdf(floor, (door[0], corridor_y), inside, room.doorway_height + 0.1).min() < 0


def test_the_tour_walks_the_corridor_and_visits_every_room_like_a_30_hz_handheld_camera(floor, tour):
    config = FloorPathConfig()
    centres = tour[:, :3, 3]
    clearance, _ = union_sdf(centres, floor.scene.box_arrays)
    assert clearance.min() >= config.min_clearance
    assert (centres[:, :2] > 0).all() and (centres[:, :2] < floor.scene.room_size[:2]).all()
    assert (centres[:, 2] > 1.3).all() and (centres[:, 2] < 1.65).all()
    in_corridor = ((centres[:, :2] > floor.corridor[0]) & (centres[:, :2] < floor.corridor[1])).all(axis=1)
    assert centres[in_corridor, 0].min() < 1.5 and centres[in_corridor, 0].max() > 28.5
    for room in floor.rooms:
        deep = ((centres[:, :2] > room.bounds[0] + 1.0) & (centres[:, :2] < room.bounds[1] - 1.0)).all(axis=1)
        assert deep.sum() > 3 * 30, f"room {room.index}: the camera stays in it for seconds"
        forward = tour[deep][:, :3, 2]
        yaw = np.arctan2(forward[:, 1], forward[:, 0])
        assert np.ptp(np.unwrap(yaw)) > np.radians(350), f"room {room.index}: the camera looks all around"
    step = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    rotations = tour[:, :3, :3]
    turn = np.degrees(Rotation.from_matrix(rotations[1:].transpose(0, 2, 1) @ rotations[:-1]).magnitude())
    assert step.max() < 0.05 and turn.max() < 4.0
    assert np.allclose(np.linalg.det(rotations), 1.0)
    pitch_down = -np.degrees(np.arcsin(rotations[:, 2, 2]))
    assert 7.0 < pitch_down.min() and pitch_down.max() < 25.0
    assert 60 * 30 < len(tour) < 240 * 30  # a few minutes at 30 Hz


def test_rendered_depth_along_the_tour_never_comes_close_to_a_wall(floor, tour):
    renderer = SceneRenderer(floor.scene)
    nearest = []
    for index in range(0, len(tour), 37):
        frame = renderer.render(SMALL_CAMERA, tour[index], index)
        assert (frame.depth > 0).all(), "the floor is closed: every ray hits"
        nearest.append(frame.depth.min())
    assert min(nearest) > 0.2
    assert np.median(nearest) > 0.5


def test_floor_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="at least 10.64 m deep"):
        FloorConfig(size_y=9.0)
    with pytest.raises(ValueError, match="at least one room"):
        FloorConfig(size_x=4.0)
    with pytest.raises(ValueError, match="corridor_width"):
        FloorConfig(corridor_width=(0.8, 1.0))
    with pytest.raises(ValueError, match="look_around_deg"):
        FloorPathConfig(look_around_deg=400.0)


def test_written_floor_reads_back_with_its_layout_and_optional_dense_tsdf(tmp_path):
    seed, frames = 2, 4
    out = write_synthetic_floor(tmp_path / "floor", seed, camera=SMALL_CAMERA, floor_config=SMALL_FLOOR,
                                max_frames=frames)
    floor = generate_floor(seed, SMALL_FLOOR)
    poses = floor_camera_path(floor)[:frames]
    sequence = open_sequence(out)
    assert len(sequence) == frames
    renderer = SceneRenderer(floor.scene)
    for index in range(frames):
        expected, read = renderer.render(SMALL_CAMERA, poses[index], index), sequence[index]
        np.testing.assert_array_equal(read.color, expected.color)
        np.testing.assert_allclose(read.T_world_cam, poses[index], atol=1e-12)
    truth = load_ground_truth(out)
    assert truth.grid is None and not (out / "ground_truth" / "tsdf.npz").exists()
    assert truth.scene.to_dict() == floor.scene.to_dict()
    assert truth.floor.layout_dict() == floor.layout_dict()
    assert truth.metadata["num_frames"] == frames and truth.mesh.num_triangles > 0

    out = write_synthetic_floor(tmp_path / "floor", seed, camera=SMALL_CAMERA, floor_config=SMALL_FLOOR,
                                max_frames=1, dense_tsdf=True, gt_voxel_size=0.2)
    truth = load_ground_truth(out)
    expected = ground_truth_grid(floor.scene, 0.2, 0.8)
    np.testing.assert_array_equal(truth.grid.tsdf, expected.tsdf)
    np.testing.assert_array_equal(truth.grid.labels, expected.labels)
    (out / "ground_truth" / "tsdf.npz").unlink()
    with pytest.raises(FileNotFoundError, match="tsdf.npz"):  # promised by scene.json, so its loss is an error
        load_ground_truth(out)
