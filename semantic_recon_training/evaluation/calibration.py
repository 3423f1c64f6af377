"""Calibrate the confidence of a checkpoint's predicted surface on the validation rooms, and check it elsewhere.

The model is the core's (:mod:`semantic_recon_ros.core.completion_confidence`): a logistic function of the
Chebyshev distance to the nearest observed surface voxel (one logit per distance 1..D and one for farther) and
of the network's largest class probability. Every validation room is scanned and fused as in the evaluation
(:mod:`.evaluation_protocol`: the seeded half of the frames, with the segmenter's pseudo-labels) and completed by
the network; each voxel the network fills with surface (unobserved, ``|pred_tsdf| < 1 voxel``, where the ground
truth is known) is one sample, right when the true surface passes within the F-score distance (5 cm) of its
centre. The logistic regression is fitted by maximum likelihood (L-BFGS, a small L2 penalty) with distance logits
that never rise with the distance (monotone: farther from the observations, never more trust; the validation
rooms' precision dips at 5 voxels, the false shell behind walls, and recovers a little farther out, which a
monotone model pools rather than learns), so its probabilities match the measured precision on average.

``--write`` stores the fit in the checkpoint (:func:`~semantic_recon_ros.core.models.save_calibration`).
``--check`` fits nothing: it reports how the checkpoint's stored confidences match the precision measured on
other rooms (the test rooms 900-904: reliability, never a choice). Fitting on the test rooms is refused.

Example: python -m semantic_recon_training calibrate --checkpoint models/default.pt --synthetic-seeds 905-909 \\
             --out output/calibration --write
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.completion_confidence import ConfidenceCalibration, observed_surface, surface_distance
from semantic_recon_ros.core.config.completion import CompletionConfig
from semantic_recon_ros.core.config.files import load_section
from semantic_recon_ros.core.models import load_checkpoint, save_calibration
from semantic_recon_ros.core.resources import share_file

from ..data.pseudo_labels import deeplab_labels
from .evaluate import DEFAULT_SEGMENTER
from .evaluation_protocol import (EvaluationProtocol, fuse_frames, held_out_synthetic_scene, parse_seeds,
                                  synthetic_evaluation_scene)
from .reconstructions import sample_layers
from .scene_evaluation import ground_truth_box, synthetic_voxel_target

TEST_SEEDS = range(900, 905)  # reported on, never fitted on
MAX_DISTANCE = 8  # distances 1..8 get a logit each (the default chunk_margin: the network sees that far)
L2_PENALTY = 1e-3  # per sample, on every weight
RELIABILITY_BINS = 10


@dataclass
class SurfaceSamples:
    """Voxels the network filled with surface: (S,) int64 distance, (S,) float class probability, (S,) bool right,
    (S,) float stored confidence."""

    distance: torch.Tensor
    class_probability: torch.Tensor
    right: torch.Tensor
    stored: torch.Tensor

    @classmethod
    def concatenate(cls, parts: list["SurfaceSamples"]) -> "SurfaceSamples":
        return cls(*(torch.cat([getattr(p, name) for p in parts]) for name in
                     ("distance", "class_probability", "right", "stored")))


def room_samples(seed: int, network, info, calibration: ConfidenceCalibration, protocol: EvaluationProtocol,
                 completion: CompletionConfig, labels, cache: Path, class_names, progress: bool) -> SurfaceSamples:
    """Scan, fuse and complete validation room ``seed``; its :class:`SurfaceSamples`."""
    scene = synthetic_evaluation_scene(held_out_synthetic_scene(cache, seed, protocol, progress), protocol)
    mapper = fuse_frames(scene, [int(p) for p in np.flatnonzero(scene.is_input)], protocol, class_names, "cpu",
                         labels, progress, "fusing input")
    mapper.attach_network(network, replace(completion, min_confidence=0.0), use_color=info.model == "s4r",
                          calibration=calibration)
    mapper.complete(time_budget=float("inf"))
    box = ground_truth_box(scene.ground_truth, protocol.voxel_size, protocol.truncation)
    layers = sample_layers(mapper.volume, box, ("tsdf", "weight", "pred_tsdf", "pred_weight", "pred_semantic",
                                                "pred_confidence"))
    observed = layers["weight"] > 0
    target = synthetic_voxel_target(scene.ground_truth, box, layers["tsdf"], observed, protocol)
    surface = observed_surface(layers["tsdf"], observed, protocol.truncation_voxels)[None, None]
    distance = surface_distance(surface, min(MAX_DISTANCE, completion.chunk_margin))[0, 0]
    filled = ((layers["pred_weight"] > 0) & ~observed & target.known
              & (layers["pred_tsdf"].abs() < 1.0 / protocol.truncation_voxels))
    right = target.tsdf.abs() * protocol.truncation < protocol.fscore_threshold
    return SurfaceSamples(distance[filled], layers["pred_semantic"].amax(dim=-1)[filled], right[filled],
                          layers["pred_confidence"][filled])


def fit_calibration(samples: SurfaceSamples, fitted_on: str) -> ConfidenceCalibration:
    """Maximum-likelihood logistic regression of the module docstring, its distance logits constrained not to rise
    with the distance (``logit[d] = first - sum of softplus steps``): trust only falls away from what was observed."""
    index = samples.distance.clamp(1, MAX_DISTANCE + 1) - 1
    probability, right = samples.class_probability.double(), samples.right.double()
    first = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    steps = torch.full((MAX_DISTANCE,), -3.0, dtype=torch.float64, requires_grad=True)  # softplus(-3) = 0.05
    weight = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([first, steps, weight], max_iter=1000, tolerance_grad=1e-10,
                                  line_search_fn="strong_wolfe")

    def distance_logits() -> torch.Tensor:
        return torch.cat((first, first - torch.cumsum(torch.nn.functional.softplus(steps), 0)))

    def closure():
        optimizer.zero_grad()
        logits = distance_logits()[index] + weight * probability
        penalty = first.square().sum() + steps.square().sum() + weight.square().sum()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, right) + L2_PENALTY * penalty / len(right)
        loss.backward()
        return loss

    optimizer.step(closure)
    return ConfidenceCalibration(tuple(round(float(v), 4) for v in distance_logits().detach()),
                                 round(float(weight.detach()), 4), fitted_on)


def reliability(confidence: torch.Tensor, right: torch.Tensor) -> list[dict]:
    """Per confidence bin: samples, mean confidence, measured precision."""
    bins = (confidence * RELIABILITY_BINS).long().clamp(max=RELIABILITY_BINS - 1)
    rows = []
    for b in range(RELIABILITY_BINS):
        inside = bins == b
        if inside.any():
            rows.append({"bin": f"[{b / RELIABILITY_BINS:.1f}, {(b + 1) / RELIABILITY_BINS:.1f})",
                         "samples": int(inside.sum()), "mean_confidence": round(float(confidence[inside].mean()), 3),
                         "precision": round(float(right[inside].float().mean()), 3)})
    return rows


def report(samples: SurfaceSamples, calibration: ConfidenceCalibration) -> dict:
    """Precision per distance, the reliability of ``calibration``'s confidences and their expected calibration
    error (sample-weighted mean |confidence - precision| over the bins)."""
    confidence = calibration.confidence(samples.distance, samples.class_probability)
    by_distance = []
    for d in range(1, MAX_DISTANCE + 2):
        inside = samples.distance.clamp(1, MAX_DISTANCE + 1) == d
        if inside.any():
            by_distance.append({"distance": d if d <= MAX_DISTANCE else f">{MAX_DISTANCE}",
                                "samples": int(inside.sum()),
                                "precision": round(float(samples.right[inside].float().mean()), 3),
                                "mean_confidence": round(float(confidence[inside].mean()), 3)})
    bins = reliability(confidence, samples.right)
    error = sum(r["samples"] * abs(r["mean_confidence"] - r["precision"]) for r in bins) / len(confidence)
    return {"samples": len(confidence), "precision": round(float(samples.right.float().mean()), 4),
            "calibration": calibration.to_dict(), "by_distance": by_distance, "reliability": bins,
            "expected_calibration_error": round(error, 4)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="S4R inference checkpoint")
    parser.add_argument("--synthetic-seeds", default="905-909",
                        help="validation rooms to fit on (default %(default)s); with --check, rooms to check on")
    parser.add_argument("--out", type=Path, required=True, help="output folder (calibration.json; cache/)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="generated rooms and pseudo-labels "
                        "(default OUT/cache; an evaluation's cache can be shared)")
    parser.add_argument("--write", action="store_true", help="store the fitted calibration in the checkpoint")
    parser.add_argument("--check", action="store_true",
                        help="fit nothing: report the reliability of the checkpoint's stored calibration")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    seeds = parse_seeds(args.synthetic_seeds)
    if args.check == args.write:
        raise ValueError("give exactly one of --write (fit and store) and --check (report the stored calibration)")
    if args.write and any(seed in TEST_SEEDS for seed in seeds):
        raise ValueError(f"seeds {[s for s in seeds if s in TEST_SEEDS]} are test rooms: calibrate on the "
                         "validation rooms 905-909 and only --check on the test rooms")
    torch.set_num_threads(args.threads)
    protocol = EvaluationProtocol()
    classes = load_class_set()
    network, info = load_checkpoint(args.checkpoint, "cpu", expected_class_names=classes.names,
                                    expected_voxel_size=protocol.voxel_size, expected_truncation=protocol.truncation)
    stored = (ConfidenceCalibration.uncalibrated() if info.calibration is None
              else ConfidenceCalibration.from_dict(info.calibration))
    cache = args.cache_dir or args.out / "cache"
    labels = deeplab_labels(DEFAULT_SEGMENTER, classes.names, cache / "labels",
                            min_probability=protocol.min_label_probability, num_threads=args.threads)
    completion = load_section(share_file("config/mapping.yaml"), "completion", CompletionConfig)
    progress = not args.no_progress
    samples = SurfaceSamples.concatenate([
        room_samples(seed, network, info, stored, protocol, completion, labels, cache, classes.names, progress)
        for seed in tqdm(seeds, desc="rooms", unit="room", disable=not progress)])
    if not torch.allclose(samples.stored, stored.confidence(samples.distance, samples.class_probability), atol=1e-5):
        raise RuntimeError("the completion engine's confidences differ from those recomputed on the dense box")
    calibration = stored if args.check else fit_calibration(
        samples, f"{args.checkpoint.name} on synthetic rooms {args.synthetic_seeds} (calibrate, "
                 f"{len(samples.right)} predicted surface voxels)")
    result = {"checkpoint": str(args.checkpoint), "seeds": seeds, "mode": "check" if args.check else "fit",
              **report(samples, calibration)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "calibration.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("samples", "precision", "expected_calibration_error", "calibration")},
                     indent=1))
    for row in result["by_distance"]:
        print(f"distance {row['distance']}: {row['samples']} voxels, precision {row['precision']}, "
              f"mean confidence {row['mean_confidence']}")
    if args.write:
        save_calibration(args.checkpoint, calibration.to_dict())
        print(f"stored the calibration in {args.checkpoint}")
    return 0
