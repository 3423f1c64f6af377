"""Ray-cast RGB-D-semantic frames of a synthetic scene with Open3D's ``RaycastingScene``.

For every pixel a ray leaves the camera centre with camera-frame direction ``((u - cx) / fx,
(v - cy) / fy, 1)``, so the hit distance in units of that direction is the z-depth. Color is the
scene's procedural appearance (:mod:`.appearance`) at the hit point, labels are the hit box's class
id (255 where nothing is hit), depth 0 where nothing is hit. An optional Kinect-like depth noise
model (off by default) perturbs and drops depth only; color and labels stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import open3d as o3d

from ..camera import PinholeCamera, check_rigid
from ..frame import RGBDFrame
from .appearance import ShadingConfig
from .scene import SyntheticScene

UNLABELED = 255
TRIANGLES_PER_BOX = 12


@dataclass
class DepthNoiseConfig:
    """Kinect-like depth corruption (all off by default).

    Noise: ``z + N(0, sigma)`` with ``sigma = sigma_base + sigma_quadratic * (z - 0.4)^2`` (axial noise model
    of Nguyen et al. 2012 for the Kinect v1). Dropout: each pixel independently with
    ``dropout_probability``, pixels whose surface is seen more grazing than ``grazing_angle_deg`` from the
    normal, and depths outside ``[min_depth, max_depth]``.
    """

    enabled: bool = False
    sigma_base: float = 0.0012
    sigma_quadratic: float = 0.0019
    dropout_probability: float = 0.01
    grazing_angle_deg: float = 80.0
    min_depth: float = 0.4
    max_depth: float = 6.0


@dataclass
class RenderConfig:
    """How frames are rendered."""

    shading: ShadingConfig = field(default_factory=ShadingConfig)
    depth_noise: DepthNoiseConfig = field(default_factory=DepthNoiseConfig)
    frame_rate: float = 30.0  # timestamps are frame index / frame_rate
    num_threads: int = 0  # ray-casting threads, 0 = all cores


class SceneRenderer:
    """Renders a fixed :class:`SyntheticScene`; build once, render many frames.

    Args:
        scene: the boxes to render.
        config: shading, noise and timing.
    """

    def __init__(self, scene: SyntheticScene, config: RenderConfig | None = None) -> None:
        self.scene = scene
        self.config = config or RenderConfig()
        mesh = scene.mesh(self.config.shading)
        # scene.mesh() emits 12 triangles per box in box order, so triangle index // 12 is the box index
        if mesh.num_triangles != TRIANGLES_PER_BOX * len(scene.boxes):
            raise ValueError("box mesh does not have 12 triangles per box")
        self._raycaster = o3d.t.geometry.RaycastingScene()
        self._raycaster.add_triangles(o3d.core.Tensor(mesh.vertices.astype(np.float32)),
                                      o3d.core.Tensor(mesh.triangles.astype(np.uint32)))
        self._appearance = scene.appearance(self.config.shading)
        if len(scene.class_names) > UNLABELED:
            raise ValueError(f"label images are uint8 with {UNLABELED} = unlabeled; the scene has "
                             f"{len(scene.class_names)} classes")
        self._class_ids = scene.class_ids.astype(np.uint8)
        self._ray_buffers: dict[PinholeCamera, tuple[np.ndarray, np.ndarray]] = {}

    def _world_rays(self, camera: PinholeCamera, T_world_cam: np.ndarray) -> np.ndarray:
        """(H*W, 6) float32 rays [origin, direction] in the world frame, row-major over pixels.

        Directions have camera-frame z = 1, so hit distances are z-depths. The returned array is a
        buffer reused by the next call with the same camera (a fresh 7 MB array per frame costs more in
        page faults than the arithmetic).
        """
        if camera not in self._ray_buffers:
            v, u = np.meshgrid(np.arange(camera.height, dtype=np.float64), np.arange(camera.width, dtype=np.float64),
                               indexing="ij")
            rays_cam = np.stack(((u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, np.ones_like(u)), axis=-1)
            self._ray_buffers[camera] = (rays_cam.reshape(-1, 3).astype(np.float32),
                                         np.empty((camera.width * camera.height, 6), np.float32))
        rays_cam, rays = self._ray_buffers[camera]
        rays[:, :3] = T_world_cam[:3, 3]
        np.matmul(rays_cam, T_world_cam[:3, :3].T.astype(np.float32), out=rays[:, 3:])
        return rays

    def render(self, camera: PinholeCamera, T_world_cam: np.ndarray, index: int = 0) -> RGBDFrame:
        """Render one frame.

        Args:
            camera: intrinsics and image size.
            T_world_cam: (4, 4) camera-to-world pose of the optical frame (x right, y down, z forward).
            index: frame number; sets the name (``"%06d"``), the timestamp (``index / frame_rate``) and the
                depth-noise random stream (with the scene seed).
        Returns:
            RGBDFrame with color (H, W, 3) uint8, depth (H, W) float32 z-depth in metres (0 = no hit or
            dropped), labels (H, W) uint8 class ids (255 = no hit), the pose and camera.
        """
        T = check_rigid(T_world_cam, "T_world_cam")
        rays = self._world_rays(camera, T)
        hits = self._raycaster.cast_rays(o3d.core.Tensor.from_numpy(rays), nthreads=self.config.num_threads)
        t_hit = hits["t_hit"].numpy()
        hit = np.isfinite(t_hit)
        depth = np.where(hit, t_hit, np.float32(0.0))
        # misses have an invalid primitive id: their box index is clipped to a valid box and masked below
        box_index = (hits["primitive_ids"].numpy() // TRIANGLES_PER_BOX).astype(np.intp)
        np.minimum(box_index, len(self._class_ids) - 1, out=box_index)
        points = rays[:, 3:] * depth[:, None]
        points += rays[:, :3]
        color = self._appearance.shade(points, hits["primitive_normals"].numpy(), box_index)
        color[~hit] = 0
        labels = np.where(hit, self._class_ids[box_index], np.uint8(UNLABELED))
        shape = camera.shape
        if self.config.depth_noise.enabled:
            depth = self._corrupt_depth(depth, hit, rays[:, 3:], hits["primitive_normals"].numpy(), index)
        return RGBDFrame(
            color=color.reshape(*shape, 3),
            depth=depth.reshape(shape),
            camera=camera,
            T_world_cam=T,
            timestamp=index / self.config.frame_rate,
            labels=labels.reshape(shape),
            name=f"{index:06d}",
        )

    def _corrupt_depth(self, depth: np.ndarray, hit: np.ndarray, directions: np.ndarray, normals: np.ndarray,
                       index: int) -> np.ndarray:
        """Apply :class:`DepthNoiseConfig` to the (H*W,) depth; random stream seeded by (scene seed, index)."""
        noise = self.config.depth_noise
        rng = np.random.default_rng([self.scene.seed, index])
        sigma = noise.sigma_base + noise.sigma_quadratic * (depth - 0.4) ** 2
        noisy = depth + rng.normal(size=depth.shape).astype(np.float32) * sigma.astype(np.float32)
        cos_incidence = np.abs((normals * directions).sum(axis=1)) / np.linalg.norm(directions, axis=1)
        keep = (
            hit
            & (rng.random(len(depth)) >= noise.dropout_probability)
            & (cos_incidence >= np.cos(np.radians(noise.grazing_angle_deg)))
            & (depth >= noise.min_depth)
            & (depth <= noise.max_depth)
        )
        return np.where(keep, noisy, 0.0).astype(np.float32)
