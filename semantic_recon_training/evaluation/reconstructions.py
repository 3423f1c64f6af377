"""The evaluated methods' reconstructions of one scene, on a common dense voxel box.

All methods start from the same fusion of the input frames (depth, color and the 2D pseudo-labels):

* ``TSDF fusion``: the fused TSDF (no completion); no semantics.
* ``2D label fusion``: the same geometry with the fused label votes (back-projection of the pseudo-labels, the
  VMF-style baseline of S4R): the argmax class of every voxel with votes.
* ``network``: the completion network run over the whole fused volume (``Mapper.complete``): its
  predicted TSDF and classes wherever it predicted, free and unlabeled elsewhere (mesh source ``completed``).
* ``fusion + network labels`` (the map by default: the node's ``mesh`` and ``semantic-recon map``'s meshes):
  the observed geometry, classes combining the fused votes and the network's
  (:class:`~semantic_recon_ros.core.surface_fields.SurfaceFields`, mesh source ``observed``).
* ``fusion + network``: the observed geometry plus the network's additions where its calibrated confidence
  reaches ``completion.min_confidence`` (mesh source ``both``: the map with its additions drawn in), classes
  combined as above.

With ``ablation``, more rows vary one lever each (:func:`ablation_variants`). Every network row is sampled through
the core's :class:`SurfaceFields`, as the node's meshes and voxel maps are.

An :class:`EvaluationBox` is a box of volume voxels (voxel ``first_voxel + (i, j, k)``, centre at that times the
voxel size); every reconstruction is sampled on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from dataclasses import replace

import numpy as np
import torch

from semantic_recon_ros.core.config.completion import CompletionConfig
from semantic_recon_ros.core.mesh import SemanticMesh
from semantic_recon_ros.core.meshing import extract_mesh
from semantic_recon_ros.core.map.tsdf_volume import SemanticTSDFVolume
from semantic_recon_ros.core.surface_fields import SurfaceFields, labels_from_scores

PLAIN_FUSION = "TSDF fusion"
LABEL_FUSION = "2D label fusion"
NETWORK = "network"
FUSION_AND_NETWORK_LABELS = "fusion + network labels"
FUSION_AND_NETWORK = "fusion + network"
ABLATION_PREFIX = "ablation: "
ABLATION_CONFIDENCES = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8)  # min_confidence of the ablation rows
ABLATION_LABEL_OVERRIDES = (0.0, 0.2, 0.3, 0.4, 0.5, 1.0)  # label_override_probability of the ablation rows (1: votes win)
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
    each layer's fill value where no block is allocated. The label votes (``semantic``) come back as (X, Y, Z)
    int64 argmax classes, -1 where all votes are 0."""
    flat = volume.grid.voxel_indices(box.voxels().to(volume.device))
    allocated = flat >= 0
    out = {}
    for name in names:
        pool = volume.grid.layer(name).flatten(0, 1)
        values = pool[flat.clamp(min=0)]
        if name == "semantic":
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


def surface_reconstruction(name: str, volume: SemanticTSDFVolume, box: EvaluationBox, source: str,
                           completion: CompletionConfig) -> Reconstruction:
    """The map's ``source`` surface (:class:`SurfaceFields`) sampled on ``box``: its TSDF where the source defines a
    voxel (1 elsewhere), its labels there (-1 elsewhere), and its mesh."""
    fields = SurfaceFields(volume, source, completion=completion)
    flat = volume.grid.voxel_indices(box.voxels().to(volume.device))
    valid = torch.zeros(len(flat), dtype=torch.bool, device=volume.device)
    valid[flat >= 0] = fields.valid.view(-1)[flat[flat >= 0]]
    voxels = flat[valid]
    tsdf = torch.ones(len(flat), device=volume.device)
    tsdf[valid] = fields.tsdf.view(-1)[voxels]
    labels = torch.full((len(flat),), UNLABELED, dtype=torch.int64, device=volume.device)
    labels[valid] = labels_from_scores(fields.scores_at(voxels))[0]
    return Reconstruction(name, tsdf.cpu().view(box.shape), labels.cpu().view(box.shape),
                          extract_mesh(volume, source=source, completion=completion))


def ablation_variants(completion: CompletionConfig) -> dict[str, tuple[str, CompletionConfig]]:
    """Rows that change one lever of the map each: name -> (surface source, settings)."""
    variants = {}
    for probability in ABLATION_LABEL_OVERRIDES:
        if probability != completion.label_override_probability:
            rule = "fused votes win" if probability == 1.0 else f"network labels above {probability:g}"
            variants[f"{ABLATION_PREFIX}{FUSION_AND_NETWORK_LABELS}, {rule}"] = (
                "observed", replace(completion, label_override_probability=probability))
    for threshold in ABLATION_CONFIDENCES:
        if threshold != completion.min_confidence:
            variants[f"{ABLATION_PREFIX}{FUSION_AND_NETWORK}, confidence >= {threshold:g}"] = (
                "both", replace(completion, min_confidence=threshold))
    return variants


def network_reconstructions(volume: SemanticTSDFVolume, box: EvaluationBox, completion: CompletionConfig,
                            ablation: bool = False) -> list[Reconstruction]:
    """The completed volume's reconstructions (after the completion network ran over it): ``network``,
    ``fusion + network labels``, ``fusion + network`` and with ``ablation`` the :func:`ablation_variants`."""
    rows = [(NETWORK, "completed", completion), (FUSION_AND_NETWORK_LABELS, "observed", completion),
            (FUSION_AND_NETWORK, "both", completion)]
    if ablation:
        rows += [(name, source, variant) for name, (source, variant) in ablation_variants(completion).items()]
    return [surface_reconstruction(name, volume, box, source, variant) for name, source, variant in rows]
