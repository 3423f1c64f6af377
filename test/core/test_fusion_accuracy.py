"""Fusion accuracy against exact ground truth on a synthetic scene (real rendered frames, real files)."""

from __future__ import annotations

import numpy as np
import open3d as o3d
import pytest

from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.datasets import open_sequence
from semantic_recon_ros.core.meshing import extract_mesh
from semantic_recon_ros.core.synthetic import DEFAULT_CAMERA, load_ground_truth, union_sdf, write_synthetic_scene
from semantic_recon_ros.core.map import SemanticTSDFVolume
from semantic_recon_ros.core.config.volume import VolumeConfig

VOXEL = 0.04


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    scene_dir = write_synthetic_scene(tmp_path_factory.mktemp("scene") / "room", seed=11, num_frames=48,
                                      camera=DEFAULT_CAMERA.scaled(320, 240))
    frames = list(open_sequence(scene_dir))
    volume = SemanticTSDFVolume(VolumeConfig(voxel_size=VOXEL), load_class_set().names, "cpu")
    for frame in frames:
        volume.integrate(frame.depth, frame.camera, frame.T_world_cam, color=frame.color, labels=frame.labels)
    return frames, extract_mesh(volume), load_ground_truth(scene_dir)


def observed_surface_points(frames, stride: int = 4) -> np.ndarray:
    """World points of every stride-th valid depth pixel: the surfaces the camera actually saw."""
    points = []
    for frame in frames[::4]:
        cam = frame.camera
        v, u = np.mgrid[0:cam.height:stride, 0:cam.width:stride]
        z = frame.depth[v, u]
        ok = z > 0
        p = np.stack(((u[ok] - cam.cx) / cam.fx * z[ok], (v[ok] - cam.cy) / cam.fy * z[ok], z[ok]), axis=1)
        points.append(p @ frame.T_world_cam[:3, :3].T + frame.T_world_cam[:3, 3])
    return np.concatenate(points)


def test_fused_surface_lies_on_the_true_surface(fused):
    _, mesh, gt = fused
    distance = np.abs(union_sdf(mesh.vertices, gt.scene.box_arrays)[0])
    print(f"\nmesh-to-truth distance: median {np.median(distance) * 1000:.1f} mm, "
          f"p90 {np.percentile(distance, 90) * 1000:.1f} mm, {mesh.num_vertices} vertices")
    assert mesh.num_triangles > 10000
    assert np.median(distance) < VOXEL / 2
    assert np.percentile(distance, 90) < VOXEL


def test_observed_surfaces_are_complete(fused):
    frames, mesh, _ = fused
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(mesh.vertices.astype(np.float32), mesh.triangles.astype(np.uint32))
    points = observed_surface_points(frames)
    distance = scene.compute_distance(o3d.core.Tensor(points.astype(np.float32))).numpy()
    completeness = float((distance < VOXEL).mean())
    print(f"\ncompleteness of observed surfaces (within {VOXEL * 100:g} cm): {completeness:.3f}")
    assert completeness > 0.95


def test_fused_labels_match_the_true_objects(fused):
    _, mesh, gt = fused
    _, nearest = union_sdf(mesh.vertices, gt.scene.box_arrays)
    truth = gt.scene.class_ids[nearest]
    labeled = mesh.labels >= 0
    accuracy = float((mesh.labels[labeled] == truth[labeled]).mean())
    print(f"\nlabeled vertices {labeled.mean():.3f}, 3D label accuracy {accuracy:.3f}")
    assert labeled.mean() > 0.98
    assert accuracy > 0.9
