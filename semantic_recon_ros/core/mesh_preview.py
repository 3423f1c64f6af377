"""Top-down preview pictures of a semantic mesh (Open3D raycasting, no display needed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import open3d as o3d
from PIL import Image, ImageDraw, ImageFont

from .classes import ClassSet
from .mesh import SemanticMesh


def estimate_up(poses_world_cam: Sequence[np.ndarray]) -> np.ndarray:
    """World "up" direction (3,) from camera poses: the mean of the cameras' -y (optical y points down)."""
    up = -np.mean([np.asarray(T)[:3, 1] for T in poses_world_cam], axis=0)
    norm = np.linalg.norm(up)
    if norm < 1e-6:
        raise ValueError("camera orientations cancel out; cannot tell which way is up")
    return up / norm


@dataclass
class TopDownView:
    """An orthographic view straight down ``-up``; pixels are ``pixel_size`` metres apart."""

    up: np.ndarray  # (3,) unit vector
    max_height: float  # geometry above this height (along up) is cut away, e.g. the ceiling
    max_pixels: int = 800

    def render(self, mesh: SemanticMesh, vertex_colors: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 image of the mesh lit from above; background white."""
        up = self.up / np.linalg.norm(self.up)
        height = mesh.vertices @ up
        keep = (height[mesh.triangles] <= self.max_height).all(axis=1)
        triangles = mesh.triangles[keep]
        if len(triangles) == 0:
            return np.full((64, 64, 3), 255, np.uint8)
        # image axes: two directions perpendicular to up
        helper = np.array([1.0, 0, 0]) if abs(up[0]) < 0.9 else np.array([0, 1.0, 0])
        right = np.cross(up, helper)
        right /= np.linalg.norm(right)
        forward = np.cross(up, right)
        used = np.unique(triangles)
        x, y = mesh.vertices[used] @ right, mesh.vertices[used] @ forward
        pixel = max(np.ptp(x), np.ptp(y)) / self.max_pixels
        width, rows = int(np.ceil(np.ptp(x) / pixel)) + 1, int(np.ceil(np.ptp(y) / pixel)) + 1
        col_grid, row_grid = np.meshgrid(np.arange(width), np.arange(rows))
        origins = (x.min() + col_grid[..., None] * pixel) * right + (y.max() - row_grid[..., None] * pixel) * forward
        origins = origins + (self.max_height + 1.0) * up
        rays = np.concatenate([origins, np.broadcast_to(-up, origins.shape)], axis=-1).astype(np.float32)

        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(mesh.vertices.astype(np.float32), triangles.astype(np.uint32))
        hit = scene.cast_rays(o3d.core.Tensor(rays))
        tri = hit["primitive_ids"].numpy().astype(np.int64)
        valid = tri != o3d.t.geometry.RaycastingScene.INVALID_ID
        image = np.full((rows, width, 3), 255.0)
        corners = triangles[tri[valid]]
        uvw = hit["primitive_uvs"].numpy()[valid]
        bary = np.stack([1 - uvw.sum(axis=1), uvw[:, 0], uvw[:, 1]], axis=1)
        color = (vertex_colors[corners].astype(np.float64) * bary[..., None]).sum(axis=1)
        normal = np.abs(hit["primitive_normals"].numpy()[valid])
        light = np.array([0.3, 0.4, 0.87])
        shade = 0.45 + 0.55 * np.abs(normal @ np.array([right, forward, up]).T @ light)
        image[valid] = color * shade[:, None]
        return image.clip(0, 255).astype(np.uint8)


def preview_picture(mesh: SemanticMesh, classes: ClassSet, view: TopDownView, title: str) -> Image.Image:
    """Side-by-side RGB and semantic top-down renders with a title and a legend of the classes present."""
    rgb = view.render(mesh, mesh.colors)
    semantic = view.render(mesh, classes.colorize(mesh.labels))
    font = ImageFont.load_default()
    gap, header, swatch = 10, 24, 14
    present = [i for i in range(classes.num_classes) if (mesh.labels == i).any()]
    legend_rows = (len(present) + 3) // 4 + (1 if (mesh.labels < 0).any() else 0)
    h, w = rgb.shape[:2]
    canvas = Image.new("RGB", (2 * w + 3 * gap, h + header + gap + legend_rows * (swatch + 6) + gap), "white")
    canvas.paste(Image.fromarray(rgb), (gap, header))
    canvas.paste(Image.fromarray(semantic), (w + 2 * gap, header))
    draw = ImageDraw.Draw(canvas)
    draw.text((gap, 6), f"{title}   |   left: color   right: semantic labels", fill="black", font=font)
    entries = [(classes.names[i], tuple(int(c) for c in classes.colors[i])) for i in present]
    if (mesh.labels < 0).any():
        entries.append(("unlabeled", tuple(classes.unlabeled_color)))
    for k, (name, color) in enumerate(entries):
        x = gap + (k % 4) * 160
        y = h + header + gap + (k // 4) * (swatch + 6)
        draw.rectangle((x, y, x + swatch, y + swatch), fill=color, outline="black")
        draw.text((x + swatch + 6, y + 1), name, fill="black", font=font)
    return canvas
