"""The evaluate command on a 'single_view' checkpoint (SemSVR, issue 16): one color image -> its frustum's semantic
TSDF, scored where there is ground truth, next to what one RGB-D frame gives.

* Held-out synthetic rooms (rendered at the checkpoint's camera by the evaluation protocol and cached): views
  evenly spread along each room's camera path (``views`` per room). The target is the room's exact semantic TSDF in
  the view's frustum grid (:func:`~semantic_recon_ros.core.models.single_view.frustum_target.frustum_ground_truth`).
  Methods: the network on the view's image; the depth image of the view with its 2D labels back-projected, and the
  RGB-D map of that one frame (:mod:`.frustum_baselines`). Scores (:class:`FrustumMethodScores`): the frustum cell
  scores of :mod:`..single_view.frustum_scores` (occupancy IoU / precision / recall over every cell, recall of the
  hidden part, class accuracies, mAcc, mIoU over the surface bands), and Atlas' mesh metrics (:func:`.metrics.
  mesh_metrics`) between points sampled on the method's mesh and on the target's, both within the frustum: target
  points in the surface bands, method points outside the region no free path from the camera reaches (surfaces
  behind closed walls, which no view can tell and the target region leaves out).
* 7-Scenes frames held back from training (``held_out_range``, at a stride): the image resampled to the trained
  camera (:func:`~semantic_recon_ros.core.models.single_view.network_view`), the depth the prediction shows each
  pixel (:func:`.frustum_baselines.rendered_depth`) against the captured depth on the pixels the image covers, with
  Atlas' 2D depth metrics (:func:`.metrics.depth_metrics`, averaged over frames), next to a constant depth (the
  median captured depth of all scored pixels); the class at the rendered surface against the 2D segmenter's labels
  (semantic consistency).

Frustum scores and semantic counts are summed over views before dividing; mesh and depth metrics are averaged over
views (Atlas' convention).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from semantic_recon_ros.core.classes import ClassSet
from semantic_recon_ros.core.datasets import open_sequence
from semantic_recon_ros.core.mesh import SemanticMesh
from semantic_recon_ros.core.models.single_view import (FrustumGrid, LossShapingConfig, NetworkView, frustum_mesh,
                                                         frustum_regions, network_view)
from semantic_recon_ros.core.models.checkpoint import CheckpointInfo
from semantic_recon_ros.core.models.single_view.frustum_target import frustum_ground_truth
from semantic_recon_ros.core.models.single_view.view_resampling import nearest_source_values
from semantic_recon_ros.core.synthetic import load_ground_truth

from ..data.pseudo_labels import LabelSource, sequence_key
from ..single_view.frustum_scores import FrustumScores
from .evaluation_plots import per_class_iou_plot
from .evaluation_protocol import EvaluationProtocol, held_out_synthetic_scene, pick_views
from .evaluation_scoring import DEPTH_KEYS, MESH_KEYS
from .frustum_baselines import (FrustumPrediction, depth_image_frustum, one_hot_probabilities, rendered_depth,
                                rgbd_map_frustum, with_network_fill)
from .frustum_report import DEPTH_COLUMNS, FRUSTUM_COLUMNS, FrustumDataset, frustum_preview, table, \
    write_frustum_results
from .metrics import SemanticConfusion, depth_metrics, mesh_metrics, sample_surface_points

NETWORK = "single-view network (image)"
DEPTH_NETWORK = "single-view network (image + depth)"
DEPTH_IMAGE = "depth image + 2D labels"
RGBD_FRAME = "RGB-D map of the frame"
DEPTH_IMAGE_FILLED = "depth image + network fill"
RGBD_FRAME_FILLED = "RGB-D map of the frame + network fill"
FILLED_BASES = {DEPTH_IMAGE_FILLED: DEPTH_IMAGE, RGBD_FRAME_FILLED: RGBD_FRAME}
CONSTANT_DEPTH = "constant depth"
MESH_PREFIX = "mesh "
SEVEN_SCENES_PREVIEWS = 3
SAMPLE_SEED = 0


class FrustumMethodScores:
    """One method's frustum cell scores (summed), mesh metrics and 2D depth metrics of its rendered depth (one dict
    per view) on synthetic views."""

    def __init__(self, num_classes: int, shaping: LossShapingConfig) -> None:
        self.cells = FrustumScores(num_classes, shaping)
        self.meshes: list[dict[str, float]] = []
        self.depths: list[dict[str, float]] = []

    def empty(self) -> "FrustumMethodScores":
        return FrustumMethodScores(self.cells.confusion.num_classes, self.cells.shaping)

    def merge(self, other: "FrustumMethodScores") -> None:
        self.cells.merge(other.cells)
        self.meshes += other.meshes
        self.depths += other.depths

    def summary(self) -> dict[str, float]:
        """The cell scores (:meth:`FrustumScores.result`), ``mesh <metric>`` and the 2D depth metrics, means over the
        views where they are finite (Acc, Comp and Prec of the mesh are not where the method has no surface in the
        frustum: ``mesh no surface`` is the share of such views)."""
        no_surface = [float(math.isnan(m["Prec"])) for m in self.meshes]
        return (self.cells.result() | {MESH_PREFIX + key: _mean([m[key] for m in self.meshes]) for key in MESH_KEYS}
                | {MESH_PREFIX + "no surface": _mean(no_surface)}
                | {key: _mean([d[key] for d in self.depths]) for key in DEPTH_KEYS})


class DepthViewScores:
    """One method's 2D depth metrics (one dict per frame) and, for a labeling method, the confusion of its
    rendered classes against the 2D labels."""

    def __init__(self, num_classes: int, labeled: bool) -> None:
        self.num_classes = num_classes
        self.views: list[dict[str, float]] = []
        self.confusion = SemanticConfusion(num_classes) if labeled else None

    def empty(self) -> "DepthViewScores":
        return DepthViewScores(self.num_classes, self.confusion is not None)

    def merge(self, other: "DepthViewScores") -> None:
        self.views += other.views
        if self.confusion is not None and other.confusion is not None:
            self.confusion.merge(other.confusion)

    def summary(self) -> dict[str, float]:
        semantic = ({} if self.confusion is None
                    else {"mIoU 2D": self.confusion.miou, "mAcc 2D": self.confusion.macc})
        return {key: _mean([v[key] for v in self.views]) for key in DEPTH_KEYS} | semantic


def _mean(values: Sequence[float]) -> float:
    """The mean of the finite ``values`` (NaN when none is)."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


