"""The evaluated methods' reconstructions of one scene, on a common dense voxel box.

All methods start from the same fusion of the input frames (depth, color and the 2D pseudo-labels):

* ``TSDF fusion``: the fused TSDF (no completion); no semantics.
* ``2D label fusion``: the same geometry with the fused label votes (back-projection of the pseudo-labels, the
  VMF-style baseline of S4R): the argmax class of every voxel with votes.
* ``network``: the completion network run over the whole fused volume (``Mapper.complete``): its
  predicted TSDF and classes wherever it predicted, free and unlabeled elsewhere.
* ``fusion + network``: observed voxels keep the fused TSDF, the rest take the prediction (the node's
  ``both`` mesh); classes from the fused votes where a voxel has any, else from the network where it
  predicted (:class:`~semantic_recon_ros.core.surface_fields.SurfaceFields`).

An :class:`EvaluationBox` is a box of volume voxels (voxel ``first_voxel + (i, j, k)``, centre at that times the
voxel size); every reconstruction is sampled on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from semantic_recon_ros.core.mesh import SemanticMesh
from semantic_recon_ros.core.meshing import extract_mesh
from semantic_recon_ros.core.map.tsdf_volume import SemanticTSDFVolume

PLAIN_FUSION = "TSDF fusion"
LABEL_FUSION = "2D label fusion"
NETWORK = "network"
FUSION_AND_NETWORK = "fusion + network"
UNLABELED = -1


@dataclass(frozen=True)
class EvaluationBox:
    """A dense box of volume voxels: ``first_voxel`` (3,) ints and ``shape`` (X, Y, Z)."""

    first_voxel: tuple[int, int, int]
    shape: tuple[int, int, int]

    def voxels(self) -> torch.Tensor:
        """(X * Y * Z, 3) int64 volume voxel coordinates, x slowest."""
        axes = [torch.arange(n, dtype=torch.int64) + f for n, f in zip(self.shape, self.first_voxel)]
        return torch.cartesian_prod(*axes)


@dataclass
class Reconstruction:
    """One method's result on an :class:`EvaluationBox`.

    Attributes:
        name: the method.
        tsdf: (X, Y, Z) float32 normalized TSDF, 1 where the method says nothing (free).
        labels: (X, Y, Z) int64 class ids, -1 where unlabeled; None for geometry-only methods.
        mesh: the method's surface mesh in the world frame (labels -1 for geometry-only methods).
    """

    name: str
    tsdf: torch.Tensor
    labels: torch.Tensor | None
    mesh: SemanticMesh


def sample_layers(volume: SemanticTSDFVolume, box: EvaluationBox, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Dense CPU copies of the volume's layers ``names`` on ``box``: (X, Y, Z, C) (C dropped for scalar layers),
    each layer's fill value where no block is allocated. Class-score layers (``semantic``, ``pred_semantic``)
    come back as (X, Y, Z) int64 argmax classes, -1 where all scores are 0."""
    flat = volume.grid.voxel_indices(box.voxels().to(volume.device))
    allocated = flat >= 0
    out = {}
    for name in names:
        pool = volume.grid.layer(name).flatten(0, 1)
        values = pool[flat.clamp(min=0)]
        if name in ("semantic", "pred_semantic"):
            best, label = values.max(dim=1)
            values = torch.where(allocated & (best > 0), label, torch.full_like(label, UNLABELED))
        else:
            fill = torch.full_like(values, volume.grid.layer_fill(name))
            values = torch.where(allocated.view(-1, *[1] * (values.dim() - 1)), values, fill)
        out[name] = values.cpu().view(*box.shape, *values.shape[1:])
    return out


def fusion_reconstructions(volume: SemanticTSDFVolume, box: EvaluationBox) -> tuple[Reconstruction, Reconstruction,
                                                                                     torch.Tensor]:
    """The two fusion baselines and the (X, Y, Z) bool mask of observed voxels; call before completion (the
    observed mesh's labels would otherwise come from the network)."""
    layers = sample_layers(volume, box, ("tsdf", "weight", "semantic"))
    observed = layers["weight"] > 0
    tsdf = torch.where(observed, layers["tsdf"], torch.ones_like(layers["tsdf"]))
    mesh = extract_mesh(volume, source="observed")
    unlabeled = SemanticMesh(mesh.vertices, mesh.triangles, mesh.colors, np.full_like(mesh.labels, UNLABELED),
                             np.zeros_like(mesh.confidence))
    return (Reconstruction(PLAIN_FUSION, tsdf, None, unlabeled),
            Reconstruction(LABEL_FUSION, tsdf, layers["semantic"], mesh), observed)


def network_reconstructions(volume: SemanticTSDFVolume, box: EvaluationBox, fused: Reconstruction,
                            observed: torch.Tensor) -> tuple[Reconstruction, Reconstruction]:
    """The completed volume's two reconstructions (after the completion network ran over it); ``fused`` is the label
    fusion baseline and ``observed`` its observed mask."""
    layers = sample_layers(volume, box, ("pred_tsdf", "pred_weight", "pred_semantic"))
    predicted = layers["pred_weight"] > 0
    tsdf = torch.where(predicted, layers["pred_tsdf"], torch.ones_like(layers["pred_tsdf"]))
    labels = layers["pred_semantic"]
    network = Reconstruction(NETWORK, tsdf, labels, extract_mesh(volume, source="completed"))
    both = Reconstruction(FUSION_AND_NETWORK, torch.where(observed, fused.tsdf, tsdf),
                          torch.where((fused.labels == UNLABELED) & predicted, labels, fused.labels),
                          extract_mesh(volume, source="both"))
    return network, both
