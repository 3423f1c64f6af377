"""The voxel map: one point per voxel near the surface, as a numpy structured array (:data:`VOXEL_POINT_DTYPE`).

The ROS layer sends these bytes as a ``sensor_msgs/PointCloud2`` (fields, offsets and meaning in
:mod:`semantic_recon_ros.ros.pointcloud_conversions`); the same array serves offline tools.
"""

from __future__ import annotations

import numpy as np
import torch

from .config.completion import CompletionConfig
from .map.tsdf_volume import SemanticTSDFVolume
from .surface_fields import SurfaceFields

VOXEL_POINT_DTYPE = np.dtype({
    "names": ["x", "y", "z", "rgb", "label", "confidence", "observed", "surface_confidence"],
    "formats": ["<f4", "<f4", "<f4", "<u4", "<i4", "<f4", "u1", "<f4"],
    "offsets": [0, 4, 8, 12, 16, 20, 24, 28],
    "itemsize": 32,
})


def surface_voxel_points(volume: SemanticTSDFVolume, max_distance_voxels: float, source: str = "observed",
                         completion: CompletionConfig | None = None, slots: torch.Tensor | None = None) -> np.ndarray:
    """(N,) :data:`VOXEL_POINT_DTYPE` points of the voxels within ``max_distance_voxels`` of the surface (see
    :func:`surface_voxel_blocks`)."""
    return surface_voxel_blocks(volume, max_distance_voxels, source, completion, slots)[0]


def surface_voxel_blocks(volume: SemanticTSDFVolume, max_distance_voxels: float, source: str = "observed",
                         completion: CompletionConfig | None = None,
                         slots: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N,) :data:`VOXEL_POINT_DTYPE` points of the voxels within ``max_distance_voxels`` of the surface, and
    (n,) int64 how many of them each block of ``slots`` holds.

    ``source`` selects the voxels, their distance, color and class scores as for the mesh
    (:mod:`~semantic_recon_ros.core.surface_fields`, with ``completion``'s ``min_confidence`` and
    ``label_override_probability``): "observed" takes the voxels with fusion weight > 0 and their fused distance,
    "completed" the voxels the network predicted and their predicted distance, "both" the observed voxels and,
    where unobserved, the trusted predicted ones, "additions" only the latter. A voxel qualifies when
    ``|tsdf| * truncation <= max_distance_voxels * voxel_size``. Colors are fused where observed (predicted for
    "completed"); ``surface_confidence`` is 1 where observed (except for "completed"), else the network's
    calibrated confidence. Points come in the order of ``slots`` ((n,) blocks; default: every block in key order),
    voxels in their storage order within a block. Raises ValueError for a source other than "observed" when the volume holds no predictions.
    """
    fields = SurfaceFields(volume, source, completion=completion)  # validates the source
    cfg, grid = volume.config, volume.grid
    slots = grid.slots if slots is None else slots
    if slots.numel() == 0:
        return np.zeros(0, VOXEL_POINT_DTYPE), np.zeros(0, np.int64)
    tsdf, valid, observed = fields.blocks(slots)  # (n, V) each
    keep = valid & (tsdf.abs() <= max_distance_voxels / cfg.truncation_voxels)
    if source == "additions":
        keep &= ~observed
    block, local = keep.nonzero(as_tuple=True)
    flat = slots[block] * cfg.voxels_per_block + local
    centers = (grid.voxel_coords(flat).double() * cfg.voxel_size).float()
    # each voxel as the point at t = 0 between itself and itself: its own color, label and confidence
    attributes = fields.interpolated(torch.stack((flat, flat), dim=1), torch.zeros(len(flat), device=flat.device))
    rgb, label, confidence = attributes.rgb.to(torch.int64), attributes.label, attributes.confidence

    points = np.zeros(len(flat), VOXEL_POINT_DTYPE)
    xyz = centers.cpu().numpy()
    points["x"], points["y"], points["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    packed = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    points["rgb"] = packed.cpu().numpy().astype(np.uint32)
    points["label"] = label.cpu().numpy()
    points["confidence"] = confidence.cpu().numpy()
    points["observed"] = observed[block, local].cpu().numpy()
    # the "observed" source shows observed voxels only: their surface confidence is 1
    points["surface_confidence"] = (1.0 if attributes.surface_confidence is None
                                    else attributes.surface_confidence.cpu().numpy())
    return points, keep.sum(dim=1).cpu().numpy()