@dataclass
class FrustumSceneResult:
    """One scene's methods' scores and what was run (JSON-able ``info``)."""

    name: str
    methods: dict[str, FrustumMethodScores | DepthViewScores]
    info: dict = field(default_factory=dict)


def reads_depth(network: torch.nn.Module) -> bool:
    """The single-view network also reads the view's depth (``image_to_latent.depth_input``)."""
    return bool(network.config.depth_input)


def network_name(network: torch.nn.Module) -> str:
    """The network's method name in the tables: :data:`DEPTH_NETWORK` for one that reads depth, else
    :data:`NETWORK`."""
    return DEPTH_NETWORK if reads_depth(network) else NETWORK


def network_frustum(network: torch.nn.Module, view: NetworkView, grid: FrustumGrid, class_names: Sequence[str],
                    device: str, mesh: bool = True) -> FrustumPrediction:
    """The network's frustum of one view (:func:`network_view`: the image, and its depth for a network that reads
    depth; classes: the argmax of the logits everywhere); its mesh only with ``mesh`` (else an empty one)."""
    depth = view.depth[None].to(device) if reads_depth(network) else None
    with torch.inference_mode():
        prediction = network(view.image[None].to(device), depth)
    tsdf, logits = prediction["tsdf"][0].float().cpu(), prediction["class_logits"][0].float().cpu()
    surface = (frustum_mesh(grid, tsdf, logits.softmax(dim=0), class_names) if mesh
               else SemanticMesh.empty())
    return FrustumPrediction(tsdf, logits.argmax(dim=0), surface)


def frustum_points(grid: FrustumGrid, mesh: SemanticMesh, cells: torch.Tensor, spacing: float,
                   max_points: int) -> np.ndarray:
    """(P, 3) points sampled every ``spacing`` metres on ``mesh`` (camera frame) that lie in the frustum grid in one
    of the ``cells`` ((D, Y, X) bool; the cell nearest the point)."""
    points = sample_surface_points(mesh.vertices, mesh.triangles, spacing, SAMPLE_SEED, max_points)
    if not len(points):
        return points
    index = grid.cam_to_cell_coordinates(torch.as_tensor(points)).round().long()
    inside = (torch.as_tensor(points[:, 2]) > 0) & ((index >= 0) & (index < torch.tensor(grid.shape))).all(dim=1)
    keep = inside.clone()
    keep[inside] = cells[tuple(index[inside].T)]
    return points[keep.numpy()]


