"""The synthetic scene generator: determinism, exact geometry of renders and ground truth, camera paths, files."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from semantic_recon_ros.commands import synth as synth_command
from semantic_recon_ros.core.camera import PinholeCamera
from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.datasets import open_sequence
from semantic_recon_ros.core.synthetic import (
    DEFAULT_CAMERA,
    BoxArrays,
    CameraPathConfig,
    DepthNoiseConfig,
    RenderConfig,
    SceneRenderer,
    box_sdf,
    camera_path,
    generate_room,
    ground_truth_grid,
    load_ground_truth,
    union_sdf,
    write_synthetic_scene,
)

SMALL_CAMERA = DEFAULT_CAMERA.scaled(160, 120)
SEEDS = (0, 1, 2, 3)


def world_points(camera: PinholeCamera, depth: np.ndarray, T_world_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Back-project valid depth pixels: (N, 3) world points and the (H, W) validity mask."""
    v, u = np.nonzero(depth > 0)
    z = depth[v, u].astype(np.float64)
    cam = np.stack(((u - camera.cx) / camera.fx * z, (v - camera.cy) / camera.fy * z, z), axis=1)
    return cam @ T_world_cam[:3, :3].T + T_world_cam[:3, 3], depth > 0


def inside_any_box(points: np.ndarray, boxes: BoxArrays) -> np.ndarray:
    """(N,) whether each point is strictly inside at least one box, via scipy rotations (independent of box_sdf)."""
    inside = np.zeros(len(points), dtype=bool)
    for center, half, yaw in zip(boxes.centers, boxes.half_extents, boxes.yaws):
        local = Rotation.from_euler("z", yaw).inv().apply(points - center)
        inside |= (np.abs(local) < half).all(axis=1)
    return inside


def test_same_seed_gives_identical_scene_and_images_and_other_seeds_differ():
    a, b, c = generate_room(7), generate_room(7), generate_room(8)
    assert a.to_dict() == b.to_dict()
    assert a.to_dict() != c.to_dict()
    assert not np.allclose(a.room_size, c.room_size)
    poses_a, poses_b = camera_path(a, 12), camera_path(b, 12)
    np.testing.assert_array_equal(poses_a, poses_b)
    renderer_a, renderer_b, renderer_c = SceneRenderer(a), SceneRenderer(b), SceneRenderer(c)
    for index in (0, 5, 11):
        fa = renderer_a.render(SMALL_CAMERA, poses_a[index], index)
        fb = renderer_b.render(SMALL_CAMERA, poses_b[index], index)
        np.testing.assert_array_equal(fa.color, fb.color)
        np.testing.assert_array_equal(fa.depth, fb.depth)
        np.testing.assert_array_equal(fa.labels, fb.labels)
        fc = renderer_c.render(SMALL_CAMERA, poses_a[index], index)
        assert not np.array_equal(fa.depth, fc.depth)


def test_rooms_have_the_promised_structure():
    classes = load_class_set()
    for seed in range(8):
        scene = generate_room(seed)
        sx, sy, sz = scene.room_size
        assert 3.5 <= sx <= 6.0 and 3.5 <= sy <= 6.0 and 2.5 <= sz <= 3.0
        names = [classes.names[i] for i in scene.class_ids]
        assert names.count("wall") == 4 and names.count("floor") == 1 and names.count("ceiling") == 1
        assert "door" in names and "window" in names and "table" in names
        assert len(set(names) - {"wall", "floor", "ceiling", "door", "window"}) >= 3, names
        # every furniture and object box stays inside the room interior (1 cm tolerance)
        corners = scene.box_arrays.axis_aligned_bounds()
        furniture = ~np.isin(names, ["wall", "floor", "ceiling", "door", "window"])
        assert (corners[furniture, 0] > -0.01).all() and (corners[furniture, 1] < scene.room_size + 0.01).all()


def test_rendered_depth_and_labels_agree_with_the_analytic_sdf():
    ambiguous_total, pixels_total = 0, 0
    for seed in SEEDS:
        scene = generate_room(seed)
        renderer = SceneRenderer(scene)
        poses = camera_path(scene, 30)
        for index in (0, 10, 20):
            frame = renderer.render(SMALL_CAMERA, poses[index], index).validate()
            assert frame.depth.dtype == np.float32 and frame.labels.dtype == np.uint8
            assert (frame.depth > 0).all(), "a closed room must be hit by every ray"
            points, valid = world_points(SMALL_CAMERA, frame.depth, poses[index])
            distances = box_sdf(points, scene.box_arrays)
            assert np.abs(distances.min(axis=1)).max() < 1e-3
            nearest_label = scene.class_ids[distances.argmin(axis=1)]
            ordered = np.sort(distances, axis=1)
            unambiguous = ordered[:, 1] - ordered[:, 0] > 1e-3  # two boxes touching the hit point: either label
            np.testing.assert_array_equal(frame.labels[valid][unambiguous], nearest_label[unambiguous])
            ambiguous_total += int((~unambiguous).sum())
            pixels_total += len(points)
            # the texture makes color informative: a single wall face is not one flat color
            wall = frame.labels == load_class_set().index("wall")
            if wall.sum() > 500:
                assert frame.color[wall].astype(float).std(axis=0).max() > 5.0
    assert ambiguous_total < 0.01 * pixels_total


