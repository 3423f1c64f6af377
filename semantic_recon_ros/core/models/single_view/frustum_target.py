"""Targets of the single-view reconstruction: the exact semantic TSDF of a synthetic room in a camera's frustum.

The synthetic rooms are unions of labeled boxes whose signed distance is exact at any point
(:func:`semantic_recon_ros.core.synthetic.box_sdf`), so each frustum cell's centre is evaluated directly rather
than resampling the room's ``ground_truth/tsdf.npz`` grid: the truncated signed distance divided by the frustum
grid's truncation (in [-1, 1], + outside the boxes), and the class of the nearest box where the distance is below
the truncation (-1 elsewhere), as :class:`~semantic_recon_ros.core.synthetic.GroundTruthGrid` labels. Each box is
evaluated only at the cells inside its bounding box grown by the truncation (a cell outside every such box is
free and farther than the truncation from all of them), which makes a 64 x 48 x 64 frustum of a furnished room
take a fraction of a second instead of several.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...classes import ClassSet, load_class_set
from ...synthetic import SyntheticScene, box_sdf
from .frustum_grid import FrustumGrid

UNLABELED = -1


@dataclass
class FrustumTarget:
    """The semantic TSDF of one frustum.

    Attributes:
        tsdf: (D, Y, X) float32 signed distance / truncation, clipped to [-1, 1] (+ = free space).
        labels: (D, Y, X) int64 class id (of the class set) where ``|tsdf| < 1``, -1 elsewhere.
    """

    tsdf: torch.Tensor
    labels: torch.Tensor


def scene_class_ids(scene: SyntheticScene, class_set: ClassSet) -> np.ndarray:
    """(B,) class id in ``class_set`` of every box of ``scene`` (looked up by name)."""
    lookup = np.array([class_set.index(name) for name in scene.class_names], dtype=np.int64)
    return lookup[scene.class_ids]


def frustum_ground_truth(grid: FrustumGrid, scene: SyntheticScene, T_world_cam: np.ndarray,
                         device: torch.device | str, class_set: ClassSet | None = None) -> FrustumTarget:
    """The exact semantic TSDF of ``scene`` at the cells of ``grid`` seen from the pose ``T_world_cam``
    (camera-to-world, optical frame). ``class_set`` defaults to :func:`load_class_set`; a scene class missing
    from it raises ValueError, as does a non-rigid pose."""
    class_set = class_set or load_class_set()
    box_classes = scene_class_ids(scene, class_set)
    points = grid.cell_centers_world(T_world_cam, "cpu", torch.float64).numpy().reshape(-1, 3)
    truncation = grid.config.truncation
    sdf = np.full(len(points), np.inf)
    nearest = np.zeros(len(points), dtype=np.int64)
    boxes = scene.box_arrays
    for b, (low, high) in enumerate(boxes.axis_aligned_bounds()):
        near = np.flatnonzero(((points >= low - truncation) & (points <= high + truncation)).all(axis=1))
        distance = box_sdf(points[near], boxes.subset(slice(b, b + 1)))[:, 0]
        closer = distance < sdf[near]
        sdf[near[closer]] = distance[closer]
        nearest[near[closer]] = b
    labels = np.where(np.abs(sdf) < truncation, box_classes[nearest], UNLABELED)
    tsdf = np.clip(sdf / truncation, -1.0, 1.0)
    return FrustumTarget(torch.as_tensor(tsdf.reshape(grid.shape), dtype=torch.float32, device=device),
                         torch.as_tensor(labels.reshape(grid.shape), dtype=torch.int64, device=device))
