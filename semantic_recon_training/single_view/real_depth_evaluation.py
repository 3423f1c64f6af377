"""``single-view-real-depth``: a 'single_view' checkpoint's predictions on real posed RGB-D frames (the validation
frames of ``semi_supervision``: 7-Scenes 400-499), rendered into each image's own view and scored against the real
depth, and its predicted gravity direction against the sequence's.

Per frame the image goes through ``network_view`` (resampled to the trained camera); the predicted frustum is
rendered (:func:`~semantic_recon_ros.core.models.single_view.render_frustum`) at the config's render size. Two
depths are scored on the pixels the real image covers whose real depth lies within the frustum's [near, far]:
``expected`` (the alpha-composited depth the semi-supervision trains) and ``surface`` (the first zero crossing of
the TSDF, what the mesh shows; pixels without one are not scored and lower ``complete``). Depth metrics
(``AbsRel``, ``AbsDiff``, ``delta<1.25``, ...) are Atlas' 2D ones, per frame, then averaged over the frames.
A network with the gravity head adds the mean and median angle (degrees) between its ``gravity_cam`` and the true
one. Frames the checkpoint was trained on (its training record) are refused.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from semantic_recon_ros.core.models import load_checkpoint
from semantic_recon_ros.core.models.single_view import FrustumGrid, render_frustum

from ..data.training_record import TrainingRecord
from ..evaluation.metrics import depth_metrics
from .real_views import RealViewPairs, load_real_frames
from .single_view_config import load_single_view_config
from .single_view_evaluation import report_scores

SCORED = ("AbsRel", "AbsDiff", "RMSE", "delta<1.25", "complete")


def check_unseen(training: dict | None, folder: Path, frames: range, checkpoint: Path) -> None:
    """ValueError when the checkpoint's training record has trained on any of ``frames`` of ``folder``."""
    if not training:
        return
    for scene in TrainingRecord.from_dict(training).sequence_scenes(folder):
        if scene.split != "train":
            continue
        last = scene.last_frame if scene.last_frame is not None else math.inf
        seen = [f for f in frames if f <= last and f % scene.frame_stride == 0]
        if seen:
            raise ValueError(f"{checkpoint} was trained on frames {seen[0]}-{seen[-1]} of {folder.name}")


def real_depth_scores(net: torch.nn.Module, views: RealViewPairs, config, batch: int = 4) -> dict[str, float]:
    """Mean per-frame depth metrics of the ``expected`` and ``surface`` rendered depth (keys ``<depth>/<metric>``)
    and, with the gravity head, ``gravity_error_deg_mean`` / ``_median``."""
    frames, far = views.frames, config.frustum.far
    per_frame: dict[str, list[float]] = {}
    angles = []
    with torch.inference_mode():
        for first in range(0, len(views), batch):
            index = list(range(first, min(first + batch, len(views))))
            prediction = net(frames.images[index].float() / 255)
            rendered = render_frustum(prediction["tsdf"], views.grid, views.render_camera,
                                      torch.eye(4).expand(len(index), 4, 4), config.rendering)
            targets = torch.where(views.own_valid[index], frames.depth[index], torch.zeros_like(frames.depth[index]))
            surface = torch.where(rendered["surface_valid"], rendered["surface_depth"], torch.zeros_like(targets))
            for row in range(len(index)):
                for name, depth in (("expected", rendered["depth"]), ("surface", surface)):
                    metrics = depth_metrics(depth[row].numpy(), targets[row].numpy(), max_depth=far + 1e-6)
                    for key in SCORED:
                        per_frame.setdefault(f"{name}/{key}", []).append(metrics[key])
            if "gravity_cam" in prediction and frames.gravity_cam is not None:
                cosine = (prediction["gravity_cam"] * frames.gravity_cam[index]).sum(dim=1).clamp(-1, 1)
                angles += torch.rad2deg(torch.acos(cosine)).tolist()
    scores = {key: float(np.nanmean(values)) for key, values in per_frame.items()}
    if angles:
        scores |= {"gravity_error_deg_mean": float(np.mean(angles)),
                   "gravity_error_deg_median": float(np.median(angles))}
    return scores


def run_real_depth_evaluation(args: argparse.Namespace) -> int:
    config = load_single_view_config(args.config)
    if config.trainer.num_threads:
        torch.set_num_threads(config.trainer.num_threads)
    semi = config.semi_supervision
    if not semi.enabled:
        raise ValueError(f"{args.config}: no real sequence (semi_supervision.sequence) to evaluate on")
    net, info = load_checkpoint(args.checkpoint, "cpu", expected_model="single_view")
    folder = Path(semi.sequence)
    check_unseen(info.training, folder, semi.val_frames, args.checkpoint)
    grid = FrustumGrid(info.camera, info.config.frustum)
    render_camera = info.camera.scaled(semi.render_width, semi.render_height)
    frames = load_real_frames(folder, semi.val_frames, info.camera, render_camera, grid.config.near, grid.config.far)
    views = RealViewPairs(frames, grid, render_camera, semi.neighbour_offset)
    scores = real_depth_scores(net, views, config)
    result = {"checkpoint": str(args.checkpoint), "sequence": folder.name,
              "frames": f"{semi.val_first}-{semi.val_last}", "render_size": [semi.render_width, semi.render_height],
              **{key: round(value, 4) for key, value in scores.items()}}
    report_scores(f"{len(views)} frames ({result['frames']}) of {folder.name}", scores, result, args.out)
    return 0