def test_render_is_z_depth_with_the_pose_kept_and_misses_marked():
    scene = generate_room(4)
    pose = camera_path(scene, 10)[3]
    renderer = SceneRenderer(scene)
    frame = renderer.render(DEFAULT_CAMERA, pose, 3)
    assert frame.color.shape == (480, 640, 3) and frame.name == "000003"
    assert frame.timestamp == pytest.approx(3 / 30)
    np.testing.assert_array_equal(frame.T_world_cam, pose)
    # a camera outside the room looking away from it hits nothing
    away = pose.copy()
    away[:3, 3] = scene.room_size / 2 + np.array([0.0, 0.0, 50.0])
    away[:3, :3] = np.eye(3)  # optical z axis = world +z: looking up, away from the room below
    empty = renderer.render(SMALL_CAMERA, away, 0)
    assert (empty.depth == 0).all() and (empty.labels == 255).all() and (empty.color == 0).all()


def test_depth_noise_is_deterministic_and_leaves_color_and_labels_exact():
    scene = generate_room(2)
    pose = camera_path(scene, 10)[0]
    exact = SceneRenderer(scene).render(SMALL_CAMERA, pose, 4)
    noise = DepthNoiseConfig(enabled=True, dropout_probability=0.05)
    noisy_renderer = SceneRenderer(scene, RenderConfig(depth_noise=noise))
    noisy = noisy_renderer.render(SMALL_CAMERA, pose, 4)
    np.testing.assert_array_equal(noisy.depth, noisy_renderer.render(SMALL_CAMERA, pose, 4).depth)
    assert not np.array_equal(noisy.depth, noisy_renderer.render(SMALL_CAMERA, pose, 5).depth)
    np.testing.assert_array_equal(noisy.color, exact.color)
    np.testing.assert_array_equal(noisy.labels, exact.labels)
    dropped = noisy.depth == 0
    assert 0.04 < dropped.mean() < 0.5
    kept = ~dropped
    error = noisy.depth[kept] - exact.depth[kept]
    sigma = noise.sigma_base + noise.sigma_quadratic * (exact.depth[kept] - 0.4) ** 2
    assert 0.8 < np.std(error / sigma) < 1.2
    assert abs(np.mean(error / sigma)) < 0.1


def test_camera_paths_stay_clear_of_boxes_and_move_like_a_handheld_scan():
    config = CameraPathConfig()
    for seed in range(10):
        scene = generate_room(seed)
        poses = camera_path(scene, 300, config)
        centres = poses[:, :3, 3]
        clearance, _ = union_sdf(centres, scene.box_arrays)
        assert clearance.min() >= config.min_clearance
        assert not inside_any_box(centres, scene.box_arrays).any()
        assert (centres > 0).all() and (centres < scene.room_size).all()
        assert 1.15 < centres[:, 2].min() and centres[:, 2].max() < 1.75
        rotations = poses[:, :3, :3]
        np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (300, 3, 3)),
                                   atol=1e-9)
        assert np.allclose(np.linalg.det(rotations), 1.0)
        step = np.linalg.norm(np.diff(centres, axis=0), axis=1)
        turn = Rotation.from_matrix(rotations[1:].transpose(0, 2, 1) @ rotations[:-1]).magnitude()
        assert step.max() < 0.06 and np.degrees(turn).max() < 5.0
        forward = rotations[:, :, 2]
        pitch_down = -np.degrees(np.arcsin(forward[:, 2]))
        assert 8.0 < pitch_down.min() and pitch_down.max() < 32.0
        yaw = np.unwrap(np.arctan2(forward[:, 1], forward[:, 0]))
        assert abs(yaw[-1] - yaw[0]) > np.radians(300)  # looks all around the room in one loop
    with pytest.raises(ValueError, match="no camera loop keeps"):
        camera_path(generate_room(0), 10, CameraPathConfig(min_clearance=3.0))


