"""Top-down preview pictures of a semantic mesh (Open3D raycasting, no display needed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import open3d as o3d
from PIL import Image, ImageDraw, ImageFont

from .classes import ClassSet
from .mesh import SemanticMesh


# the map's horizontal surfaces are looked for within this angle of the cameras' "up" (which can be 25 degrees
# off gravity: a hand-held camera looks down); walls, at 90 degrees from gravity, stay out of the search
HORIZONTAL_SEARCH_DEG = 50.0
PLANE_TOLERANCE_DEG = 4.0  # triangles within this angle of the found orientation refine it
MIN_HORIZONTAL_SHARE = 0.02  # of the mesh's area; less, and the cameras' up is kept


def estimate_up(poses_world_cam: Sequence[np.ndarray], mesh: SemanticMesh | None = None) -> np.ndarray:
    """World "up" direction (3,), opposite gravity.

    From the camera poses alone, the mean of the cameras' -y (optical y points down): off gravity by as much as
    the cameras are pitched on average (24 degrees on 7-Scenes' kitchen). With a ``mesh`` of the map, the
    normal of its horizontal surfaces (floor, table and counter tops, seats; a ceiling too), which are parallel
    and cover more area than any other orientation near the cameras' up: the area-weighted mode of the triangle
    normals within :data:`HORIZONTAL_SEARCH_DEG` of it, refined by the area-weighted mean of the normals within
    :data:`PLANE_TOLERANCE_DEG` of the mode. Pointed like the cameras' up, i.e. away from the floor below them.
    A mesh with too little near-horizontal surface keeps the cameras' up.
    """
    up = -np.mean([np.asarray(T)[:3, 1] for T in poses_world_cam], axis=0)
    norm = np.linalg.norm(up)
    if norm < 1e-6:
        raise ValueError("camera orientations cancel out; cannot tell which way is up")
    up = up / norm
    if mesh is None or mesh.num_triangles == 0:
        return up
    return _horizontal_surface_normal(mesh, up)


def _horizontal_surface_normal(mesh: SemanticMesh, prior: np.ndarray) -> np.ndarray:
    corners = mesh.vertices[mesh.triangles].astype(np.float64)
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    areas = np.linalg.norm(normals, axis=1)
    keep = areas > 0
    normals, areas = normals[keep] / areas[keep, None], areas[keep] / 2
    normals *= np.where(normals @ prior < 0, -1.0, 1.0)[:, None]  # undersides and ceilings count alike
    near = normals @ prior > np.cos(np.radians(HORIZONTAL_SEARCH_DEG))
    normals, weights = normals[near], areas[near]
    if weights.sum() == 0:
        return prior
    # mode: an area histogram of the normals' tangent-plane coordinates around the prior, bins of 2 degrees at the
    # prior (narrower farther out), summed over 3 x 3
    basis = np.stack(_perpendicular_axes(prior))
    plane = (normals @ basis.T) / (normals @ prior)[:, None]
    extent = np.tan(np.radians(HORIZONTAL_SEARCH_DEG))
    bins = int(np.ceil(2 * extent / np.radians(2.0)))
    histogram, edges, _ = np.histogram2d(plane[:, 0], plane[:, 1], bins, [[-extent, extent]] * 2, weights=weights)
    padded = np.pad(histogram, 1)
    window = sum(padded[i:i + bins, j:j + bins] for i in range(3) for j in range(3))
    row, col = np.unravel_index(np.argmax(window), window.shape)
    centre = (edges[:-1] + edges[1:]) / 2
    up = prior + centre[row] * basis[0] + centre[col] * basis[1]
    up /= np.linalg.norm(up)
    for _ in range(3):
        close = normals @ up > np.cos(np.radians(PLANE_TOLERANCE_DEG))
        if weights[close].sum() < MIN_HORIZONTAL_SHARE * areas.sum():
            return prior
        up = (weights[close, None] * normals[close]).sum(axis=0)
        up /= np.linalg.norm(up)
    return up


def _perpendicular_axes(up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors perpendicular to the unit vector ``up`` and to each other (right-handed with it)."""
    right = np.cross(up, [1.0, 0, 0] if abs(up[0]) < 0.9 else [0, 1.0, 0])
    right /= np.linalg.norm(right)
    return right, np.cross(up, right)


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
        right, forward = _perpendicular_axes(up)  # image axes
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


def camera_view(poses_world_cam: Sequence[np.ndarray], mesh: SemanticMesh, headroom: float = 0.4) -> TopDownView:
    """The view straight down the map's up (:func:`estimate_up`) of ``mesh`` mapped from cameras at
    ``poses_world_cam``, cut ``headroom`` metres above the highest camera (the ceiling stays out)."""
    up = estimate_up(poses_world_cam, mesh)
    return TopDownView(up=up, max_height=max(float(np.asarray(T)[:3, 3] @ up) for T in poses_world_cam) + headroom)


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
