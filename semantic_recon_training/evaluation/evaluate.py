"""Evaluate a checkpoint on held-out scenes: a completion (S4R) checkpoint next to plain TSDF fusion and 2D label
fusion, an RGB-only (Atlas) checkpoint next to the RGB-D map, or a single-view checkpoint next to what one RGB-D
frame gives.

For every held-out synthetic room (generated from its seed and cached) and optionally a 7-Scenes sequence, a
seeded part of the frames is the input (the training protocol of :mod:`..data.chunk_extraction`).

* S4R checkpoints (:mod:`.scene_evaluation`): the input is fused with the 2D segmenter's pseudo-labels; the fusion
  itself is the "TSDF fusion" and "2D label fusion" baselines, the checkpoint completes it. Scores (see
  :mod:`.evaluation_scoring`): completion IoU / recall / precision and TSDF L1, semantic mIoU / mAcc
  partial-to-partial and partial-to-full (synthetic), Atlas' 2D depth metrics in held-out views, semantic
  consistency in held-out views, Atlas' 3D mesh metrics.
* Atlas checkpoints, and ``--rgb-only-stereo`` (:mod:`.rgb_only_evaluation`): the input's color and poses are
  mapped by the RGB-only Mapper, or by plane-sweep stereo then fusion, next to the RGB-D map of the same frames and
  a constant-depth baseline, scored with Atlas' 3D and 2D depth metrics against the fusion of all frames' depth,
  and semantically where there is ground truth. On 7-Scenes only the frames of ``--held-out-frames`` are used (the
  network trains on none of them).
* single-view checkpoints (:mod:`.frustum_evaluation`): ``--views`` views along each synthetic room's camera path
  (rendered at the checkpoint's camera), each image's predicted frustum against the room's exact semantic TSDF, next
  to the view's depth image with 2D labels and the RGB-D map of that frame; on 7-Scenes, the depth the prediction
  renders in the held-out frames (every ``--seven-scenes-stride``-th of ``--held-out-frames``) against the captured
  depth, next to a constant depth.

Writes OUT/results.md, OUT/results.json and PNG plots (a mesh preview per scene); caches scenes and pseudo-labels
under OUT/cache (or --cache-dir). Scenes the checkpoint records as trained or validated on are refused, and only the
reserved rooms are titled held-out (:mod:`.held_out`).

Examples: python -m semantic_recon_training evaluate --checkpoint models/default.pt --synthetic-seeds 900-904 \\
              --seven-scenes ../shared/data/7scenes-redkitchen --out train_runs/eval
          python -m semantic_recon_training evaluate --checkpoint models/atlas_default.pt --synthetic-seeds 900-904 \\
              --seven-scenes ../shared/data/7scenes-redkitchen --seven-scenes-stride 2 --out train_runs/eval_rgb_only
          python -m semantic_recon_training evaluate --rgb-only-stereo --synthetic-seeds 900-904 \\
              --seven-scenes ../shared/data/7scenes-redkitchen --seven-scenes-stride 2 --out train_runs/eval_stereo
          python -m semantic_recon_training evaluate --checkpoint models/single_view_default.pt --synthetic-seeds \\
              900-904 --seven-scenes ../shared/data/7scenes-redkitchen --seven-scenes-stride 1 \\
              --out train_runs/eval_single_view
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from semantic_recon_ros.core.classes import ClassSet, load_class_set
from semantic_recon_ros.core.completion_confidence import ConfidenceCalibration
from semantic_recon_ros.core.config.completion import CompletionConfig
from semantic_recon_ros.core.config.stereo import StereoConfig
from semantic_recon_ros.core.datasets.seven_scenes import COLOR_FOCAL_LENGTH
from semantic_recon_ros.core.models import load_checkpoint
from semantic_recon_ros.core.models.checkpoint import CheckpointInfo
from semantic_recon_ros.core.config.files import load_section
from semantic_recon_ros.core.resources import share_file

from ..data.pseudo_labels import DEFAULT_SEGMENTER_DIR, GroundTruthLabels, SegmenterLabels, deeplab_labels
from ..data.training_record import TrainingRecord
from ..paths import repo_path
from .evaluation_plots import depth_error_histogram, mesh_preview, per_class_iou_plot
from .evaluation_protocol import (EvaluationProtocol, EvaluationScene, held_out_synthetic_scene, parse_seeds,
                                  real_evaluation_scene, synthetic_evaluation_scene)
from .evaluation_report import DatasetResult, metrics_table, write_results
from .frustum_evaluation import run_single_view_evaluation
from .held_out import check_synthetic_rooms, record_warning, sequence_note, synthetic_title
from .reconstructions import ABLATION_PREFIX, LABEL_FUSION
from .rgb_only_evaluation import AtlasMethod, RgbOnlyMethod, StereoMethod, evaluate_rgb_only_scene
from .rgb_only_report import HEADINGS as RGB_ONLY_HEADINGS, write_rgb_only_results
from .scene_evaluation import SceneResult, evaluate_scene

DEFAULT_SEGMENTER = Path(repo_path(DEFAULT_SEGMENTER_DIR))
LABEL_DESCRIPTIONS = {"segmenter": "the DeepLab ADE20K segmenter", "ground-truth": "the synthetic frames' ground truth"}
SEVEN_SCENES_TITLE = "7-Scenes"


def _range_pair(text: str) -> tuple[int, int]:
    """``"500-599"`` -> (500, 600), a half-open range of frame indices."""
    try:
        first, last = (int(n) for n in text.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FIRST-LAST frame numbers, got {text!r}") from None
    return first, last + 1


def _image_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(n) for n in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return width, height


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = EvaluationProtocol()
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", type=Path,
                      help="inference checkpoint to evaluate: S4R (completion), Atlas (RGB-only reconstruction) or "
                           "single_view (one image's frustum)")
    what.add_argument("--rgb-only-stereo", action="store_true",
                      help="evaluate RGB-only mapping by plane-sweep stereo (no checkpoint; the 'stereo' section of "
                           "--params-file) like an Atlas checkpoint")
    parser.add_argument("--seven-scenes-color-focal", type=float, default=COLOR_FOCAL_LENGTH,
                        help="--rgb-only-stereo: focal length (pixels) of 7-Scenes' color camera, whose intrinsics "
                             "the sequence does not carry (it has the depth camera's 585; default %(default)s, the "
                             "value the 7-Scenes literature uses)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (results.md, results.json, plots)")
    parser.add_argument("--synthetic-seeds", default="900-904",
                        help="held-out synthetic rooms, e.g. 900-904 or 900,903 (default %(default)s; 900-909 are "
                             "reserved for evaluation); 'none' skips synthetic scenes")
    parser.add_argument("--seven-scenes", type=Path, default=None, help="a 7-Scenes sequence folder to evaluate on")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="generated scenes and pseudo-labels (default OUT/cache); reuse it across runs")
    parser.add_argument("--label-cache", type=Path, default=None,
                        help="pseudo-label cache root (default CACHE_DIR/labels; the trainer's cache can be shared)")
    parser.add_argument("--segmenter", type=Path, default=DEFAULT_SEGMENTER,
                        help="DeepLab ADE20K TFLite folder giving the pseudo-labels (default %(default)s)")
    parser.add_argument("--labels", choices=("segmenter", "ground-truth"), default="segmenter",
                        help="2D labels fused by the label-fusion baseline: the segmenter's pseudo-labels (default) "
                             "or the synthetic frames' ground truth (an upper bound; not for 7-Scenes)")
    parser.add_argument("--frames", type=int, default=defaults.synthetic_frames,
                        help="frames per synthetic room (default %(default)s)")
    parser.add_argument("--image-size", type=_image_size,
                        default=(defaults.image_width, defaults.image_height),
                        help=f"synthetic frame size WIDTHxHEIGHT (default {defaults.image_width}x"
                             f"{defaults.image_height})")
    parser.add_argument("--seven-scenes-stride", type=int, default=defaults.seven_scenes_stride,
                        help="use every n-th 7-Scenes frame (default %(default)s; an Atlas checkpoint maps only the "
                             "held-out frames: use e.g. 2)")
    parser.add_argument("--held-out-frames", type=_range_pair, default=defaults.held_out_range,
                        help="7-Scenes frames held out of training, where held-out views are taken (default "
                             f"{defaults.held_out_range[0]}-{defaults.held_out_range[1] - 1})")
    parser.add_argument("--input-fraction", type=float, default=defaults.input_fraction,
                        help="fraction of the frames fused into the input scan (default %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="input subset seed (default %(default)s)")
    parser.add_argument("--views", type=int, default=defaults.views_per_scene,
                        help="held-out views rendered per scene (default %(default)s)")
    parser.add_argument("--view-downscale", type=int, default=defaults.view_downscale,
                        help="held-out views are scored at 1/n resolution (default %(default)s)")
    parser.add_argument("--voxel-size", type=float, default=defaults.voxel_size,
                        help="voxel size in metres; must be the checkpoint's (default %(default)s)")
    parser.add_argument("--params-file", type=Path, default=None,
                        help="parameter YAML whose 'completion' section chunks the network run and whose 'stereo' "
                             "section sets --rgb-only-stereo (default: the node's config/mapping.yaml)")
    parser.add_argument("--ablation", action="store_true",
                        help="also score rows that change one lever of the map each: the label rule, the "
                             "confidence threshold of the network's additions")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default %(default)s)")
    parser.add_argument("--device", default="cpu", help="torch device (default %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def protocol_from_args(args: argparse.Namespace) -> EvaluationProtocol:
    return EvaluationProtocol(voxel_size=args.voxel_size, synthetic_frames=args.frames, image_width=args.image_size[0],
                              image_height=args.image_size[1], seven_scenes_stride=args.seven_scenes_stride,
                              held_out_range=args.held_out_frames, input_fraction=args.input_fraction,
                              seed=args.seed, views_per_scene=args.views, view_downscale=args.view_downscale)


def write_plots(out: Path, datasets: list[DatasetResult], class_names: tuple[str, ...]) -> None:
    """Per-class IoU bars per dataset (synthetic: the target surface; real: held-out views vs the segmenter) and the
    depth error histograms (label fusion left out: its geometry is plain fusion's)."""
    for dataset in datasets:
        which = "full" if dataset.synthetic else "views"
        per_class_iou_plot(out / f"per_class_iou_{'synthetic' if dataset.synthetic else 'seven_scenes'}.png",
                           class_names, {name: getattr(scores, which).per_class_iou().numpy()
                                         for name, scores in dataset.totals.items()
                                         if scores.has_semantics and not name.startswith(ABLATION_PREFIX)},
                           f"{dataset.title}: per-class IoU, "
                           f"{'target surface' if dataset.synthetic else 'held-out views vs the segmenter'}")
    depth_error_histogram(out / "depth_error_histogram.png",
                          {d.title: {name: np.concatenate(scores.depth_errors) for name, scores in d.totals.items()
                                     if name != LABEL_FUSION and not name.startswith(ABLATION_PREFIX)}
                           for d in datasets})


def load_evaluated_checkpoint(path: Path, device: str, class_names: tuple[str, ...],
                              protocol: EvaluationProtocol) -> tuple[torch.nn.Module, CheckpointInfo]:
    """The network and info of the checkpoint ``path``; ValueError naming the protocol's settings when a map model
    was trained for others (a 'single_view' checkpoint has no voxels: only its classes are checked)."""
    network, info = load_checkpoint(path, device, expected_class_names=class_names)
    if info.model == "single_view":
        return network, info
    try:
        return load_checkpoint(path, device, expected_class_names=class_names, expected_voxel_size=protocol.voxel_size,
                               expected_truncation=protocol.truncation)
    except ValueError as err:
        if "trained for" not in str(err):  # not a mismatch with the protocol
            raise
        raise ValueError(f"{err} (evaluation protocol: --voxel-size {protocol.voxel_size} m, truncation "
                         f"{protocol.truncation_voxels:g} voxels, config/classes.yaml)") from None


def preview(out: Path, result: SceneResult, classes: ClassSet) -> None:
    """The scene's meshes side by side from above (OUT/mesh_preview_<scene>.png); frees them."""
    mesh_preview(out / f"mesh_preview_{result.name}.png", result.meshes, classes, result.preview,
                 f"{result.name}: " + " / ".join(result.meshes))
    result.meshes.clear()


def evaluate_datasets(evaluate: Callable[[EvaluationScene], SceneResult], args: argparse.Namespace,
                      protocol: EvaluationProtocol, seeds: list[int], record: TrainingRecord | None,
                      seven_scenes_note: str | None, classes: ClassSet, rgb_only: bool) -> list[DatasetResult]:
    """``evaluate`` every synthetic room of ``seeds`` and the 7-Scenes sequence of ``args`` (with ``rgb_only``, only
    its held-out frames) and preview each scene."""
    progress = not args.no_progress
    cache = args.cache_dir or args.out / "cache"
    datasets = []
    if seeds:
        results = []
        for seed in tqdm(seeds, desc="synthetic rooms", unit="room", disable=not progress):
            folder = held_out_synthetic_scene(cache, seed, protocol, progress)
            results.append(evaluate(synthetic_evaluation_scene(folder, protocol)))
            preview(args.out, results[-1], classes)
        datasets.append(DatasetResult(synthetic_title(args.synthetic_seeds, seeds, record), results, synthetic=True))
    if args.seven_scenes is not None:
        scene = real_evaluation_scene(args.seven_scenes, protocol, protocol.seven_scenes_stride, held_out_only=rgb_only)
        result = evaluate(scene)
        preview(args.out, result, classes)
        first, last = protocol.held_out_range
        frames = f"only frames {first}-{last - 1}, " if rgb_only else ""
        datasets.append(DatasetResult(f"{SEVEN_SCENES_TITLE} ({scene.name}, {frames}frame stride "
                                      f"{protocol.seven_scenes_stride}; {seven_scenes_note})", [result],
                                      synthetic=False))
    return datasets


def command_line() -> str:
    """The evaluate command as it was run, for the reports."""
    if len(sys.argv) > 1 and sys.argv[1] == "evaluate":
        return "python -m semantic_recon_training evaluate " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    return "python -m semantic_recon_training evaluate"


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    protocol = protocol_from_args(args)
    seeds = [] if args.synthetic_seeds.strip().lower() == "none" else parse_seeds(args.synthetic_seeds)
    if not seeds and args.seven_scenes is None:
        raise ValueError("nothing to evaluate: give --synthetic-seeds and/or --seven-scenes")
    if args.seven_scenes is not None and not args.seven_scenes.is_dir():
        raise FileNotFoundError(f"7-Scenes folder not found: {args.seven_scenes}")
    if args.seven_scenes is not None and args.labels == "ground-truth":
        raise ValueError("--labels ground-truth needs 2D ground truth, which 7-Scenes does not have")
    torch.set_num_threads(args.threads)
    classes = load_class_set()
    params_files = args.params_file or share_file("config/mapping.yaml")
    if args.rgb_only_stereo:
        network, info = None, None
    else:
        network, info = load_evaluated_checkpoint(args.checkpoint, args.device, classes.names, protocol)
    record = None if info is None or info.training is None else TrainingRecord.from_dict(info.training)
    check_synthetic_rooms(seeds, record)  # refuses rooms the checkpoint has seen
    if args.rgb_only_stereo:  # nothing trained: its settings were chosen on 7-Scenes frames 0-99 (bench_stereo.py)
        first, last = protocol.held_out_range
        seven_scenes_note = f"held-out views from frames {first}-{last - 1}; stereo is not trained"
    else:
        seven_scenes_note = (None if args.seven_scenes is None
                             else sequence_note(args.seven_scenes, protocol.held_out_range, record))
        if record_warning(record):
            print(record_warning(record), file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.cache_dir or args.out / "cache"
    if args.labels == "segmenter":
        labels = deeplab_labels(args.segmenter, classes.names, args.label_cache or cache / "labels",
                                min_probability=protocol.min_label_probability, num_threads=args.threads)
    else:
        labels = GroundTruthLabels(classes.num_classes)
    completion = load_section(params_files, "completion", CompletionConfig)
    if info is not None and info.model == "single_view":
        first, last = protocol.held_out_range
        return run_single_view_evaluation(
            args, network, info, protocol, seeds, synthetic_title(args.synthetic_seeds, seeds, record),
            None if args.seven_scenes is None else (f"{SEVEN_SCENES_TITLE} ({args.seven_scenes.name}, only frames "
                                                    f"{first}-{last - 1}, frame stride {protocol.seven_scenes_stride}"
                                                    f"; {seven_scenes_note})"),
            classes, labels, LABEL_DESCRIPTIONS[args.labels], command_line(), started)
    progress = not args.no_progress
    rgb_only = args.rgb_only_stereo or info.model == "atlas"
    if rgb_only:
        del network  # the RGB-only Mapper loads the checkpoint itself
        if args.rgb_only_stereo:
            method: RgbOnlyMethod = StereoMethod(load_section(params_files, "stereo", StereoConfig),
                                                 args.seven_scenes_color_focal)
            settings = {"stereo": dataclasses.asdict(method.config), "real_color_focal": method.real_color_focal}
        else:
            segmenter = None
            if info.config.feature_source == "deeplab":
                segmenter = (labels if isinstance(labels, SegmenterLabels) else
                             deeplab_labels(args.segmenter, classes.names, None, num_threads=args.threads)).segmenter
            method = AtlasMethod(args.checkpoint, completion, segmenter, info.config.feature_source)
            settings = {"checkpoint": str(args.checkpoint), "network": dataclasses.asdict(info.config),
                        "rgb_only_max_range": method.max_range}

        def evaluate(scene: EvaluationScene) -> SceneResult:
            return evaluate_rgb_only_scene(scene, method, protocol, classes.names, labels, device=args.device,
                                           progress=progress)
    else:
        calibration = (ConfidenceCalibration.uncalibrated() if info.calibration is None
                       else ConfidenceCalibration.from_dict(info.calibration))

        def evaluate(scene: EvaluationScene) -> SceneResult:
            return evaluate_scene(scene, network, info.model == "s4r", protocol, classes.names, labels, completion,
                                  device=args.device, progress=progress, calibration=calibration,
                                  ablation=args.ablation)

    datasets = evaluate_datasets(evaluate, args, protocol, seeds, record, seven_scenes_note, classes, rgb_only)
    write_plots(args.out, datasets, classes.names)
    command = command_line()
    seconds = time.perf_counter() - started
    if rgb_only:
        markdown, _ = write_rgb_only_results(args.out, datasets, classes.names, protocol, method.description,
                                             settings, args.labels == "ground-truth", command, seconds)
    else:
        markdown, _ = write_results(args.out, datasets, classes.names, protocol, completion, args.checkpoint, command,
                                    seconds, calibration)
    headings = RGB_ONLY_HEADINGS if rgb_only else None
    for dataset in datasets:
        print(f"\n{dataset.title}\n" + metrics_table({m: s.summary() for m, s in dataset.totals.items()}, headings))
    print(f"\nwrote {markdown} ({seconds / 60:.1f} min)")
    return 0
