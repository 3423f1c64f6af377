"""Rendering a reconstruction's mesh into camera views (depth and labels), as Atlas renders its meshes for the 2D
depth metrics. Open3D ray casting, no display needed.
"""

from __future__ import annotations

import numpy as np
import open3d as o3d

from semantic_recon_ros.core.camera import PinholeCamera, check_rigid
from semantic_recon_ros.core.mesh import SemanticMesh

UNLABELED = -1


class MeshViewRenderer:
    """Ray-casts one mesh; build once, render many views.

    Args:
        mesh: the surface (world frame); may be empty (every pixel then misses).
    """

    def __init__(self, mesh: SemanticMesh) -> None:
        self.mesh = mesh
        self._scene = o3d.t.geometry.RaycastingScene()
        if mesh.num_triangles:
            self._scene.add_triangles(o3d.core.Tensor(np.ascontiguousarray(mesh.vertices, dtype=np.float32)),
                                      o3d.core.Tensor(np.ascontiguousarray(mesh.triangles, dtype=np.uint32)))

    def render(self, camera: PinholeCamera, T_world_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Depth and labels seen by ``camera`` at the pose ``T_world_cam`` (camera-to-world, optical frame).

        Returns:
            depth: (H, W) float32 z-depth of the first surface hit in metres, 0 where the ray misses.
            labels: (H, W) int64 label of the hit triangle's vertex nearest to the hit (largest barycentric
            weight), -1 where the ray misses or that vertex is unlabeled.
        """
        T = check_rigid(T_world_cam, "T_world_cam")
        v, u = np.meshgrid(np.arange(camera.height, dtype=np.float64), np.arange(camera.width, dtype=np.float64),
                           indexing="ij")
        directions = np.stack(((u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, np.ones_like(u)), -1)
        directions = directions.reshape(-1, 3) @ T[:3, :3].T  # camera z = 1: the hit distance is the z-depth
        rays = np.concatenate((np.broadcast_to(T[:3, 3], directions.shape), directions), axis=1).astype(np.float32)
        shape = camera.shape
        if self.mesh.num_triangles == 0:
            return np.zeros(shape, np.float32), np.full(shape, UNLABELED, np.int64)
        hits = self._scene.cast_rays(o3d.core.Tensor(rays))
        t_hit = hits["t_hit"].numpy()
        hit = np.isfinite(t_hit)
        depth = np.where(hit, t_hit, 0.0).astype(np.float32)
        labels = np.full(len(rays), UNLABELED, np.int64)
        triangles = self.mesh.triangles[hits["primitive_ids"].numpy()[hit].astype(np.int64)]
        uv = hits["primitive_uvs"].numpy()[hit]
        weights = np.stack((1.0 - uv.sum(axis=1), uv[:, 0], uv[:, 1]), axis=1)
        nearest = triangles[np.arange(len(triangles)), weights.argmax(axis=1)]
        labels[hit] = self.mesh.labels[nearest]
        return depth.reshape(shape), labels.reshape(shape)
