"""Marching cubes over the sparse volume: seamless across blocks, oriented, deterministic, PLY export."""

from __future__ import annotations

import dataclasses

import numpy as np
import open3d as o3d
import pytest
import torch

from semantic_recon_ros.core.marching_cubes_table import TRIANGLE_COUNT
from semantic_recon_ros.core.meshing import extract_mesh
from semantic_recon_ros.core.ply import read_semantic_ply, write_semantic_ply
from semantic_recon_ros.core.map import SemanticTSDFVolume, volume_state
from semantic_recon_ros.core.config.volume import VolumeConfig

CENTER = torch.tensor([0.013, -0.021, 0.007])
RADIUS = 0.6


def sphere_volume(voxel_size: float = 0.05, block_size: int = 4) -> SemanticTSDFVolume:
    """A sphere spanning many blocks, written voxel by voxel from its exact SDF; left half labeled 0, right 1."""
    volume = SemanticTSDFVolume(VolumeConfig(voxel_size=voxel_size, block_size=block_size), ["a", "b"], "cpu")
    r = torch.arange(-18, 19)
    voxels = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    sdf = (voxels.float() * voxel_size - CENTER).norm(dim=1) - RADIUS
    votes = torch.stack(((voxels[:, 0] < 0).float(), 3 * (voxels[:, 0] >= 0).float()), dim=1)
    color = torch.where(voxels[:, :1] < 0, torch.tensor([255.0, 0, 0]), torch.tensor([0, 0, 255.0]))
    volume.grid.write_voxels(voxels, tsdf=(sdf / volume.config.truncation).clamp(-1, 1),
                        weight=torch.ones(len(voxels)), semantic=votes, color=color)
    return volume


def edge_use_counts(triangles: np.ndarray) -> np.ndarray:
    edges = np.sort(np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]]), axis=1)
    return np.unique(edges, axis=0, return_counts=True)[1]


def test_table_covers_every_case():
    assert TRIANGLE_COUNT[0] == TRIANGLE_COUNT[255] == 0
    assert (TRIANGLE_COUNT[1:255] > 0).all()


@pytest.mark.parametrize("block_size", [2, 4, 8])
def test_sphere_is_watertight_across_block_borders(block_size):
    volume = sphere_volume(block_size=block_size)
    mesh = extract_mesh(volume)
    assert volume.num_blocks > 50
    # closed 2-manifold of genus 0: every edge in exactly two triangles, Euler characteristic 2
    counts = edge_use_counts(mesh.triangles)
    assert (counts == 2).all()
    assert mesh.num_vertices - len(counts) + mesh.num_triangles == 2
    # no duplicate vertices at block borders
    assert len(np.unique(mesh.vertices.round(6), axis=0)) == mesh.num_vertices
    # on the sphere, normals pointing into free space (outwards)
    radius = np.linalg.norm(mesh.vertices - CENTER.numpy(), axis=1)
    assert np.abs(radius - RADIUS).max() < 0.01
    v, t = mesh.vertices, mesh.triangles
    normals = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    assert ((normals * (v[t].mean(axis=1) - CENTER.numpy())).sum(axis=1) > 0).all()


def test_labels_colors_confidence_follow_the_voxels():
    mesh = extract_mesh(sphere_volume())
    left, right = mesh.vertices[:, 0] < -0.06, mesh.vertices[:, 0] > 0.06
    assert (mesh.labels[left] == 0).all() and (mesh.labels[right] == 1).all()
    assert (mesh.colors[left] == [255, 0, 0]).all() and (mesh.colors[right] == [0, 0, 255]).all()
    assert np.allclose(mesh.confidence[left | right], 1.0)


def test_unobserved_voxels_are_not_meshed():
    volume = sphere_volume()
    full = extract_mesh(volume)
    voxels = torch.stack(torch.meshgrid(*[torch.arange(0, 19)] * 3, indexing="ij"), -1).reshape(-1, 3)
    volume.grid.write_voxels(voxels, weight=torch.zeros(len(voxels)))  # forget one octant
    partial = extract_mesh(volume)
    assert 0.8 * full.num_triangles < partial.num_triangles < 0.9 * full.num_triangles
    assert not ((partial.vertices > 0.05).all(axis=1)).any()
    assert (edge_use_counts(partial.triangles) <= 2).all()


def test_meshing_is_deterministic_and_block_order_independent():
    a = extract_mesh(sphere_volume())
    volume = sphere_volume()
    loaded = SemanticTSDFVolume(volume.config, volume.class_names, "cpu")
    state = volume_state(volume)
    order = torch.randperm(len(state["block_coords"]), generator=torch.Generator().manual_seed(0))
    B = volume.config.block_size
    local = torch.stack(torch.meshgrid(*[torch.arange(B)] * 3, indexing="ij"), -1).reshape(-1, 3)
    for i in order.tolist():  # insert blocks in a random order
        voxels = state["block_coords"][i] * B + local
        loaded.grid.write_voxels(voxels, **{n: state["layers"][n][i] for n in ("tsdf", "weight", "color", "semantic")})
    b = extract_mesh(loaded)
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.triangles, b.triangles)


def test_ply_round_trip_and_open3d_reads_it(tmp_path):
    mesh = extract_mesh(sphere_volume())
    path = write_semantic_ply(tmp_path / "mesh.ply", mesh, ["a", "b"])
    back, names = read_semantic_ply(path)
    assert names == ["a", "b"]
    for field in ("vertices", "triangles", "colors", "labels", "confidence"):
        assert np.array_equal(getattr(mesh, field), getattr(back, field)), field
    o3d_mesh = o3d.io.read_triangle_mesh(str(path))
    assert len(o3d_mesh.triangles) == mesh.num_triangles
    assert np.allclose(np.asarray(o3d_mesh.vertices), mesh.vertices)
    assert np.allclose(np.asarray(o3d_mesh.vertex_colors) * 255, mesh.colors)
    assert back.surface_confidence is None
    rated = dataclasses.replace(mesh, surface_confidence=np.linspace(0, 1, mesh.num_vertices, dtype=np.float32))
    back, _ = read_semantic_ply(write_semantic_ply(tmp_path / "rated.ply", rated))
    np.testing.assert_array_equal(back.surface_confidence, rated.surface_confidence)
    assert len(o3d.io.read_triangle_mesh(str(tmp_path / "rated.ply")).triangles) == mesh.num_triangles
    (tmp_path / "bad.ply").write_bytes(b"ply\nformat ascii 1.0\nend_header\n")
    with pytest.raises(ValueError, match="binary little-endian"):
        read_semantic_ply(tmp_path / "bad.ply")
