"""How much a pixel's 2D class probabilities should count in label fusion, from its depth.

A segmenter's labels are least reliable where the depth that places them in 3D is: at depth discontinuities
(object borders, where a label and a depth pixel a few pixels apart belong to different surfaces, and where depth
sensors smear foreground into background) and far from the camera (depth noise of structured-light, ToF and
stereo sensors grows about with the square of the distance). The volume's label fusion adds each pixel's
probability vector to its voxels' votes (then caps their sum at ``max_weight``), so multiplying the vector by a
weight in [0, 1] scales that pixel's vote.

Per pixel (u, v) with valid depth z (invalid depth gets weight 0):

* relative depth jump ``d = max |z(q) - z| / z`` over the valid pixels q within ``edge_radius`` pixels
  (a (2R+1) x (2R+1) window); ``w_edge = min(1, edge_threshold / d)``: 1 on smooth surfaces, falling as 1/d
  beyond the threshold (a 50 % jump with the default 5 % threshold: 0.1);
* distance from the camera centre ``r = z * sqrt(1 + ((u - cx) / fx)^2 + ((v - cy) / fy)^2)``;
  ``w_dist = min(1, (full_weight_distance / r) ^ distance_power)``: 1 up to 3 m, 0.56 at 4 m, 0.36 at 5 m;
* ``w = w_edge * w_dist`` (times the segmenter's own per-pixel confidence when given).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..camera import PinholeCamera
from ..config.fields import check_ranges, parameter


@dataclass(frozen=True)
class LabelConfidenceConfig:
    """Weights of 2D labels in label fusion (see the module doc for the formula)."""

    edge_threshold: float = parameter(
        0.05, "Relative depth jump (|z neighbour - z| / z) within edge_radius pixels above which a pixel's labels "
              "count less (weight threshold / jump).", 0.0001, 10.0)
    edge_radius: int = parameter(2, "Pixels around a pixel searched for depth jumps; 0 disables edge weighting.",
                                 0, 32)
    full_weight_distance: float = parameter(
        3.0, "Distance from the camera (m) up to which labels count fully; beyond, their weight falls as "
             "(full_weight_distance / distance) ^ distance_power.", 0.01, 1000.0)
    distance_power: float = parameter(2.0, "Exponent of the weight's fall with distance; 0 disables it.", 0.0, 8.0)

    def __post_init__(self) -> None:
        check_ranges(self)


def label_confidence(depth: np.ndarray | torch.Tensor, camera: PinholeCamera,
                     config: LabelConfidenceConfig = LabelConfidenceConfig()) -> torch.Tensor:
    """(H, W) float32 weight in [0, 1] of each pixel's labels (0 where depth is invalid), on depth's device."""
    z = torch.as_tensor(depth).to(torch.float32)
    if tuple(z.shape) != camera.shape:
        raise ValueError(f"depth is {tuple(z.shape)}, the camera {camera.shape}")
    valid = torch.isfinite(z) & (z > 0)
    z = torch.where(valid, z, torch.ones_like(z))
    weight = torch.ones_like(z)
    radius = config.edge_radius
    if radius > 0:
        window = dict(kernel_size=2 * radius + 1, stride=1, padding=radius)
        outside = torch.full_like(z, -torch.inf)
        highest = F.max_pool2d(torch.where(valid, z, outside)[None, None], **window)[0, 0]
        lowest = -F.max_pool2d(torch.where(valid, -z, outside)[None, None], **window)[0, 0]
        jump = torch.maximum(highest - z, z - lowest) / z
        weight = (config.edge_threshold / jump.clamp(min=config.edge_threshold)).clamp(max=1.0)
    if config.distance_power > 0:
        u = (torch.arange(camera.width, device=z.device, dtype=torch.float32) - camera.cx) / camera.fx
        v = (torch.arange(camera.height, device=z.device, dtype=torch.float32) - camera.cy) / camera.fy
        distance = z * torch.sqrt(1.0 + u[None, :] ** 2 + v[:, None] ** 2)
        weight = weight * (config.full_weight_distance / distance).pow(config.distance_power).clamp(max=1.0)
    return torch.where(valid, weight, torch.zeros_like(weight))


def confidence_weighted(probs: np.ndarray | torch.Tensor, depth: np.ndarray | torch.Tensor, camera: PinholeCamera,
                        config: LabelConfidenceConfig = LabelConfidenceConfig(),
                        confidence: np.ndarray | torch.Tensor | None = None) -> np.ndarray | torch.Tensor:
    """(H, W, K) class probabilities scaled per pixel by :func:`label_confidence` (and by ``confidence``, e.g. the
    segmenter's :attr:`~.model_segmenter.Segmentation.confidence`, when given): the votes to fuse. Returns the type
    (numpy or torch) of ``probs``, float32."""
    scores = torch.as_tensor(probs).to(torch.float32)
    weight = label_confidence(torch.as_tensor(depth).to(scores.device), camera, config)
    if tuple(scores.shape[:2]) != tuple(weight.shape):
        raise ValueError(f"probabilities are {tuple(scores.shape[:2])}, depth {tuple(weight.shape)}")
    if confidence is not None:
        weight = weight * torch.as_tensor(confidence).to(scores.device, torch.float32)
    weighted = scores * weight[..., None]
    return weighted.numpy() if isinstance(probs, np.ndarray) else weighted