def test_box_sdf_matches_brute_force_distances_for_a_rotated_box():
    center, half, yaw = np.array([0.4, -0.2, 1.1]), np.array([0.3, 0.2, 0.1]), 0.7
    boxes = BoxArrays(center[None], half[None], np.array([yaw]))
    # dense samples of the box surface, built with scipy's rotation
    spacing = 0.004
    samples = []
    for axis in range(3):
        u, v = [a for a in range(3) if a != axis]
        gu = np.linspace(-half[u], half[u], int(np.ceil(2 * half[u] / spacing)) + 1)
        gv = np.linspace(-half[v], half[v], int(np.ceil(2 * half[v] / spacing)) + 1)
        uu, vv = np.meshgrid(gu, gv, indexing="ij")
        for sign in (-1.0, 1.0):
            face = np.zeros((uu.size, 3))
            face[:, axis], face[:, u], face[:, v] = sign * half[axis], uu.ravel(), vv.ravel()
            samples.append(face)
    surface = Rotation.from_euler("z", yaw).apply(np.concatenate(samples)) + center
    rng = np.random.default_rng(0)
    points = center + rng.uniform(-0.6, 0.6, size=(4000, 3))
    sdf = box_sdf(points, boxes)[:, 0]
    brute, _ = cKDTree(surface).query(points)
    assert (brute >= np.abs(sdf) - 1e-9).all()
    assert (brute - np.abs(sdf)).max() < spacing * 0.75
    inside = inside_any_box(points, boxes)
    assert inside.any() and (~inside).any()
    np.testing.assert_array_equal(sdf < 0, inside)
    # the union takes the nearest of several boxes
    two = BoxArrays(np.stack((center, center + [0.5, 0.0, 0.0])), np.stack((half, half)), np.array([yaw, 0.0]))
    union, nearest = union_sdf(points, two, chunk_points=777)
    both = box_sdf(points, two)
    np.testing.assert_allclose(union, both.min(axis=1))
    np.testing.assert_array_equal(nearest, both.argmin(axis=1))


def test_ground_truth_grid_equals_the_brute_force_sdf_with_correct_signs():
    scene = generate_room(5)
    voxel, truncation = 0.1, 0.15
    grid = ground_truth_grid(scene, voxel, truncation)
    assert grid.tsdf.dtype == np.float32 and grid.labels.dtype == np.int16
    np.testing.assert_allclose(grid.origin / voxel, np.round(grid.origin / voxel), atol=1e-9)
    index = np.stack(np.meshgrid(*(np.arange(n) for n in grid.shape), indexing="ij"), axis=-1).reshape(-1, 3)
    centres = grid.voxel_centers(index)
    lo, hi = scene.bounds
    assert (centres.min(axis=0) <= lo - truncation + voxel).all()
    assert (centres.max(axis=0) >= hi + truncation - voxel).all()
    distances = box_sdf(centres, scene.box_arrays)
    sdf = distances.min(axis=1)
    tsdf = grid.tsdf.reshape(-1)
    np.testing.assert_allclose(tsdf, np.clip(sdf / truncation, -1, 1), atol=1e-6)
    inside = inside_any_box(centres, scene.box_arrays)
    assert (tsdf[inside] <= 0).all() and (tsdf[~inside] >= 0).all()
    assert (tsdf < 0).sum() > 1000 and (tsdf == -1).any()
    labels = grid.labels.reshape(-1)
    band = np.abs(sdf) < truncation
    np.testing.assert_array_equal(labels[~band], -1)
    ordered = np.sort(distances, axis=1)
    clear = band & (ordered[:, 1] - ordered[:, 0] > 1e-6)
    np.testing.assert_array_equal(labels[clear], scene.class_ids[distances.argmin(axis=1)][clear])
    # an explicit origin and shape give the same values on the shared voxels (labels where no two boxes tie)
    part = ground_truth_grid(scene, voxel, truncation, origin=grid.origin + 3 * voxel, shape=(5, 6, 7))
    shared = (slice(3, 8), slice(3, 9), slice(3, 10))
    np.testing.assert_allclose(part.tsdf, grid.tsdf[shared], atol=1e-6)
    untied = (~band | clear).reshape(grid.shape)[shared]
    assert untied.mean() > 0.5
    np.testing.assert_array_equal(part.labels[untied], grid.labels[shared][untied])


