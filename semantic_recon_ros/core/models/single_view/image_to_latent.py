"""SemSVR's second network: a color image -> the latent grid of its frustum, decoded by the frozen block decoder.

A 2D encoder (four stride-2 stages) turns the image (B, 3 + E, H, W) (RGB in [0, 1], then E extra channels
such as predicted surface normals) into features pooled to the latent grid's image resolution (y, x) =
(cells_y, cells_x) / block_size; a 1x1 convolution gives ``L * d`` channels per position, reshaped into the depth
axis as SemSVR does: (B, L, d, y, x), ``d = cells_depth / block_size``. A few 3D residual blocks refine that
latent grid, and the autoencoder's decoder (frozen: its weights never change here) decodes it into the TSDF and
class logits of every frustum cell (:mod:`.frustum_grid`). At the default configs it has 530,096 trainable
parameters and takes 62 ms per 160x120 image on one CPU thread, 57 of them in the decoder (see the package
docstring). With ``config.gravity_head`` a small head on the same pooled features also predicts the camera's
gravity direction and height above the floor (SSR's viewpoint prediction at scene level), which place a prediction
of an unposed image upright. With ``config.depth_input`` the network also reads the view's depth image
(:mod:`.depth_frustum`: its projective TSDF and known mask in the frustum grid), which a small strided 3D network
(:class:`DepthEncoder`) brings to the latent grid's resolution and adds to the image's latent grid before the
refinement; its last layer starts at zero, so a depth network fine-tuned from an image-only one starts as that one.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .block_autoencoder import BlockDecoder, check_block_grid
from .config import FrustumGridConfig, ImageToLatentConfig
from .depth_frustum import depth_frustum_channels

STAGES = 4
GROUPS = 4


def _conv_norm_act(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv -> GroupNorm -> ReLU (GroupNorm: independent of the batch size, which is tiny on a CPU)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
                         nn.GroupNorm(GROUPS, out_channels), nn.ReLU(inplace=True))


class LatentResidualBlock(nn.Module):
    """Two 3x3x3 convolutions with a ReLU between them and an identity shortcut; (B, L, d, y, x) preserved."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class GravityHead(nn.Module):
    """Pooled image features (B, C) -> ``gravity_cam`` (B, 3), the unit gravity direction in the camera (optical)
    frame, and ``camera_height`` (B,), the camera's height above the floor in metres (positive). Starts at a level
    camera (gravity along +y, image down) 1.5 m above the floor."""

    HIDDEN = 64
    START_HEIGHT = 1.5

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(channels, self.HIDDEN), nn.ReLU(inplace=True), nn.Linear(self.HIDDEN, 4))
        with torch.no_grad():
            self.layers[-1].weight.mul_(0.1)
            self.layers[-1].bias.copy_(torch.tensor([0.0, 1.0, 0.0, math.log(math.expm1(self.START_HEIGHT))]))

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        output = self.layers(features)
        return {"gravity_cam": F.normalize(output[:, :3], dim=1), "camera_height": F.softplus(output[:, 3])}


class DepthEncoder(nn.Module):
    """(B, 2, D, Y, X) depth channels of a frustum grid (:func:`.depth_frustum.depth_frustum_channels`) -> (B, L, d,
    y, x) latent-grid offsets: ``levels`` stride-2 3x3x3 convolutions (16, 32, 64, ... channels, GroupNorm, ReLU),
    then a 1x1x1 convolution to the ``L`` latent channels, initialized to zero."""

    WIDTH = 16

    def __init__(self, levels: int, latent_channels: int) -> None:
        super().__init__()
        layers, in_channels = [], 2
        for level in range(levels):
            width = self.WIDTH * 2 ** level
            layers += [nn.Conv3d(in_channels, width, 3, 2, 1, bias=False), nn.GroupNorm(GROUPS, width),
                       nn.ReLU(inplace=True)]
            in_channels = width
        self.encode = nn.Sequential(*layers)
        self.to_latent = nn.Conv3d(in_channels, latent_channels, 1)
        nn.init.zeros_(self.to_latent.weight)
        nn.init.zeros_(self.to_latent.bias)

    def forward(self, channels: torch.Tensor) -> torch.Tensor:
        return self.to_latent(self.encode(channels))


def upright_from_camera(gravity_cam: torch.Tensor, camera_height: torch.Tensor | float) -> torch.Tensor:
    """(4, 4) pose ``T_upright_cam`` of the camera in an upright frame: z up (against ``gravity_cam`` (3,), the unit
    gravity direction in the camera frame), the floor at z = 0, the camera ``camera_height`` metres above it at
    x = y = 0, and x along the camera's x axis levelled (gravity_cam must not be parallel to it)."""
    down = F.normalize(gravity_cam.double(), dim=0)
    up = -down
    x_axis = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    level_x = F.normalize(x_axis - (x_axis @ up) * up, dim=0)
    T = torch.eye(4, dtype=torch.float64)
    T[:3, :3] = torch.stack((level_x, torch.linalg.cross(up, level_x), up))  # rows: upright axes in the camera frame
    T[2, 3] = float(camera_height)
    return T