def evaluate_synthetic_room(folder: Path, protocol: EvaluationProtocol, network: torch.nn.Module, grid: FrustumGrid,
                            classes: ClassSet, labels: LabelSource, shaping: LossShapingConfig, out: Path,
                            device: str = "cpu", progress: bool = True) -> FrustumSceneResult:
    """Score the network and the one-frame baselines in ``protocol.views_per_scene`` views spread along the
    camera path of the synthetic room in ``folder`` (rendered at the grid's camera); writes the first view's
    preview to OUT/preview_<room>.png."""
    truth = load_ground_truth(folder)
    frames = open_sequence(folder, "scannet").subset()
    name = f"room-{truth.scene.seed}"
    positions = pick_views(range(len(frames)), protocol.views_per_scene)
    key = sequence_key(folder)
    names = classes.names
    own = network_name(network)
    methods = {method: FrustumMethodScores(classes.num_classes, shaping)
               for method in (own, DEPTH_IMAGE, RGBD_FRAME, *FILLED_BASES)}
    seconds = dict.fromkeys(("targets", *methods), 0.0)
    for number, position in enumerate(tqdm(positions, desc=f"views of {name}", unit="view", disable=not progress,
                                           leave=False)):
        frame = frames[position]
        if frame.camera != grid.camera:
            raise ValueError(f"{folder}: rendered with {frame.camera}, the checkpoint predicts the frustum of "
                             f"{grid.camera}")
        start = time.perf_counter()
        target = frustum_ground_truth(grid, truth.scene, frame.T_world_cam, "cpu", classes)
        regions = frustum_regions(target.tsdf[None], shaping)
        target_mesh = frustum_mesh(grid, target.tsdf, one_hot_probabilities(target.labels, classes.num_classes),
                                   names)
        surface = (regions["visible_surface"] | regions["occluded_surface"])[0]
        target_points = frustum_points(grid, target_mesh, surface, protocol.mesh_sample_spacing,
                                       protocol.max_mesh_samples)
        scored = ~regions["unreachable"][0]
        frame_labels = labels.labels(key, int(frames.indices[position]), frame)
        seconds["targets"] += time.perf_counter() - start
        predictions = {}
        for method in methods:
            start = time.perf_counter()
            if method == own:
                view = network_view(frame.color, frame.camera, grid.camera,
                                    frame.depth if reads_depth(network) else None)
                predictions[method] = network_frustum(network, view, grid, names, device)
            elif method == DEPTH_IMAGE:
                predictions[method] = depth_image_frustum(grid, frame.depth, frame_labels, names)
            elif method == RGBD_FRAME:
                predictions[method] = rgbd_map_frustum(grid, frame, frame_labels, protocol.volume_config(), names,
                                                       device)
            else:
                predictions[method] = with_network_fill(grid, predictions[FILLED_BASES[method]], predictions[own],
                                                        names)
            prediction = predictions[method]
            methods[method].cells.update_classes(prediction.tsdf[None], prediction.classes[None], target.tsdf[None],
                                                 target.labels[None], regions)
            points = frustum_points(grid, prediction.mesh, scored, protocol.mesh_sample_spacing,
                                    protocol.max_mesh_samples)
            methods[method].meshes.append(mesh_metrics(points, target_points, protocol.fscore_threshold))
            methods[method].depths.append(depth_metrics(rendered_depth(grid, prediction.tsdf)[0].numpy(),
                                                        frame.depth))
            seconds[method] += time.perf_counter() - start
        if number == 0:
            shown = predictions[own]
            frustum_preview(out / f"preview_{name}.png", frame.color, rendered_depth(grid, shown.tsdf)[0].numpy(),
                            frame.depth, shown.mesh, grid, classes,
                            f"{name}, frame {frames.indices[position]}: image | network depth | true depth | "
                            "network labels | network mesh from above")
    info = {"views": [int(frames.indices[p]) for p in positions], "frames": len(frames),
            "seconds": {k: round(v, 2) for k, v in seconds.items()}}
    return FrustumSceneResult(name, methods, info)


