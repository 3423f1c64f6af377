"""What one RGB-D frame alone tells about its camera's frustum grid: the baselines of the single-view evaluation
(:mod:`.frustum_evaluation`), and the depth a predicted frustum shows in each pixel.

* :func:`depth_image_frustum`: the projective TSDF of the frame's depth image in the frustum grid (each cell column
  reads the depth pixel nearest its centre; cells in front of the surface free, a truncation-thick band behind it
  solid, the rest unknown), each known band cell labeled by the column's 2D label (back-projection).
* :func:`rgbd_map_frustum`: the project's :class:`~semantic_recon_ros.core.mapper.Mapper` fusing the frame with its
  2D labels, its TSDF read trilinearly at the cell centres (known where all 8 voxels around are observed), its
  classes the fused votes of the nearest voxel; its mesh is the map's own.
* :func:`with_network_fill`: a baseline whose unknown cells take a single-view network's surface band, the rule of
  the node's ``single_view.fill_unobserved`` (observations never changed) applied in the frustum grid.

Unknown cells read TSDF +1 (free: what a frame does not see, it does not predict) and no class (-1). All grids
are (D, Y, X), depth first (:mod:`~semantic_recon_ros.core.models.single_view.frustum_grid`); meshes are in the
camera (optical) frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from semantic_recon_ros.core.camera import check_rigid
from semantic_recon_ros.core.config.volume import VolumeConfig
from semantic_recon_ros.core.frame import RGBDFrame
from semantic_recon_ros.core.map.tsdf_volume import SemanticTSDFVolume
from semantic_recon_ros.core.mapper import MapFrame, Mapper
from semantic_recon_ros.core.mesh import SemanticMesh
from semantic_recon_ros.core.models.single_view import FrustumGrid, frustum_mesh
from semantic_recon_ros.core.models.single_view.depth_frustum import depth_frustum_channels

UNLABELED = -1


@dataclass
class FrustumPrediction:
    """One method's frustum.

    Attributes:
        tsdf: (D, Y, X) float32 in [-1, 1] (+ = free; unknown cells +1).
        classes: (D, Y, X) int64 class per cell (-1 = none).
        mesh: its surface, camera (optical) frame.
        known: (D, Y, X) bool, the cells the method tells (None: every cell).
    """

    tsdf: torch.Tensor
    classes: torch.Tensor
    mesh: SemanticMesh
    known: torch.Tensor | None = None


def column_values(grid: FrustumGrid, image: np.ndarray) -> torch.Tensor:
    """(Y, X) value of the pixel of ``image`` ((H, W), the grid camera's size) nearest each cell column's centre."""
    if image.shape[:2] != grid.camera.shape:
        raise ValueError(f"expected a {grid.camera.shape} image of the grid's camera, got {image.shape[:2]}")
    pixels = grid.cell_pixels("cpu").round().long()
    u = pixels[..., 0].clamp(0, grid.camera.width - 1)
    v = pixels[..., 1].clamp(0, grid.camera.height - 1)
    return torch.as_tensor(np.ascontiguousarray(image))[v, u]


def one_hot_probabilities(classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(D, Y, X) classes (-1 none) -> (K, D, Y, X) float one-hot (all zero where none)."""
    return F.one_hot(classes.clamp(min=0), num_classes).permute(3, 0, 1, 2).float() * (classes >= 0)


def depth_image_frustum(grid: FrustumGrid, depth: np.ndarray, labels: np.ndarray | None,
                        class_names: Sequence[str]) -> FrustumPrediction:
    """The frustum TSDF one depth image gives (see the module docstring).

    Args:
        depth: (H, W) float32 z-depth in metres of the grid's camera (0 / non-finite = invalid).
        labels: (H, W) int class ids (-1 unlabeled) of the same pixels, or None (no classes).
    """
    channels = depth_frustum_channels(torch.as_tensor(depth, dtype=torch.float32)[None], grid.config)[0]
    known = channels[1].bool()
    tsdf = torch.where(known, channels[0], torch.ones_like(channels[0]))
    classes = torch.full(grid.shape, UNLABELED, dtype=torch.int64)
    if labels is not None:
        column_labels = column_values(grid, labels.astype(np.int64))
        column_labels = torch.where((column_labels >= 0) & (column_labels < len(class_names)), column_labels,
                                    UNLABELED)
        classes = torch.where(known & (tsdf.abs() < 1), column_labels[None].expand(grid.shape), classes)
    mesh = frustum_mesh(grid, tsdf, one_hot_probabilities(classes, len(class_names)), class_names, known)
    return FrustumPrediction(tsdf, classes, mesh, known)


def volume_at_points(volume: SemanticTSDFVolume, points: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fused volume read at (N, 3) world ``points``: (N,) TSDF, trilinear over the 8 voxels around each point
    (+1 unless all 8 are observed), (N,) class, the argmax of the nearest voxel's votes (-1 without votes or
    where the TSDF is unknown or outside the band), and (N,) bool known (all 8 voxels observed)."""
    grid, voxel_size = volume.grid, volume.config.voxel_size
    position = points.to(torch.float64) / voxel_size  # voxel g's centre lies at g * voxel_size
    base = position.floor()
    fraction = (position - base).float()
    base = base.long()
    tsdf = torch.zeros(len(points))
    known = torch.ones(len(points), dtype=torch.bool)
    for corner in range(8):
        offset = torch.tensor([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])
        values = grid.read_voxels((base + offset).to(grid.device))
        weight = torch.where(offset.bool(), fraction, 1 - fraction).prod(dim=1)
        tsdf += weight * values["tsdf"].cpu()
        known &= values["weight"].cpu() > 0
    tsdf = torch.where(known, tsdf.clamp(-1.0, 1.0), torch.ones_like(tsdf))
    votes = grid.read_voxels(position.round().long().to(grid.device))["semantic"].cpu()
    classes = torch.where(known & (tsdf.abs() < 1) & (votes.sum(dim=1) > 0), votes.argmax(dim=1), UNLABELED)
    return tsdf, classes, known


def mesh_to_camera(mesh: SemanticMesh, T_world_cam: np.ndarray) -> SemanticMesh:
    """``mesh`` (world frame) in the frame of the camera at ``T_world_cam`` (camera-to-world)."""
    T = check_rigid(T_world_cam, "T_world_cam")
    vertices = (mesh.vertices.astype(np.float64) - T[:3, 3]) @ T[:3, :3]
    return SemanticMesh(vertices.astype(np.float32), mesh.triangles, mesh.colors, mesh.labels, mesh.confidence)


def rgbd_map_frustum(grid: FrustumGrid, frame: RGBDFrame, labels: np.ndarray | None, volume_config: VolumeConfig,
                     class_names: Sequence[str], device: str = "cpu") -> FrustumPrediction:
    """The Mapper's map of the one ``frame`` (its depth, color and ``labels``) in the frustum grid at the frame's
    pose (see the module docstring)."""
    mapper = Mapper(volume_config, class_names, device)
    try:
        mapper.integrate(MapFrame(frame.camera, frame.T_world_cam, frame.color, frame.depth, labels))
        mesh, _ = mapper.mesh()
        centers = grid.cell_centers_world(frame.T_world_cam, "cpu", torch.float64).reshape(-1, 3)
        tsdf, classes, known = volume_at_points(mapper.volume, centers)
    finally:
        mapper.close()
    return FrustumPrediction(tsdf.view(grid.shape), classes.view(grid.shape), mesh_to_camera(mesh, frame.T_world_cam),
                             known.view(grid.shape))


def with_network_fill(grid: FrustumGrid, base: FrustumPrediction, network: FrustumPrediction,
                      class_names: Sequence[str]) -> FrustumPrediction:
    """``base`` (a one-frame baseline, its ``known`` cells set) with every cell it does not know taken from the
    ``network``'s prediction where that lies in the surface band (|TSDF| < 1), with the network's class: what the
    node's ``single_view.fill_unobserved`` writes into never-observed voxels, in the frustum grid. The known cells,
    their TSDF and classes are the base's unchanged; the mesh is the combined grid's."""
    if base.known is None:
        raise ValueError("the base method must state which cells it knows")
    filled = ~base.known & (network.tsdf.abs() < 1)
    tsdf = torch.where(filled, network.tsdf, base.tsdf)
    classes = torch.where(filled, network.classes, base.classes)
    known = base.known | filled
    mesh = frustum_mesh(grid, tsdf, one_hot_probabilities(classes, len(class_names)), class_names, known)
    return FrustumPrediction(tsdf, classes, mesh, known)


def rendered_depth(grid: FrustumGrid, tsdf: torch.Tensor, classes: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The depth a frustum shows each pixel of the grid's camera: along the pixel's ray (its fractional cell column,
    the TSDF interpolated trilinearly at every depth cell) the first zero crossing, linear between the cells around
    it (the first cell's centre when the ray starts in solid).

    Args:
        tsdf: (D, Y, X) in [-1, 1] (+ = free); classes: (D, Y, X) int64, or None.
    Returns:
        (H, W) float32 z-depth in metres (0 where the ray meets no surface within the grid) and, with ``classes``,
        (H, W) int64 class of the cell nearest the crossing (-1 where there is none).
    """
    camera, (D, Y, X) = grid.camera, grid.shape
    v, u = torch.meshgrid(torch.arange(camera.height, dtype=torch.float32),
                          torch.arange(camera.width, dtype=torch.float32), indexing="ij")
    x = (u + 0.5) * (X / camera.width) - 0.5
    y = (v + 0.5) * (Y / camera.height) - 0.5
    shape = (D, camera.height, camera.width)
    depth_cells = (2 * torch.arange(D, dtype=torch.float32) / (D - 1) - 1)[:, None, None]
    sample = torch.stack(((2 * x / (X - 1) - 1).expand(shape), (2 * y / (Y - 1) - 1).expand(shape),
                          depth_cells.expand(shape)), dim=-1)  # grid_sample's (x, y, z) = (column, row, depth)
    values = F.grid_sample(tsdf.float()[None, None], sample[None], mode="bilinear", padding_mode="border",
                           align_corners=True)[0, 0]  # (D, H, W)
    solid = values <= 0
    hit = solid.any(dim=0)
    first = solid.to(torch.uint8).argmax(dim=0)
    before = values.gather(0, (first - 1).clamp(min=0)[None])[0]
    after = values.gather(0, first[None])[0]
    crossing = torch.where(first > 0, (first - 1) + before / (before - after).clamp(min=1e-6), torch.zeros_like(before))
    depth = torch.where(hit, grid.config.near + (crossing + 0.5) * grid.depth_spacing, torch.zeros_like(crossing))
    if classes is None:
        return depth, None
    cells = (crossing.round().long().clamp(0, D - 1), y.round().long().clamp(0, Y - 1),
             x.round().long().clamp(0, X - 1))
    return depth, torch.where(hit, classes[cells], UNLABELED)
