"""SSR's losses of a predicted frustum rendered into real posed views (no 3D labels), and of the predicted gravity
direction and camera height.

* :func:`soft_silhouette_iou_loss`: SSR's ``1 - |P * I| / |P + I - P * I|`` of a soft predicted silhouette P and a
  target silhouette I (sums over an image's counted pixels), averaged over the images.
* :func:`layer_silhouettes`: a room view's plain silhouette (pixels whose ray ends in the frustum) is almost every
  pixel, so it tells nearly nothing; the silhouette *of each depth layer* does: for a z-depth z_b, the target marks
  the pixels whose real surface is nearer than z_b, the prediction is the opacity accumulated along the ray up to
  z_b (:func:`~semantic_recon_ros.core.models.single_view.render_frustum`).
* :func:`depth_l1`: mean |rendered - real depth| (metres) over the counted pixels, the main signal.
* :func:`gravity_losses`: ``1 - cos`` of the predicted and true gravity directions, and the L1 of the camera height.
"""

from __future__ import annotations

from typing import Sequence

import torch


def soft_silhouette_iou_loss(predicted: torch.Tensor, target: torch.Tensor,
                             counted: torch.Tensor | None = None) -> torch.Tensor:
    """SSR's soft silhouette IoU loss, averaged over B images.

    Args:
        predicted: (B, H, W) soft silhouette in [0, 1]; target: (B, H, W) silhouette (0 / 1, or soft).
        counted: (B, H, W) bool, the pixels that count (default all).
    Returns:
        scalar ``mean_b (1 - sum P I / sum (P + I - P I))`` over the counted pixels of image b; an image whose
        counted union is empty (both silhouettes empty) has loss 0.
    """
    if predicted.shape != target.shape or predicted.dim() != 3:
        raise ValueError(f"predicted {tuple(predicted.shape)} and target {tuple(target.shape)} must be (B, H, W)")
    target = target.to(predicted.dtype)
    if counted is not None:
        predicted, target = predicted * counted, target * counted
    intersection = (predicted * target).sum(dim=(1, 2))
    union = (predicted + target - predicted * target).sum(dim=(1, 2))
    empty = union <= 1e-9
    loss = 1 - intersection / torch.where(empty, torch.ones_like(union), union)
    return torch.where(empty, torch.zeros_like(loss), loss).mean()


def layer_silhouettes(accumulated: torch.Tensor, sample_depths: torch.Tensor, depth: torch.Tensor,
                      layers: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted and target silhouettes of the depth layers.

    Args:
        accumulated: (B, H, W, N) opacity accumulated through each ray sample; sample_depths: (N,) their z-depths.
        depth: (B, H, W) real z-depth (metres, 0 = none).
        layers: z-depths z_1 < ... (metres).
    Returns:
        predicted (B * Z, H, W): the opacity accumulated over the samples nearer than z_b (0 when none is); target
        (B * Z, H, W) float: ``0 < depth < z_b``; layer-major per image (image b's layers are rows b Z ... b Z + Z-1).
    """
    predicted, target = [], []
    for z in layers:
        count = int((sample_depths < z).sum())
        predicted.append(accumulated[..., count - 1] if count else torch.zeros_like(depth))
        target.append(((depth > 0) & (depth < z)).to(accumulated.dtype))
    return torch.stack(predicted, dim=1).flatten(0, 1), torch.stack(target, dim=1).flatten(0, 1)


def depth_l1(predicted: torch.Tensor, target: torch.Tensor, counted: torch.Tensor) -> torch.Tensor:
    """Mean |predicted - target| over the ``counted`` (B, H, W) pixels (0 when none counts)."""
    counted = counted.to(predicted.dtype)
    return ((predicted - target).abs() * counted).sum() / counted.sum().clamp_min(1.0)


def gravity_losses(prediction: dict[str, torch.Tensor], gravity_cam: torch.Tensor,
                   camera_height: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """``gravity``: mean ``1 - cos`` between the predicted ``gravity_cam`` (B, 3) (unit) and the true (B, 3);
    ``height`` (only when ``camera_height`` (B,) is given): mean |predicted - true| camera height, metres."""
    cosine = (prediction["gravity_cam"] * torch.nn.functional.normalize(gravity_cam, dim=1)).sum(dim=1)
    losses = {"gravity": (1 - cosine).mean()}
    if camera_height is not None:
        losses["height"] = (prediction["camera_height"] - camera_height).abs().mean()
    return losses
