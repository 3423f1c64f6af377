"""``single-view-evaluate``: the frustum scores (:mod:`.frustum_scores`) of a 'single_view' checkpoint on the
validation rooms of a run config (their cached pairs, ``single-view-extract``), printed as a table and a JSON line.

The checkpoint must predict the config's frustum grid for the config's camera (the cached targets are in that
grid), and must not have been trained on any of those rooms (its training record).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from semantic_recon_ros.core.models import load_checkpoint

from .frustum_scores import FrustumScores
from .single_view_config import load_single_view_config
from .single_view_data import load_pairs, training_camera, view_depths

BATCH = 4


def run_single_view_evaluation(args: argparse.Namespace) -> int:
    config = load_single_view_config(args.config)
    if config.trainer.num_threads:
        torch.set_num_threads(config.trainer.num_threads)
    net, info = load_checkpoint(args.checkpoint, "cpu", expected_model="single_view")
    scenes = config.data.val_scenes
    if not scenes:
        raise ValueError(f"{args.config}: no validation rooms (data.val_scenes) to evaluate on")
    trained_on = {s["scene"] for s in (info.training or {}).get("scenes", []) if s.get("split") == "train"}
    if trained_on & set(scenes):
        raise ValueError(f"{args.checkpoint} was trained on {sorted(trained_on & set(scenes))}")
    if info.camera != training_camera(config) or info.config.frustum != config.frustum:
        raise ValueError(f"{args.checkpoint} predicts the frustum grid {info.config.frustum} of {info.camera}; the "
                         f"config's rooms are {config.frustum} of {training_camera(config)}")
    pairs = load_pairs(config, scenes)
    depth = view_depths(config, scenes)["depth"] if net.config.depth_input else None
    scores = FrustumScores(len(info.class_names), config.loss_shaping)
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, len(pairs["images"]), BATCH):
            batch = slice(first, first + BATCH)
            prediction = net(pairs["images"][batch].float() / 255, None if depth is None else depth[batch])
            scores.update(prediction["tsdf"], prediction["class_logits"], pairs["tsdf"][batch].float(),
                          pairs["labels"][batch].long())
    result = {"checkpoint": str(args.checkpoint), "scenes": scenes, "frames": len(pairs["images"]),
              **{name: round(value, 4) for name, value in scores.result().items()},
              "seconds_per_image": round((time.perf_counter() - start) / len(pairs["images"]), 3),
              "frustum": dataclasses.asdict(config.frustum)}
    report_scores(f"{len(pairs['images'])} frames of {', '.join(scenes)}", scores.result(), result, args.out)
    return 0


def report_scores(title: str, scores: dict[str, float], result: dict, out: Path | None) -> None:
    """Print ``title``, a table of ``scores`` and ``result`` as a JSON line; write ``result`` to ``out`` (JSON) if
    given."""
    print(f"{title}\n\n| score | value |\n|---|---|")
    for name, value in scores.items():
        print(f"| {name} | {value:.3f} |")
    print(json.dumps(result))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
