"""An image of one pinhole camera seen through another with the same optical centre and orientation.

The single-view network learned one camera's field of view. An image of another camera (another focal length or
principal point; e.g. 7-Scenes' fx = 585 at 640x480 against the synthetic rooms' 525) is resampled to the trained
camera: every target pixel ``(u, v)`` looks along the ray ``((u - cx) / fx, (v - cy) / fy, 1)`` and takes the source
image's bilinear value where that ray meets it. Where the target sees past the source image's border (a wider
field of view), the border pixels are repeated and the pixel is marked not covered.

:func:`network_view` prepares any camera's color image for the network: resized (antialiased) to the trained image
size, and resampled only when the camera is not the trained one within the tolerances below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ...camera import PinholeCamera


def source_pixels(source: PinholeCamera, target: PinholeCamera, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H_t, W_t, 2) source image coordinates ``(u, v)`` seen by every ``target`` pixel."""
    v, u = torch.meshgrid(torch.arange(target.height, device=device, dtype=torch.float32),
                          torch.arange(target.width, device=device, dtype=torch.float32), indexing="ij")
    return torch.stack(((u - target.cx) / target.fx * source.fx + source.cx,
                        (v - target.cy) / target.fy * source.fy + source.cy), dim=-1)


def resample_view(image: torch.Tensor, source: PinholeCamera, target: PinholeCamera) -> tuple[torch.Tensor,
                                                                                                torch.Tensor]:
    """``image`` (C, H_s, W_s) of camera ``source`` (any dtype; the image size must be ``source``'s) seen by
    ``target``: returns (C, H_t, W_t) float32 (values in the input's units, bilinear) and (H_t, W_t) bool, True where
    the target pixel's ray falls inside the source image."""
    if image.ndim != 3 or tuple(image.shape[1:]) != source.shape:
        raise ValueError(f"expected a (C, {source.height}, {source.width}) image of the source camera, got "
                         f"{tuple(image.shape)}")
    pixels = source_pixels(source, target, image.device)
    grid = torch.stack(((2 * pixels[..., 0] + 1) / source.width - 1,
                        (2 * pixels[..., 1] + 1) / source.height - 1), dim=-1)
    resampled = F.grid_sample(image[None].float(), grid[None], mode="bilinear", padding_mode="border",
                              align_corners=False)[0]
    covered = ((pixels[..., 0] >= -0.5) & (pixels[..., 0] <= source.width - 0.5)
               & (pixels[..., 1] >= -0.5) & (pixels[..., 1] <= source.height - 0.5))
    return resampled, covered


FOCAL_TOLERANCE = 0.05  # relative: within it the image is only resized
PRINCIPAL_POINT_TOLERANCE = 0.03  # of the image size
MIN_COVERAGE = 0.7  # share of the trained view the image must cover


@dataclass(frozen=True)
class NetworkView:
    """A color image as the single-view network sees it."""

    image: torch.Tensor  # (3, H, W) float32 RGB in [0, 1], the trained camera's image size
    covered: torch.Tensor  # (H, W) bool: the pixel's ray falls inside the given image
    resampled: bool  # the camera differed from the trained one beyond the tolerances
    depth: torch.Tensor | None = None  # (H, W) float32 z-depth in metres (0 = invalid or not covered), when given

    @property
    def coverage(self) -> float:
        """Share of the network input's pixels the given image covers."""
        return float(self.covered.float().mean())


def nearest_source_values(image: np.ndarray, source: PinholeCamera, target: PinholeCamera,
                          invalid: float) -> np.ndarray:
    """``image`` (H_s, W_s) of camera ``source`` seen by the ``target`` camera (same centre and orientation), nearest
    pixel, ``invalid`` where the target's ray leaves the source image: (H_t, W_t)."""
    pixels = source_pixels(source, target).round().long().numpy()
    inside = ((pixels[..., 0] >= 0) & (pixels[..., 0] < source.width) & (pixels[..., 1] >= 0)
              & (pixels[..., 1] < source.height))
    u = pixels[..., 0].clip(0, source.width - 1)
    v = pixels[..., 1].clip(0, source.height - 1)
    return np.where(inside, image[v, u], invalid)


