"""The per-image features that RGB-only mapping back-projects into the map (Atlas), for every feature source.

An Atlas checkpoint names its ``feature_source`` (:class:`~.models.model_config.AtlasNetConfig`); the extractor
computes exactly those features for one camera image, at a quarter of its resolution, so that the live map, the
offline ``map --rgb-only`` command and the trainer's caches all see the same inputs:

* ``color``: the image's RGB in [0, 1] (and, as for every source with ``view_directions``, each pixel's unit
  viewing direction toward the camera in the world frame);
* ``deeplab``: RGB + the 2D segmenter's class probabilities (frozen, pretrained on ADE20K);
* ``learned``: RGB + the checkpoint's own 2D backbone (trained end to end with the 3D network).

Each pixel carries ``cat(f, f * f)`` (``volume_channels``): averaged over views by
:meth:`~.map.tsdf_volume.SemanticTSDFVolume.integrate_features`, a voxel keeps the mean and the spread of the
features of the views that see it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from .camera import PinholeCamera
from .models.atlas_backbone2d import FEATURE_STRIDE
from .models.atlas_backprojection import view_directions
from .models.atlas_net import AtlasNet, image_moments
from .models.model_config import AtlasNetConfig
from .segmentation.segmenter import Segmenter


def feature_map_camera(camera: PinholeCamera) -> PinholeCamera:
    """The camera of the feature maps of ``camera``'s images (cropped to multiples of 4, then pooled by 4):
    (W // 4) x (H // 4) pixels."""
    width, height = camera.width // FEATURE_STRIDE, camera.height // FEATURE_STRIDE
    if width < 2 or height < 2:
        raise ValueError(f"images of {camera.width}x{camera.height} are too small for RGB-only mapping "
                         f"(at least {2 * FEATURE_STRIDE}x{2 * FEATURE_STRIDE})")
    cropped = PinholeCamera(camera.fx, camera.fy, camera.cx, camera.cy, width * FEATURE_STRIDE,
                            height * FEATURE_STRIDE)
    return cropped.scaled(width, height)


def image_tensor(color: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, H', W') float in [0, 1], cropped to multiples of 4 (H' = H // 4 * 4)."""
    if color.ndim != 3 or color.shape[2] != 3 or color.dtype != np.uint8:
        raise ValueError(f"color must be (H, W, 3) uint8, got {color.shape} {color.dtype}")
    height, width = (color.shape[0] // FEATURE_STRIDE) * FEATURE_STRIDE, (color.shape[1] // FEATURE_STRIDE) * FEATURE_STRIDE
    image = torch.from_numpy(np.ascontiguousarray(color[:height, :width])).to(device)
    return image.permute(2, 0, 1)[None].float() / 255.0


class ImageFeatureExtractor:
    """Computes the back-projected features of an Atlas network's feature source for one image.

    Args:
        network: the Atlas network (its config names the source; its backbone computes 'learned' features), or
            for the frozen sources ('color', 'deeplab') just its config.
        segmenter: the 2D segmenter over the network's classes, required for 'deeplab'.
        device: where features are computed when ``network`` is a config (else the network's device).

    Attributes:
        channels: per-pixel channels of :meth:`__call__` (the volume's ``feature_dim``).
    """

    def __init__(self, network: AtlasNet | AtlasNetConfig, segmenter: Segmenter | None = None,
                 device: torch.device | str = "cpu") -> None:
        config = network if isinstance(network, AtlasNetConfig) else network.config
        if isinstance(network, AtlasNetConfig) and config.feature_source == "learned":
            raise ValueError("the 'learned' feature source needs the Atlas network itself (its 2D backbone)")
        if config.feature_source == "deeplab":
            if segmenter is None:
                raise ValueError("the Atlas network's feature source is 'deeplab': it needs the 2D segmenter")
            if len(segmenter.class_names) != config.num_classes:
                raise ValueError(f"the segmenter has {len(segmenter.class_names)} classes, the Atlas network "
                                 f"{config.num_classes}")
        self.config, self.segmenter = config, segmenter
        self.backbone = None if isinstance(network, AtlasNetConfig) else network.backbone
        self.device = torch.device(device) if isinstance(network, AtlasNetConfig) else next(network.parameters()).device
        self.source = config.feature_source
        self.channels = config.volume_channels

    @torch.inference_mode()
    def __call__(self, color: np.ndarray, camera: PinholeCamera, T_world_cam: np.ndarray,
                 class_probs: np.ndarray | None = None) -> torch.Tensor:
        """(H, W, 3) uint8 RGB seen by ``camera`` from ``T_world_cam`` (4, 4) -> (H // 4, W // 4, channels) float32
        features on the network's device (see the module docstring); the camera of the result is
        :func:`feature_map_camera`. ``class_probs``: the segmenter's (H, W, K) output for this image when the caller
        has it already ('deeplab'; computed otherwise)."""
        if camera.shape != color.shape[:2]:
            raise ValueError(f"camera is {camera.width}x{camera.height}, the image {color.shape[1]}x{color.shape[0]}")
        image = image_tensor(color, self.device)
        directions = (view_directions(feature_map_camera(camera), T_world_cam, self.device)
                      if self.config.view_directions else None)
        extra = None
        if self.source == "deeplab":
            if class_probs is None:
                class_probs = self.segmenter.predict(color)
            if class_probs.shape != (*color.shape[:2], self.config.num_classes):
                raise ValueError(f"class_probs must be {(*color.shape[:2], self.config.num_classes)}, "
                                 f"got {class_probs.shape}")
            probs = torch.from_numpy(np.ascontiguousarray(class_probs)).to(self.device)
            probs = probs[:image.shape[2], :image.shape[3]].permute(2, 0, 1)[None].float()
            extra = F.avg_pool2d(probs, FEATURE_STRIDE)
        return image_moments(self.config, image, extra, self.backbone, directions)[0].permute(1, 2, 0).contiguous()
