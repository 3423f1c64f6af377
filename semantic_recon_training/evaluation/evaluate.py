"""Evaluate a completion checkpoint on held-out scenes, next to plain TSDF fusion and 2D label fusion.

For every held-out synthetic room (generated from its seed and cached) and optionally a 7-Scenes sequence, a
seeded part of the frames is fused with the 2D segmenter's pseudo-labels (the training protocol of
:mod:`..data.chunk_extraction`); the fusion itself is the "TSDF fusion" and "2D label fusion" baselines, the
checkpoint completes it. Scores (see :mod:`.evaluation_scoring`): completion IoU / recall / precision and TSDF
L1, semantic mIoU / mAcc partial-to-partial and partial-to-full (synthetic), Atlas' 2D depth metrics in held-out
views, semantic consistency in held-out views, Atlas' 3D mesh metrics. Writes OUT/results.md, OUT/results.json
and PNG plots; caches scenes and pseudo-labels under OUT/cache (or --cache-dir). Scenes the checkpoint records as
trained or validated on are refused, and only the reserved rooms are titled held-out (:mod:`.held_out`).

Example: python -m semantic_recon_training evaluate --checkpoint models/default.pt --synthetic-seeds 900-904 \\
             --seven-scenes ../shared/data/7scenes-redkitchen --out train_runs/eval
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.completion_confidence import ConfidenceCalibration
from semantic_recon_ros.core.config.completion import CompletionConfig
from semantic_recon_ros.core.models import load_checkpoint
from semantic_recon_ros.core.config.files import load_section
from semantic_recon_ros.core.resources import share_file

from ..data.pseudo_labels import DEFAULT_SEGMENTER_DIR, GroundTruthLabels, deeplab_labels
from ..data.training_record import TrainingRecord
from ..paths import repo_path
from .evaluation_plots import depth_error_histogram, mesh_preview, per_class_iou_plot
from .evaluation_protocol import (EvaluationProtocol, held_out_synthetic_scene, parse_seeds, real_evaluation_scene,
                                  synthetic_evaluation_scene)
from .evaluation_report import DatasetResult, metrics_table, write_results
from .held_out import check_synthetic_rooms, record_warning, sequence_note, synthetic_title
from .reconstructions import ABLATION_PREFIX, LABEL_FUSION
from .scene_evaluation import SceneResult, evaluate_scene

DEFAULT_SEGMENTER = Path(repo_path(DEFAULT_SEGMENTER_DIR))
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
    parser.add_argument("--checkpoint", type=Path, required=True, help="S4R inference checkpoint to evaluate")
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
                        help="use every n-th 7-Scenes frame (default %(default)s)")
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
                        help="parameter YAML whose 'completion' section chunks the network run (default: the "
                             "node's config/mapping.yaml)")
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
    """Per-class IoU bars per dataset (synthetic: partial-to-full; real: held-out views vs the segmenter) and the
    depth error histograms (label fusion left out: its geometry is plain fusion's)."""
    for dataset in datasets:
        which = "full" if dataset.synthetic else "views"
        per_class_iou_plot(out / f"per_class_iou_{'synthetic' if dataset.synthetic else 'seven_scenes'}.png",
                           class_names, {name: getattr(scores, which).per_class_iou().numpy()
                                         for name, scores in dataset.totals.items()
                                         if scores.has_semantics and not name.startswith(ABLATION_PREFIX)},
                           f"{dataset.title}: per-class IoU, "
                           f"{'partial-to-full' if dataset.synthetic else 'held-out views vs the segmenter'}")
    depth_error_histogram(out / "depth_error_histogram.png",
                          {d.title: {name: np.concatenate(scores.depth_errors) for name, scores in d.totals.items()
                                     if name != LABEL_FUSION and not name.startswith(ABLATION_PREFIX)}
                           for d in datasets})


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
    try:
        network, info = load_checkpoint(args.checkpoint, args.device, expected_class_names=classes.names,
                                        expected_voxel_size=protocol.voxel_size,
                                        expected_truncation=protocol.truncation)
    except ValueError as err:
        if "trained for" not in str(err):  # not a mismatch with the protocol
            raise
        raise ValueError(f"{err} (evaluation protocol: --voxel-size {protocol.voxel_size} m, truncation "
                         f"{protocol.truncation_voxels:g} voxels, config/classes.yaml)") from None
    if info.model not in ("s4r", "s4r_colorblind"):
        raise ValueError(f"{args.checkpoint}: a {info.model!r} model cannot complete a fused scan (needs s4r)")
    record = None if info.training is None else TrainingRecord.from_dict(info.training)
    check_synthetic_rooms(seeds, record)  # refuses rooms the checkpoint has seen
    seven_scenes_note = (None if args.seven_scenes is None
                         else sequence_note(args.seven_scenes, protocol.held_out_range, record))
    if record_warning(record):
        print(record_warning(record), file=sys.stderr)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    cache = args.cache_dir or out / "cache"
    if args.labels == "segmenter":
        labels = deeplab_labels(args.segmenter, classes.names, args.label_cache or cache / "labels",
                                min_probability=protocol.min_label_probability, num_threads=args.threads)
    else:
        labels = GroundTruthLabels(classes.num_classes)
    completion = load_section(args.params_file or share_file("config/mapping.yaml"), "completion", CompletionConfig)
    progress = not args.no_progress
    calibration = (ConfidenceCalibration.uncalibrated() if info.calibration is None
                   else ConfidenceCalibration.from_dict(info.calibration))

    def evaluate(scene) -> SceneResult:
        return evaluate_scene(scene, network, info.model == "s4r", protocol, classes.names, labels, completion,
                              device=args.device, progress=progress, calibration=calibration, ablation=args.ablation)

    datasets = []
    if seeds:
        results = []
        for seed in tqdm(seeds, desc="synthetic rooms", unit="room", disable=not progress):
            folder = held_out_synthetic_scene(cache, seed, protocol, progress)
            results.append(evaluate(synthetic_evaluation_scene(folder, protocol)))
            if len(results) == 1:
                mesh_preview(out / f"mesh_preview_{results[0].name}.png", results[0].meshes, classes,
                             results[0].preview, f"{results[0].name}: " + " / ".join(results[0].meshes))
            results[-1].meshes.clear()
        datasets.append(DatasetResult(synthetic_title(args.synthetic_seeds, seeds, record), results, synthetic=True))
    if args.seven_scenes is not None:
        scene = real_evaluation_scene(args.seven_scenes, protocol, protocol.seven_scenes_stride)
        result = evaluate(scene)
        mesh_preview(out / f"mesh_preview_{result.name}.png", result.meshes, classes, result.preview,
                     f"{result.name}: " + " / ".join(result.meshes))
        result.meshes.clear()
        datasets.append(DatasetResult(f"{SEVEN_SCENES_TITLE} ({scene.name}, frame stride "
                                      f"{protocol.seven_scenes_stride}; {seven_scenes_note})", [result],
                                      synthetic=False))
    write_plots(out, datasets, classes.names)
    command = "python -m semantic_recon_training evaluate " + " ".join(shlex.quote(a) for a in sys.argv[2:]) \
        if len(sys.argv) > 1 and sys.argv[1] == "evaluate" else "python -m semantic_recon_training evaluate"
    seconds = time.perf_counter() - started
    markdown, _ = write_results(out, datasets, classes.names, protocol, completion, args.checkpoint, command,
                                seconds, calibration)
    for dataset in datasets:
        print(f"\n{dataset.title}\n" + metrics_table({m: s.summary() for m, s in dataset.totals.items()}))
    print(f"\nwrote {markdown} ({seconds / 60:.1f} min)")
    return 0