def test_meshes_lie_on_the_boxes_and_the_surface_mesh_covers_what_the_camera_sees():
    scene = generate_room(1)
    raw = scene.mesh()
    assert raw.num_triangles == 12 * len(scene.boxes)
    v = raw.vertices.astype(np.float64)
    normals = np.cross(v[raw.triangles[:, 1]] - v[raw.triangles[:, 0]], v[raw.triangles[:, 2]] - v[raw.triangles[:, 0]])
    box_of_triangle = np.arange(raw.num_triangles) // 12
    outward = v[raw.triangles].mean(axis=1) - scene.box_arrays.centers[box_of_triangle]
    assert ((normals * outward).sum(axis=1) > 0).all(), "triangles must be counter-clockwise seen from outside"

    cell = 0.1
    surface = scene.surface_mesh(cell)
    assert surface.colors.dtype == np.uint8 and surface.labels.dtype == np.int64
    distances = box_sdf(surface.vertices.astype(np.float64), scene.box_arrays)
    on_box = np.abs(distances) < 1e-5
    assert on_box.any(axis=1).all()
    assert (surface.vertices > -cell).all() and (surface.vertices < scene.room_size + cell).all()
    assert set(np.unique(surface.labels)) <= set(scene.class_ids.tolist())
    # every visible point is near the surface mesh, with the label of the nearest vertex mostly equal
    tree = cKDTree(surface.vertices)
    poses = camera_path(scene, 20)
    renderer = SceneRenderer(scene)
    for index in (0, 7, 14):
        frame = renderer.render(SMALL_CAMERA, poses[index], index)
        points, valid = world_points(SMALL_CAMERA, frame.depth, poses[index])
        gap, nearest = tree.query(points)
        assert gap.max() < cell * 0.75
        assert (surface.labels[nearest] == frame.labels[valid]).mean() > 0.95


def test_written_scene_reads_back_as_rendered_with_its_ground_truth(tmp_path):
    seed, frames, voxel = 3, 5, 0.1
    written = []
    out = write_synthetic_scene(tmp_path / "room", seed, frames, camera=SMALL_CAMERA, gt_voxel_size=voxel,
                                mesh_cell_size=0.1, on_frame=lambda index, total: written.append((index, total)))
    assert written == [(index, frames) for index in range(frames)]
    scene = generate_room(seed)
    poses = camera_path(scene, frames)
    renderer = SceneRenderer(scene)
    sequence = open_sequence(out)
    assert len(sequence) == frames and sequence.camera == SMALL_CAMERA
    for index in range(frames):
        expected, read = renderer.render(SMALL_CAMERA, poses[index], index), sequence[index]
        np.testing.assert_array_equal(read.color, expected.color)
        np.testing.assert_array_equal(read.labels, expected.labels)
        np.testing.assert_allclose(read.T_world_cam, expected.T_world_cam, atol=1e-12)
        assert np.abs(read.depth - expected.depth).max() <= 0.0005 + 1e-6  # millimetre PNG

    truth = load_ground_truth(out)
    assert truth.scene.to_dict() == scene.to_dict()
    grid = ground_truth_grid(scene, voxel, 4 * voxel)
    np.testing.assert_array_equal(truth.grid.tsdf, grid.tsdf)
    np.testing.assert_array_equal(truth.grid.labels, grid.labels)
    np.testing.assert_array_equal(truth.grid.origin, grid.origin)
    assert truth.grid.truncation == pytest.approx(4 * voxel)
    mesh = scene.surface_mesh(0.1)
    np.testing.assert_array_equal(truth.mesh.vertices, mesh.vertices)
    np.testing.assert_array_equal(truth.mesh.triangles, mesh.triangles)
    np.testing.assert_array_equal(truth.mesh.labels, mesh.labels)
    np.testing.assert_array_equal(truth.mesh.colors, mesh.colors)
    assert truth.metadata["num_frames"] == frames and truth.metadata["camera"]["width"] == 160

    (out / "ground_truth" / "tsdf.npz").unlink()
    with pytest.raises(FileNotFoundError, match="tsdf.npz"):
        load_ground_truth(out)


def test_synth_command_writes_a_readable_scene(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    synth_command.add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path / "cli"), "--seed", "11", "--frames", "3", "--width", "80",
                              "--height", "60", "--voxel-size", "0.2"])
    assert synth_command.run(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == 3 and summary["boxes"] == len(generate_room(11).boxes)
    sequence = open_sequence(tmp_path / "cli")
    assert len(sequence) == 3 and sequence.camera.shape == (60, 80)
    assert load_ground_truth(tmp_path / "cli").grid.voxel_size == pytest.approx(0.2)
    with pytest.raises(ValueError, match="--frames"):
        synth_command.run(parser.parse_args(["--out", str(tmp_path / "bad"), "--frames", "0"]))