def nearest_depth(depth: np.ndarray, source: PinholeCamera, target: PinholeCamera) -> torch.Tensor:
    """``depth`` (H_s, W_s) z-depth in metres of camera ``source`` (its image size) seen by ``target`` (same optical
    centre and orientation): (H_t, W_t) float32, the nearest source pixel's depth (never a blend of a foreground and a
    background depth), 0 where the target's ray leaves the source image or the depth is invalid (<= 0, non-finite).
    Depth is z along the shared optical axis, so it needs no conversion."""
    if depth.ndim != 2 or depth.shape != source.shape:
        raise ValueError(f"expected a ({source.height}, {source.width}) depth image, got {depth.shape}")
    valid = np.nan_to_num(np.asarray(depth, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0).clip(min=0.0)
    return torch.as_tensor(nearest_source_values(valid, source, target, 0.0), dtype=torch.float32)


def network_view(color: np.ndarray, camera: PinholeCamera, trained: PinholeCamera,
                 depth: np.ndarray | None = None) -> NetworkView:
    """``color`` (H, W, 3) uint8 RGB of ``camera`` (its image size) as seen by the ``trained`` camera, and with it
    ``depth`` (H, W) float z-depth in metres of the same pixels (registered to the color image), if given.

    The image is first resized to ``trained``'s image size (antialiased). When the resized camera's focal lengths
    agree with ``trained``'s within ``FOCAL_TOLERANCE`` and the principal points within ``PRINCIPAL_POINT_TOLERANCE``
    of the image size, that is the input (what the network was trained on is never resampled); otherwise it is
    resampled through :func:`resample_view`. The depth follows the same way, by the nearest pixel
    (:func:`nearest_depth`). ValueError when the image (or the depth) is not ``camera``'s size, or covers less than
    ``MIN_COVERAGE`` of the trained view (the network would mostly see repeated border pixels).
    """
    if color.ndim != 3 or color.shape[2] != 3 or color.shape[:2] != camera.shape:
        raise ValueError(f"expected a ({camera.height}, {camera.width}, 3) color image, got {color.shape}")
    scaled = camera.scaled(trained.width, trained.height)
    resized = np.array(Image.fromarray(color).resize((trained.width, trained.height), Image.Resampling.BILINEAR))
    image = torch.as_tensor(resized).permute(2, 0, 1).float() / 255
    focal = max(abs(scaled.fx / trained.fx - 1), abs(scaled.fy / trained.fy - 1))
    offset = max(abs(scaled.cx - trained.cx) / trained.width, abs(scaled.cy - trained.cy) / trained.height)
    if focal <= FOCAL_TOLERANCE and offset <= PRINCIPAL_POINT_TOLERANCE:
        seen = None if depth is None else nearest_depth(depth, camera, scaled)
        return NetworkView(image, torch.ones(trained.shape, dtype=torch.bool), resampled=False, depth=seen)
    image, covered = resample_view(image, scaled, trained)
    seen = None if depth is None else nearest_depth(depth, camera, trained)
    view = NetworkView(image.clamp(0, 1), covered, resampled=True, depth=seen)
    if view.coverage < MIN_COVERAGE:
        raise ValueError(
            f"the image (fx {scaled.fx:.1f}, fy {scaled.fy:.1f}, cx {scaled.cx:.1f}, cy {scaled.cy:.1f} at "
            f"{trained.width}x{trained.height}) covers {view.coverage:.0%} of the view the network was trained for "
            f"(fx {trained.fx:.1f}, fy {trained.fy:.1f}, cx {trained.cx:.1f}, cy {trained.cy:.1f}); at least "
            f"{MIN_COVERAGE:.0%} is needed")
    return view
