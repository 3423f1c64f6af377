"""The semantic mesh of a predicted frustum: the project's marching cubes on the frustum grid, vertices placed in
the camera frame.

The frustum grid is not axis-aligned (its cells widen with depth), so its values are first laid out as a unit
voxel grid, voxel ``(i, j, k)`` = cell ``(d, y, x) = (k, j, i)``, in a :class:`~...map.tsdf_volume.
SemanticTSDFVolume`; :func:`~...meshing.extract_mesh` places each vertex on a cube edge between two cell centres,
at fractional cell coordinates, and :meth:`.frustum_grid.FrustumGrid.cell_coordinates_to_cam` maps those into the
camera frame. The map from (x, y, d) to the camera's (X, Y, Z) has a positive Jacobian determinant, so triangles keep
their orientation (counter-clockwise seen from free space). The surface ends half a cell inside the frustum's faces
(cubes join cell centres).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ...classes import ClassSet
from ...config.volume import VolumeConfig
from ...map.tsdf_volume import SemanticTSDFVolume
from ...mesh import SemanticMesh
from ...meshing import extract_mesh
from .frustum_grid import FrustumGrid

LAYOUT_VOXEL_SIZE = 0.5  # metres per cell in the intermediate volume: any size works, its positions are divided by it


def frustum_mesh(grid: FrustumGrid, tsdf: torch.Tensor, class_probabilities: torch.Tensor,
                 class_names: Sequence[str], known: torch.Tensor | None = None) -> SemanticMesh:
    """Triangle mesh of the zero level set of a frustum's TSDF, in the camera (optical) frame.

    Args:
        grid: the frustum grid of the prediction.
        tsdf: (D, Y, X) TSDF in [-1, 1] (+ = free).
        class_probabilities: (K, D, Y, X) class probabilities (e.g. the softmax of the class logits).
        class_names: the K classes.
        known: (D, Y, X) bool, the cells whose TSDF is defined (default: all); cubes with an unknown corner are not
            meshed (as a map's unobserved voxels).
    Returns:
        vertices (N, 3) in metres in the camera frame, labels (argmax of the interpolated probabilities) and their
        confidence (winning share), colors of the labels (:meth:`ClassSet.colorize` of ``ClassSet.from_names``).
    """
    shape = tuple(grid.shape)
    if tuple(tsdf.shape) != shape or tuple(class_probabilities.shape) != (len(class_names), *shape):
        raise ValueError(f"tsdf {tuple(tsdf.shape)} and class probabilities {tuple(class_probabilities.shape)} must "
                         f"be {shape} and ({len(class_names)}, *{shape}) for the frustum grid")
    volume = SemanticTSDFVolume(VolumeConfig(voxel_size=LAYOUT_VOXEL_SIZE), class_names, "cpu")
    depth, rows, columns = shape
    x, y, d = torch.meshgrid(torch.arange(columns), torch.arange(rows), torch.arange(depth), indexing="ij")
    voxels = torch.stack((x, y, d), dim=-1).view(-1, 3)
    volume.grid.write_voxels(
        voxels, tsdf=tsdf.detach().float().cpu().permute(2, 1, 0).reshape(-1),
        weight=(torch.ones(len(voxels)) if known is None
                else known.detach().cpu().permute(2, 1, 0).reshape(-1).float()),
        semantic=class_probabilities.detach().float().cpu().permute(3, 2, 1, 0).reshape(-1, len(class_names)))
    mesh = extract_mesh(volume)
    cells = torch.as_tensor(mesh.vertices, dtype=torch.float64).flip(-1) / LAYOUT_VOXEL_SIZE  # (x, y, d) -> (d, y, x)
    mesh.vertices = grid.cell_coordinates_to_cam(cells).numpy().astype(np.float32)
    mesh.colors = ClassSet.from_names(class_names).colorize(mesh.labels)
    return mesh
