"""The preview's "up": the normal of the map's horizontal surfaces, not the cameras' average up."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from semantic_recon_ros.core.config.volume import VolumeConfig
from semantic_recon_ros.core.map import SemanticTSDFVolume
from semantic_recon_ros.core.mesh import SemanticMesh
from semantic_recon_ros.core.mesh_preview import estimate_up
from semantic_recon_ros.core.meshing import extract_mesh
from semantic_recon_ros.core.synthetic import (DEFAULT_CAMERA, CameraPathConfig, SceneRenderer, camera_path,
                                               generate_room)


def degrees_between(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1.0, 1.0))))


@pytest.fixture(scope="module")
def pitched_scan():
    """(fused 4 cm mesh, camera poses) of a synthetic room (z up) scanned over a quarter turn looking 30-35 degrees
    down, so that the cameras' mean up leans towards where they look, as a hand-held scan's does."""
    scene = generate_room(seed=5)
    renderer = SceneRenderer(scene)
    camera = DEFAULT_CAMERA.scaled(320, 240)
    poses = camera_path(scene, 12, CameraPathConfig(loops=0.25, pitch_down_deg=(30.0, 35.0)))
    volume = SemanticTSDFVolume(VolumeConfig(voxel_size=0.04), ["thing"], "cpu")
    for i, pose in enumerate(poses):
        frame = renderer.render(camera, pose, i)
        volume.integrate(frame.depth, camera, pose, color=frame.color)
    return extract_mesh(volume), np.asarray(poses)


def turned(mesh: SemanticMesh, poses: np.ndarray, rotation: np.ndarray) -> tuple[SemanticMesh, np.ndarray]:
    """The scan in a world frame turned by ``rotation`` (like 7-Scenes', whose z is not up)."""
    T = np.eye(4)
    T[:3, :3] = rotation
    moved = SemanticMesh((mesh.vertices @ rotation.T).astype(np.float32), mesh.triangles, mesh.colors, mesh.labels,
                         mesh.confidence)
    return moved, T @ poses


@pytest.mark.parametrize("seed", [0, 1])
def test_up_is_the_floor_normal_not_the_cameras_up(pitched_scan, seed):
    rotation = Rotation.random(random_state=seed).as_matrix()
    mesh, poses = turned(*pitched_scan, rotation)
    gravity_up = rotation[:, 2]
    assert degrees_between(estimate_up(poses), gravity_up) > 15.0  # the cameras' mean up leans forward
    up = estimate_up(poses, mesh)
    assert degrees_between(up, gravity_up) < 0.5
    assert np.all(poses[:, :3, 3] @ up > np.percentile(mesh.vertices @ up, 5))  # pointing away from the floor


def test_without_horizontal_surfaces_the_cameras_up_is_kept():
    """A scan of a wall alone (its normal is 90 degrees from up) says nothing about gravity."""
    grid = np.stack(np.meshgrid(np.linspace(0, 3, 31), np.linspace(0, 2.5, 26), indexing="ij"), axis=-1)
    vertices = np.concatenate([grid[..., :1], np.full_like(grid[..., :1], 2.0), grid[..., 1:]], axis=-1)
    index = np.arange(31 * 26).reshape(31, 26)
    quads = np.stack([index[:-1, :-1], index[1:, :-1], index[1:, 1:], index[:-1, 1:]], axis=-1).reshape(-1, 4)
    triangles = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    n = len(vertices.reshape(-1, 3))
    wall = SemanticMesh(vertices.reshape(-1, 3).astype(np.float32), triangles, np.zeros((n, 3), np.uint8),
                        np.full(n, -1), np.zeros(n, np.float32))
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_euler("x", -100, degrees=True).as_matrix()  # looking at the wall, tilted 10 deg
    assert np.allclose(estimate_up([pose], wall), estimate_up([pose]))
    assert np.allclose(estimate_up([pose], SemanticMesh.empty()), estimate_up([pose]))
