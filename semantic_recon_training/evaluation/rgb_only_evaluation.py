"""Evaluating RGB-only reconstruction (an Atlas checkpoint, or plane-sweep stereo) on one held-out scene, next to
the RGB-D map.

Every method maps the scene's input frames (the protocol's seeded subset, :mod:`.evaluation_protocol`):

* ``RGB-D map``: TSDF fusion of their depth, color and 2D labels, what RGB-D mapping gives: the upper reference.
* ``RGB-only``, one of two :class:`RgbOnlyMethod`:

  * :class:`AtlasMethod`: the core :class:`Mapper` in RGB-only mode with the checkpoint: color and poses only (plus
    the 2D segmenter's class probabilities for a ``deeplab`` feature source), back-projected up to ``max_range`` and
    reconstructed by the network (``Mapper.complete``), then meshed.
  * :class:`StereoMethod`: each input frame's depth estimated from the earlier input frames by the core's
    :class:`PlaneSweepStereo` (color and poses only), then fused with its color and 2D labels like the RGB-D map.
* ``constant depth``: the trivial baseline that needs no training: every pixel of every input frame at one depth,
  the median of the input frames' captured depth (an oracle scale, the only thing it knows), TSDF-fused.

Targets: the fusion of the depth of ALL the scene's frames, meshed, sampled every ``mesh_sample_spacing``
(Atlas' 3D metrics); on synthetic rooms every target point is labeled with the class of the nearest ground-truth
box (exact), and the methods' labels are transferred onto those points (:func:`.evaluation_scoring.score_mesh`).
The held-out views (frames no method saw) carry the captured depth (Atlas' 2D metrics) and 2D labels (synthetic:
ground truth; real: the segmenter's, i.e. semantic consistency).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
from tqdm import tqdm

from semantic_recon_ros.core.config.completion import CompletionConfig
from semantic_recon_ros.core.config.stereo import StereoConfig
from semantic_recon_ros.core.mapper import MapFrame, Mapper
from semantic_recon_ros.core.mesh import SemanticMesh
from semantic_recon_ros.core.multi_view_stereo import PlaneSweepStereo
from semantic_recon_ros.core.segmentation import Segmenter
from semantic_recon_ros.core.synthetic import SyntheticGroundTruth, union_sdf

from ..data.pseudo_labels import LabelSource, sequence_key
from .evaluation_protocol import EvaluationProtocol, EvaluationScene, fuse_frames
from .evaluation_scoring import MeshTarget, mesh_points, score_mesh
from .scene_evaluation import TARGET_FUSION, SceneResult, scene_preview, view_target

RGBD_MAP = "RGB-D map (upper reference)"
RGB_ONLY = "RGB-only"
CONSTANT_DEPTH = "constant depth (baseline)"
DEFAULT_MAX_RANGE = 3.0  # metres: how far RGB-only mapping back-projects along each ray


def _stamp_ns(seconds: float) -> int:
    return int(round(seconds * 1e9))


def rgb_only_mesh(scene: EvaluationScene, positions: Sequence[int], checkpoint: Path, protocol: EvaluationProtocol,
                  class_names: Sequence[str], completion: CompletionConfig, segmenter: Segmenter | None,
                  max_range: float = DEFAULT_MAX_RANGE, device: str = "cpu",
                  progress: bool = True) -> tuple[SemanticMesh, int]:
    """The RGB-only map of the frames at ``positions`` of ``scene`` (color and T_world_cam only) and the number of
    chunks the network reconstructed.

    Args:
        checkpoint: an Atlas checkpoint for ``protocol.voxel_size`` and ``class_names``.
        segmenter: the 2D segmenter for a ``deeplab`` feature source, else None.
    """
    mapper = Mapper(protocol.volume_config(), class_names, device, completion, checkpoint=checkpoint,
                    rgb_only_max_range=max_range, segmenter=segmenter)
    try:
        for position in tqdm(positions, desc=f"RGB-only mapping {scene.name}", unit="frame", disable=not progress,
                             leave=False):
            frame = scene.frames[position]
            mapper.integrate(MapFrame(color=frame.color, camera=frame.camera, T_world_cam=frame.T_world_cam,
                                      stamp_ns=_stamp_ns(frame.timestamp), depth=None))
        stats = mapper.complete(time_budget=float("inf"))
        if stats is None:
            raise ValueError(f"{checkpoint}: the RGB-only mapper has no network to reconstruct with")
        mesh, _ = mapper.mesh()
    finally:
        mapper.close()
    return mesh, stats.chunks_run


def median_depth(scene: EvaluationScene, positions: Sequence[int], protocol: EvaluationProtocol) -> float:
    """The median of the valid captured depth (metres, within the protocol's depth range) of the frames at
    ``positions``; ValueError when they have none."""
    values = []
    for position in positions:
        depth = scene.frames[position].depth
        if depth is None:
            raise ValueError(f"{scene.source}: frame {scene.frames[position].name!r} has no depth")
        values.append(depth[np.isfinite(depth) & (depth >= protocol.min_depth) & (depth <= protocol.max_depth)])
    values = np.concatenate(values) if values else np.zeros(0)
    if not len(values):
        raise ValueError(f"{scene.source}: the input frames have no valid depth")
    return float(np.median(values))


def constant_depth_mesh(scene: EvaluationScene, positions: Sequence[int], depth: float, protocol: EvaluationProtocol,
                        class_names: Sequence[str], device: str = "cpu") -> SemanticMesh:
    """The TSDF fusion of the frames at ``positions`` with every pixel at ``depth`` metres (color kept, no labels)."""
    mapper = Mapper(protocol.volume_config(), class_names, device)
    for position in positions:
        frame = scene.frames[position]
        mapper.integrate(MapFrame(frame.camera, frame.T_world_cam, frame.color,
                                  np.full(frame.camera.shape, depth, np.float32),
                                  stamp_ns=_stamp_ns(frame.timestamp)))
    return mapper.mesh()[0]


def reference_labels(truth: SyntheticGroundTruth, points: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """(P,) int64 class of the ground-truth box nearest to each of the (P, 3) world ``points`` (ValueError when the
    room was made with other classes than ``class_names``)."""
    if tuple(truth.scene.class_names) != tuple(class_names):
        raise ValueError(f"the synthetic room has classes {list(truth.scene.class_names)}, the evaluation "
                         f"{list(class_names)}; regenerate the room")
    if not len(points):
        return np.zeros(0, np.int64)
    _, nearest = union_sdf(points, truth.scene.box_arrays)
    return truth.scene.class_ids[nearest]


class RgbOnlyMethod(Protocol):
    """How the RGB-only row maps a scene's input frames from their color and poses."""

    description: str  # one line for the report

    def mesh(self, scene: EvaluationScene, positions: Sequence[int], protocol: EvaluationProtocol,
             class_names: Sequence[str], labels: LabelSource, device: str, progress: bool) -> tuple[SemanticMesh, dict]:
        """The RGB-only map of the frames at ``positions`` and JSON facts about the run."""
        ...


@dataclasses.dataclass
class AtlasMethod:
    """The Atlas network of ``checkpoint`` (see :func:`rgb_only_mesh`)."""

    checkpoint: Path
    completion: CompletionConfig
    segmenter: Segmenter | None
    feature_source: str
    max_range: float = DEFAULT_MAX_RANGE

    @property
    def description(self) -> str:
        return (f"the Atlas network of `{self.checkpoint}`, features '{self.feature_source}' back-projected up to "
                f"{self.max_range:g} m from each camera")

    def mesh(self, scene, positions, protocol, class_names, labels, device, progress):
        mesh, chunks = rgb_only_mesh(scene, positions, self.checkpoint, protocol, class_names, self.completion,
                                     self.segmenter, self.max_range, device, progress)
        return mesh, {"chunks_reconstructed": chunks}


@dataclasses.dataclass
class StereoMethod:
    """Depth from plane-sweep stereo over the earlier input frames, fused with color and 2D labels.

    ``real_color_focal``: the focal length (pixels) of a real sequence's color camera when its intrinsics are another
    camera's (7-Scenes: 525 px; its files carry the depth camera's 585), or None to use them."""

    config: StereoConfig
    real_color_focal: float | None = None

    @property
    def description(self) -> str:
        focal = ("" if self.real_color_focal is None
                 else f"; real sequences' color focal length {self.real_color_focal:g} px")
        return (f"plane-sweep stereo ({self.config.planes} depths, {self.config.max_sources} earlier input frames "
                f"{self.config.min_baseline:g}-{self.config.max_baseline:g} m away, {self.config.width} pixels "
                f"wide{focal}), fused with the 2D labels of the RGB-D map")

    def mesh(self, scene, positions, protocol, class_names, labels, device, progress):
        stereo, mapper = PlaneSweepStereo(self.config, device), Mapper(protocol.volume_config(), class_names, device)
        key, without_source, seconds = sequence_key(scene.source), 0, 0.0
        for position in tqdm(positions, desc=f"stereo mapping {scene.name}", unit="frame", disable=not progress,
                             leave=False):
            frame = scene.frames[position]
            camera = frame.camera
            if scene.ground_truth is None and self.real_color_focal is not None:
                camera = camera.with_focal_length(self.real_color_focal)
            start = time.perf_counter()
            depth = stereo.estimate(frame.color, camera, frame.T_world_cam)
            seconds += time.perf_counter() - start
            if depth is None:
                without_source += 1
                continue
            mapper.integrate(MapFrame(camera, frame.T_world_cam, frame.color, depth,
                                      labels.labels(key, scene.frame_index(position), frame),
                                      stamp_ns=_stamp_ns(frame.timestamp)))
        return mapper.mesh()[0], {"frames_without_stereo_source": without_source,
                                  "stereo_seconds_per_frame": round(seconds / max(1, len(positions)), 3)}


def evaluate_rgb_only_scene(scene: EvaluationScene, method: RgbOnlyMethod, protocol: EvaluationProtocol,
                            class_names: Sequence[str], labels: LabelSource, device: str = "cpu",
                            progress: bool = True) -> SceneResult:
    """Map the scene's input frames with every method (see the module docstring) and score the meshes.

    Args:
        method: how the RGB-only row maps.
        labels: 2D labels of the input frames fused into the RGB-D map (and the stereo map), and of real held-out
            views.
    """
    seconds = {}
    start = time.perf_counter()
    reference = fuse_frames(scene, range(len(scene.frames)), protocol, class_names, device, None, progress,
                            "fusing all frames of")
    reference_mesh = reference.mesh()[0]
    del reference
    points = mesh_points(reference_mesh, protocol.mesh_sample_spacing, protocol.max_mesh_samples)
    point_labels = (None if scene.ground_truth is None
                    else reference_labels(scene.ground_truth, points, class_names))
    views = view_target(scene, protocol, labels)
    target = MeshTarget(points, point_labels, views)
    seconds["targets"] = time.perf_counter() - start

    inputs = [int(p) for p in np.flatnonzero(scene.is_input)]
    start = time.perf_counter()
    rgbd = fuse_frames(scene, inputs, protocol, class_names, device, labels, progress, "fusing input").mesh()[0]
    seconds["rgbd_map"] = time.perf_counter() - start
    start = time.perf_counter()
    rgb_only, method_info = method.mesh(scene, inputs, protocol, class_names, labels, device, progress)
    seconds["rgb_only_map"] = time.perf_counter() - start
    start = time.perf_counter()
    depth = median_depth(scene, inputs, protocol)
    constant = constant_depth_mesh(scene, inputs, depth, protocol, class_names, device)
    seconds["constant_depth_map"] = time.perf_counter() - start

    start = time.perf_counter()
    methods = {name: score_mesh(mesh, labeled, target, len(class_names), protocol.mesh_sample_spacing,
                                protocol.max_mesh_samples, protocol.fscore_threshold)
               for name, mesh, labeled in ((RGBD_MAP, rgbd, True), (RGB_ONLY, rgb_only, True),
                                           (CONSTANT_DEPTH, constant, False))}
    seconds["score"] = time.perf_counter() - start
    meshes = {TARGET_FUSION: reference_mesh, RGBD_MAP: rgbd, RGB_ONLY: rgb_only, CONSTANT_DEPTH: constant}
    info = {"frames": len(scene.frames), "input_frames": len(inputs),
            "held_out_views": [scene.frame_index(p) for p in scene.views], **method_info,
            "constant_depth_m": round(depth, 3), "target_points": len(points),
            "triangles": {name: mesh.num_triangles for name, mesh in meshes.items()},
            "seconds": {k: round(v, 2) for k, v in seconds.items()}}
    return SceneResult(scene.name, methods, meshes, scene_preview(scene, views.poses), info)