class ImageToLatentNet(nn.Module):
    """Image -> latent grid -> frozen decoder -> semantic TSDF of the frustum.

    Args:
        config: the 2D network.
        frustum: the frustum grid whose latent grid it predicts (its cells multiples of the block size).
        decoder: the trained autoencoder's decoder; frozen (``requires_grad`` off) and kept as a submodule.
    """

    def __init__(self, config: ImageToLatentConfig, frustum: FrustumGridConfig, decoder: BlockDecoder) -> None:
        super().__init__()
        block = decoder.config.block_size
        check_block_grid(frustum.shape, block, "frustum")
        self.config, self.frustum = config, frustum
        self.latent_shape = tuple(n // block for n in frustum.shape)  # (d, y, x)
        latent_channels = decoder.config.latent_channels
        widths = [config.base_width * 2 ** stage for stage in range(STAGES)]
        stages, in_channels = [], config.input_channels
        for width in widths:
            stages.append(nn.Sequential(_conv_norm_act(in_channels, width, stride=2), _conv_norm_act(width, width)))
            in_channels = width
        self.encoder = nn.Sequential(*stages)
        self.context = _conv_norm_act(widths[-1], widths[-1])
        self.to_latent = nn.Conv2d(widths[-1], latent_channels * self.latent_shape[0], 1)
        self.refine = nn.Sequential(*(LatentResidualBlock(latent_channels) for _ in range(config.latent_blocks)))
        self.gravity = GravityHead(widths[-1]) if config.gravity_head else None
        self.depth = DepthEncoder(decoder.config.levels, latent_channels) if config.depth_input else None
        self.decoder = decoder.requires_grad_(False)

    def _image_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3 + E, H, W) images, RGB in [0, 1] -> (B, C, y, x) features pooled to the latent grid's image
        resolution. Raises ValueError for another channel count or an image smaller than ``2**4`` pixels per latent
        cell."""
        channels = self.config.input_channels
        if images.dim() != 4 or images.shape[1] != channels:
            raise ValueError(f"images must be (B, {channels}, H, W) (RGB then {self.config.extra_channels} extra "
                             f"channels), got {tuple(images.shape)}")
        depth, rows, columns = self.latent_shape
        if images.shape[2] < rows * 2 ** STAGES or images.shape[3] < columns * 2 ** STAGES:
            raise ValueError(f"images of {images.shape[3]}x{images.shape[2]} pixels are too small for a latent grid "
                             f"of {columns}x{rows} (at least {2 ** STAGES} pixels per latent cell)")
        features = self.encoder(torch.cat(((images[:, :3] - 0.5) / 0.25, images[:, 3:]), dim=1))
        return self.context(F.adaptive_avg_pool2d(features, (rows, columns)))

    def _latent(self, features: torch.Tensor, depth: torch.Tensor | None) -> torch.Tensor:
        cells, rows, columns = self.latent_shape
        latent = self.to_latent(features).view(len(features), -1, cells, rows, columns)
        if self.depth is None:
            if depth is not None:
                raise ValueError("this single-view network reads no depth (image_to_latent.depth_input is off)")
        else:
            if depth is None:
                raise ValueError("this single-view network needs the view's depth image (image_to_latent.depth_input)")
            if depth.dim() != 3 or len(depth) != len(features):
                raise ValueError(f"depth must be (B, H, W) with B = {len(features)} images, got {tuple(depth.shape)}")
            latent = latent + self.depth(depth_frustum_channels(depth, self.frustum).to(latent.dtype))
        return self.refine(latent)

    def predict_latent(self, images: torch.Tensor, depth: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3 + E, H, W) images, RGB in [0, 1], and for a depth network (``config.depth_input``) their (B, H', W')
        z-depth images in metres (0 = invalid; any size, the same view) -> (B, L, d, y, x) latent grid. Raises
        ValueError for another channel count, an image smaller than ``2**4`` pixels per latent cell, or a depth
        missing where needed or given where not."""
        return self._latent(self._image_features(images), depth)

    def forward(self, images: torch.Tensor, depth: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """(B, 3 + E, H, W) images (and ``depth`` for a depth network, see :meth:`predict_latent`) -> dict of
        ``latent`` (B, L, d, y, x), ``tsdf`` (B, D, Y, X) in [-1, 1] and ``class_logits`` (B, K, D, Y, X) of the
        frustum cells; with the gravity head (``config.gravity_head``) also ``gravity_cam`` (B, 3) and
        ``camera_height`` (B,) (:class:`GravityHead`)."""
        features = self._image_features(images)
        latent = self._latent(features, depth)
        output = {"latent": latent, **self.decoder(latent)}
        if self.gravity is not None:
            output.update(self.gravity(features.mean(dim=(2, 3))))
        return output
