"""Evaluating every method on one held-out scene: fuse the input, build the targets, complete, score.

Targets:

* Synthetic rooms: the exact ground truth (``ground_truth/tsdf.npz`` on its own voxel box, which lies on the
  fusion volume's voxel lattice, and ``ground_truth/mesh.ply``). Surfaces no camera can see (outer faces of
  the room's slabs, planes where boxes touch) are excluded from the scores (:func:`.metrics.visible_surface`);
  everything else in the box is known. Held-out views carry exact depth and 2D labels.
* Real sequences (7-Scenes): the fusion of ALL frames of the sequence (after striding) on the dense box of its
  blocks, known where observed; its mesh is the mesh target. Held-out views carry the sensor depth, and the 2D
  segmenter's labels (semantic consistency).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from semantic_recon_ros.core.completion_confidence import ConfidenceCalibration
from semantic_recon_ros.core.config.completion import CompletionConfig
from semantic_recon_ros.core.mesh import SemanticMesh
from semantic_recon_ros.core.mesh_preview import TopDownView, estimate_up
from semantic_recon_ros.core.meshing import extract_mesh
from semantic_recon_ros.core.synthetic import SyntheticGroundTruth

from ..data.dense_volume import DenseVolume
from ..data.pseudo_labels import LabelSource, sequence_key
from ..data.view_images import pick_pixels, reduced_view
from .evaluation_protocol import EvaluationProtocol, EvaluationScene, fuse_frames
from .evaluation_scoring import MethodScores, ViewTarget, VoxelTarget, mesh_points, score_reconstruction
from .metrics import occupied, semantic_masks, visible_surface
from .reconstructions import (FUSION_AND_NETWORK, NETWORK, EvaluationBox, Reconstruction, fusion_reconstructions,
                              network_reconstructions)

GROUND_TRUTH = "ground truth"
TARGET_FUSION = "fusion of all frames"


@dataclass
class SceneResult:
    """Scores of every method on one scene.

    Attributes:
        name: the scene.
        methods: method name -> scores, in table order.
        meshes: meshes for previews: the target (ground truth or fusion of all frames) and each method's.
        preview: a top-down view of the scene with the ceiling cut away.
        info: frame counts, chunks run and seconds per stage (JSON values).
    """

    name: str
    methods: dict[str, MethodScores]
    meshes: dict[str, SemanticMesh]
    preview: TopDownView
    info: dict = field(default_factory=dict)


def ground_truth_box(truth: SyntheticGroundTruth, voxel_size: float, truncation: float) -> EvaluationBox:
    """The volume voxels of the ground-truth grid (ValueError when it is not on the fusion lattice)."""
    grid = truth.grid
    shift = grid.origin / voxel_size
    if (abs(grid.voxel_size - voxel_size) > 1e-9 or abs(grid.truncation - truncation) > 1e-9
            or not np.allclose(shift, np.round(shift), atol=1e-6)):
        raise ValueError(f"synthetic ground truth ({grid.voxel_size} m voxels, truncation {grid.truncation} m, "
                         f"origin {grid.origin.tolist()}) is not on the evaluation lattice ({voxel_size} m, "
                         f"truncation {truncation} m); regenerate the scene")
    return EvaluationBox(tuple(int(n) for n in np.round(shift)), grid.shape)


def room_interior(truth: SyntheticGroundTruth, box: EvaluationBox, voxel_size: float) -> torch.Tensor:
    """(X, Y, Z) bool: voxel centres inside the room interior (where a camera's free space can be)."""
    low, high = truth.scene.interior_bounds
    inside = []
    for axis in range(3):
        centres = (np.arange(box.shape[axis]) + box.first_voxel[axis]) * voxel_size
        inside.append(torch.from_numpy((centres >= low[axis]) & (centres <= high[axis])))
    return inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]


def ground_truth_reconstruction(truth: SyntheticGroundTruth, box: EvaluationBox) -> Reconstruction:
    """The ground truth as if it were a method's output (scores the best possible values)."""
    return Reconstruction(GROUND_TRUTH, torch.from_numpy(truth.grid.tsdf.copy()),
                          torch.from_numpy(truth.grid.labels.astype(np.int64)), truth.mesh)


def synthetic_voxel_target(truth: SyntheticGroundTruth, box: EvaluationBox, input_tsdf: torch.Tensor,
                           input_observed: torch.Tensor, protocol: EvaluationProtocol) -> VoxelTarget:
    """Ground-truth voxel target; ``input_tsdf`` / ``input_observed`` (on ``box``) define partial-to-partial."""
    tsdf = torch.from_numpy(truth.grid.tsdf.copy())
    surface = visible_surface(tsdf, room_interior(truth, box, protocol.voxel_size), protocol.truncation,
                              protocol.voxel_size)
    known = ~(occupied(tsdf, protocol.truncation, protocol.voxel_size) & ~surface)
    partial = semantic_masks(input_tsdf, input_observed, tsdf, protocol.truncation, protocol.voxel_size)["partial"]
    return VoxelTarget(tsdf, known, torch.from_numpy(truth.grid.labels.astype(np.int64)), partial & known, surface)