def evaluate_seven_scenes(folder: Path, protocol: EvaluationProtocol, stride: int, network: torch.nn.Module,
                          grid: FrustumGrid, classes: ClassSet, labels: LabelSource, out: Path, device: str = "cpu",
                          progress: bool = True) -> FrustumSceneResult:
    """Score the network's rendered depth and classes on every ``stride``-th frame of ``protocol.held_out_range``
    of the real sequence ``folder`` (see the module docstring); previews of a few frames into OUT."""
    first, last = protocol.held_out_range
    frames = open_sequence(folder).subset(first, last, stride=stride)
    if not len(frames):
        raise ValueError(f"{folder}: no frame in the held-out range [{first}, {last}) at stride {stride}")
    key = sequence_key(folder)
    previews = set(pick_views(range(len(frames)), SEVEN_SCENES_PREVIEWS))
    network_scores = DepthViewScores(classes.num_classes, labeled=True)
    captured, coverage = [], []
    start = time.perf_counter()
    for position in tqdm(range(len(frames)), desc=f"frames of {frames.name}", unit="frame", disable=not progress,
                         leave=False):
        frame = frames[position]
        if frame.depth is None:
            raise ValueError(f"{folder}: frame {frame.name!r} has no depth")
        view = network_view(frame.color, frame.camera, grid.camera, frame.depth if reads_depth(network) else None)
        prediction = network_frustum(network, view, grid, classes.names, device, mesh=position in previews)
        depth, hit_classes = rendered_depth(grid, prediction.tsdf, prediction.classes)
        covered = view.covered.numpy()
        real = nearest_source_values(np.nan_to_num(frame.depth, nan=0.0, posinf=0.0), frame.camera, grid.camera, 0.0)
        segmenter = nearest_source_values(labels.labels(key, int(frames.indices[position]), frame), frame.camera,
                                          grid.camera, -1)
        depth = depth.numpy()
        network_scores.views.append(depth_metrics(depth[covered], real[covered]))
        network_scores.confusion.update(hit_classes[covered], torch.as_tensor(segmenter[covered]))
        captured.append(real[covered])
        coverage.append(float(covered.mean()))
        if position in previews:
            shown = (view.image.permute(1, 2, 0) * 255).round().byte().numpy()
            frustum_preview(out / f"preview_{frames.name}_{frames.indices[position]:06d}.png", shown,
                            np.where(covered, depth, 0.0), real, prediction.mesh, grid, classes,
                            f"{frames.name} frame {frames.indices[position]} (resampled to the trained camera): "
                            "image | network depth | captured depth | network labels | network mesh from above")
    seconds = time.perf_counter() - start
    valid = np.concatenate(captured)
    valid = valid[np.isfinite(valid) & (valid > 0)]
    if not len(valid):
        raise ValueError(f"{folder}: the held-out frames have no valid depth")
    median = float(np.median(valid))
    constant = DepthViewScores(classes.num_classes, labeled=False)
    constant.views = [depth_metrics(np.full_like(real, median), real) for real in captured]
    info = {"frames": [int(i) for i in frames.indices], "coverage": round(float(np.mean(coverage)), 3),
            "constant_depth_m": round(median, 3), "seconds": round(seconds, 2)}
    return FrustumSceneResult(frames.name, {network_name(network): network_scores, CONSTANT_DEPTH: constant}, info)


def run_single_view_evaluation(args: argparse.Namespace, network: torch.nn.Module, info: CheckpointInfo, protocol: EvaluationProtocol,
                               seeds: Sequence[int], synthetic_title: str, seven_scenes_title: str | None,
                               classes: ClassSet, labels: LabelSource, labels_description: str, command: str,
                               started: float) -> int:
    """The evaluate command's run for a 'single_view' checkpoint (``network``, ``info``), the scenes already
    checked against its training record: the synthetic rooms ``seeds`` rendered at its camera and the 7-Scenes
    frames of ``args``; writes OUT/results.md, results.json, the per-class IoU plot and the previews."""
    grid = FrustumGrid(info.camera, info.config.frustum)
    protocol = dataclasses.replace(protocol, image_width=grid.camera.width, image_height=grid.camera.height)
    shaping = LossShapingConfig()
    progress = not args.no_progress
    cache = args.cache_dir or args.out / "cache"
    datasets = []
    if seeds:
        rooms = []
        for seed in tqdm(seeds, desc="synthetic rooms", unit="room", disable=not progress):
            folder = held_out_synthetic_scene(cache, seed, protocol, progress)
            rooms.append(evaluate_synthetic_room(folder, protocol, network, grid, classes, labels, shaping, args.out,
                                                 args.device, progress))
        datasets.append(FrustumDataset(synthetic_title, rooms, synthetic=True))
    if args.seven_scenes is not None:
        scene = evaluate_seven_scenes(args.seven_scenes, protocol, protocol.seven_scenes_stride, network, grid,
                                      classes, labels, args.out, args.device, progress)
        datasets.append(FrustumDataset(seven_scenes_title, [scene], synthetic=False))
    if seeds:
        per_class_iou_plot(args.out / "per_class_iou_synthetic.png", classes.names,
                           {name: scores.cells.confusion.per_class_iou().numpy()
                            for name, scores in datasets[0].totals.items()},
                           f"{synthetic_title}: per-class IoU in the frusta's surface bands")
    seconds = time.perf_counter() - started
    markdown, _ = write_frustum_results(args.out, datasets, classes.names, protocol, grid, shaping,
                                        labels_description, protocol.seven_scenes_stride, args.checkpoint, command,
                                        seconds)
    for dataset in datasets:
        print(f"\n{dataset.title}\n" + table({name: s.summary() for name, s in dataset.totals.items()},
                                             FRUSTUM_COLUMNS if dataset.synthetic else DEPTH_COLUMNS))
    print(f"\nwrote {markdown} ({seconds / 60:.1f} min)")
    return 0