def view_target(scene: EvaluationScene, protocol: EvaluationProtocol, labels: LabelSource | None) -> ViewTarget:
    """The held-out views at 1/``view_downscale`` resolution; 2D labels from the frames' own labels (synthetic)
    or from ``labels`` (e.g. the segmenter on real data), none if neither exists."""
    factor = protocol.view_downscale
    key = sequence_key(scene.source)
    camera, poses, depths, view_labels = None, [], [], []
    for position in scene.views:
        frame = scene.frames[position]
        view = reduced_view(position, frame, factor)
        camera = view.camera
        poses.append(view.T_world_cam)
        depths.append(view.depth)
        full = frame.labels if frame.labels is not None else (
            None if labels is None else labels.labels(key, scene.frame_index(position), frame))
        if full is not None:
            full = full.astype(np.int64)
            full[(full < 0) | (full >= 255)] = -1  # synthetic frames mark "no hit" with 255
            view_labels.append(pick_pixels(full, factor))
    complete = len(view_labels) == len(scene.views)
    return ViewTarget(camera, poses, depths, view_labels if complete else None)


def scene_preview(scene: EvaluationScene, poses: Sequence[np.ndarray]) -> TopDownView:
    """A top-down view of ``scene`` with the ceiling cut away: synthetic rooms below their height, real scenes
    0.4 m above the highest of the camera ``poses`` (T_world_cam) along the up the cameras suggest."""
    if scene.ground_truth is not None:
        return TopDownView(np.array([0.0, 0.0, 1.0]), float(scene.ground_truth.scene.room_size[2]) - 0.1)
    up = estimate_up(poses)
    return TopDownView(up, max(float(T[:3, 3] @ up) for T in poses) + 0.4)


def evaluate_scene(scene: EvaluationScene, network: nn.Module, use_color: bool, protocol: EvaluationProtocol,
                   class_names: Sequence[str], labels: LabelSource, completion: CompletionConfig | None = None,
                   device: str = "cpu", progress: bool = True, calibration: ConfidenceCalibration | None = None,
                   ablation: bool = False) -> SceneResult:
    """Fuse the scene's input frames with their 2D labels, complete them with ``network``, score all methods.

    Args:
        scene: the held-out scene.
        network: S4R network (eval mode) trained for ``protocol.voxel_size`` and ``class_names``.
        use_color: the network takes color (``s4r``, not ``s4r_colorblind``).
        labels: 2D labels of the input frames (pseudo-labels), and of real held-out views.
        completion: chunking of the completion run and how the map uses the predictions (default: the node's).
            The run itself stores every prediction (``min_confidence`` 0 for the allocation of blocks), so that
            rows can apply any confidence threshold.
        calibration: the network's confidence calibration (None: uncalibrated).
        ablation: also score the rows of :func:`.reconstructions.ablation_variants`.
    """
    seconds = {}
    start = time.perf_counter()
    input_positions = [int(p) for p in np.flatnonzero(scene.is_input)]
    mapper = fuse_frames(scene, input_positions, protocol, class_names, device, labels, progress, "fusing input")
    volume = mapper.volume
    seconds["fuse"] = time.perf_counter() - start

    start = time.perf_counter()
    if scene.ground_truth is not None:
        box = ground_truth_box(scene.ground_truth, protocol.voxel_size, protocol.truncation)
        reference_mesh, reference_name = scene.ground_truth.mesh, GROUND_TRUTH
    else:
        target_volume = fuse_frames(scene, range(len(scene.frames)), protocol, class_names, device, None, progress,
                                    "fusing all frames of").volume
        dense = DenseVolume.from_volume(target_volume)
        box = EvaluationBox(tuple(int(n) for n in dense.first_voxel), dense.shape)
        reference_mesh, reference_name = extract_mesh(target_volume), TARGET_FUSION
        del target_volume
    plain, label_fusion, observed = fusion_reconstructions(volume, box)
    if scene.ground_truth is not None:
        voxels = synthetic_voxel_target(scene.ground_truth, box, label_fusion.tsdf, observed, protocol)
    else:
        voxels = VoxelTarget(dense.tsdf, dense.observed)
    views = view_target(scene, protocol, labels)
    target_points = mesh_points(reference_mesh, protocol.mesh_sample_spacing, protocol.max_mesh_samples)
    seconds["targets"] = time.perf_counter() - start

    start = time.perf_counter()
    completion = completion or CompletionConfig()
    mapper.attach_network(network, replace(completion, min_confidence=0.0), use_color=use_color,
                          calibration=calibration)
    with tqdm(desc=f"completing {scene.name}", unit="chunk", disable=not progress, leave=False) as bar:
        chunks = mapper.complete(time_budget=float("inf"), progress=lambda done, planned: bar.update(done - bar.n)
                                 ).chunks_run
    completed = network_reconstructions(volume, box, completion, ablation)
    seconds["complete"] = time.perf_counter() - start

    start = time.perf_counter()
    methods = {}
    for reconstruction in (plain, label_fusion, *completed):
        methods[reconstruction.name] = score_reconstruction(
            reconstruction, voxels, views, target_points, len(class_names), protocol.truncation, protocol.voxel_size,
            protocol.occupancy, protocol.mesh_sample_spacing, protocol.max_mesh_samples, protocol.fscore_threshold)
    seconds["score"] = time.perf_counter() - start
    preview = scene_preview(scene, views.poses)
    meshes = {reference_name: reference_mesh, label_fusion.name: label_fusion.mesh,
              **{r.name: r.mesh for r in completed if r.name in (NETWORK, FUSION_AND_NETWORK)}}
    info = {"frames": len(scene.frames), "input_frames": len(input_positions),
            "held_out_views": [scene.frame_index(p) for p in scene.views], "box_voxels": list(box.shape),
            "chunks_completed": chunks, "seconds": {k: round(v, 2) for k, v in seconds.items()}}
    return SceneResult(scene.name, methods, meshes, preview, info)
