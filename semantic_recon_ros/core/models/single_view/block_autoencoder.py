"""SemSVR's headless compression of semantic TSDF: every block of cells <-> one latent code.

The encoder maps a semantic TSDF grid (B, 1 + K, D, Y, X) (TSDF then class one-hot,
:func:`semantic_tsdf_channels`; D, Y, X multiples of ``block_size``) to the latent grid
(B, L, D/s, Y/s, X/s), ``s = block_size``: one code of L values per block of s^3 cells. The decoder maps a latent
grid back to the TSDF (tanh, in [-1, 1]) and class logits of every cell. Both are fully convolutional, so a code
near a block border sees a little of its neighbours and decoded blocks meet without seams (the role of SemSVR's
overlapping boundary blocks). After training, the image network (:mod:`.image_to_latent`) predicts latent grids
and the frozen decoder turns them into frusta.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .config import BlockAutoencoderConfig


GROUPS = 4


def _conv(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2)


def _conv_norm_act(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv -> GroupNorm -> ReLU. GroupNorm has no batch statistics: a frozen decoder acts the same in training
    and evaluation mode."""
    return nn.Sequential(_conv(in_channels, out_channels, kernel_size, stride),
                         nn.GroupNorm(min(GROUPS, out_channels), out_channels), nn.ReLU(inplace=True))


def _widths(config: BlockAutoencoderConfig) -> list[int]:
    """Channels at full resolution, 1/2, ..., 1/block_size."""
    return [config.base_width * 2 ** level for level in range(config.levels + 1)]


def check_block_grid(shape: tuple[int, ...], block_size: int, what: str) -> None:
    """Raise ValueError unless the last three sizes of ``shape`` are positive multiples of ``block_size``."""
    dims = tuple(int(n) for n in shape[-3:])
    if len(dims) != 3 or any(n <= 0 or n % block_size for n in dims):
        raise ValueError(f"{what} grid (D, Y, X) = {dims} must be three positive multiples of the block size "
                         f"{block_size}")


class BlockEncoder(nn.Module):
    """(B, 1 + K, D, Y, X) semantic TSDF -> (B, L, D/s, Y/s, X/s) latent grid."""

    def __init__(self, config: BlockAutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        widths = _widths(config)
        layers = [_conv_norm_act(config.input_channels, widths[0])]
        layers += [_conv_norm_act(widths[level], widths[level + 1], stride=2) for level in range(config.levels)]
        layers.append(_conv(widths[-1], config.latent_channels, kernel_size=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        config = self.config
        if grid.dim() != 5 or grid.shape[1] != config.input_channels:
            raise ValueError(f"semantic TSDF must be (B, {config.input_channels}, D, Y, X), got {tuple(grid.shape)}")
        check_block_grid(grid.shape, config.block_size, "semantic TSDF")
        return self.layers(grid)


class BlockDecoder(nn.Module):
    """(B, L, d, y, x) latent grid -> ``tsdf`` (B, d s, y s, x s) in [-1, 1] and ``class_logits``
    (B, K, d s, y s, x s)."""

    def __init__(self, config: BlockAutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        widths = _widths(config)
        self.context = nn.Sequential(_conv_norm_act(config.latent_channels, widths[-1], kernel_size=1),
                                     _conv_norm_act(widths[-1], widths[-1]))
        self.upsampling = nn.ModuleList(_conv_norm_act(widths[level + 1], widths[level])
                                        for level in range(config.levels - 1, -1, -1))
        self.head = _conv(widths[0], 1 + config.num_classes, kernel_size=1)

    def forward(self, latent: torch.Tensor) -> dict[str, torch.Tensor]:
        if latent.dim() != 5 or latent.shape[1] != self.config.latent_channels:
            raise ValueError(f"latent grid must be (B, {self.config.latent_channels}, d, y, x), "
                             f"got {tuple(latent.shape)}")
        x = self.context(latent)
        for stage in self.upsampling:
            x = stage(F.interpolate(x, scale_factor=2, mode="nearest"))
        output = self.head(x)
        return {"tsdf": torch.tanh(output[:, 0]), "class_logits": output[:, 1:]}


class BlockAutoencoder(nn.Module):
    """Encoder + decoder; ``forward`` returns the ``latent`` grid and the decoded ``tsdf`` and ``class_logits``."""

    def __init__(self, config: BlockAutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = BlockEncoder(config)
        self.decoder = BlockDecoder(config)

    def forward(self, grid: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 1 + K, D, Y, X) semantic TSDF -> dict of ``latent`` (B, L, D/s, Y/s, X/s), ``tsdf`` (B, D, Y, X)
        and ``class_logits`` (B, K, D, Y, X)."""
        latent = self.encoder(grid)
        return {"latent": latent, **self.decoder(latent)}


def random_block_crops(grids: Sequence[torch.Tensor], crop_cells: int, count: int, block_size: int,
                       generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """``count`` random cubes of ``crop_cells^3`` cells, on the block grid, cut alike from every tensor of ``grids``.

    Args:
        grids: tensors (N, ..., D, Y, X) with the same N and (D, Y, X), e.g. the semantic TSDF (N, 1 + K, D, Y, X),
            the TSDF, labels and loss weights (N, D, Y, X) of N frusta.
        crop_cells: cube edge, a multiple of ``block_size`` no larger than D, Y and X.
        generator: random source (on the CPU) for the frusta and the offsets.
    Returns:
        per input tensor, its crops (count, ..., crop_cells, crop_cells, crop_cells).
    """
    first = grids[0]
    if any(g.shape[0] != first.shape[0] or g.shape[-3:] != first.shape[-3:] for g in grids):
        raise ValueError(f"grids must share N and (D, Y, X), got {[tuple(g.shape) for g in grids]}")
    if crop_cells % block_size or crop_cells > min(first.shape[-3:]):
        raise ValueError(f"crop of {crop_cells} cells must be a multiple of the block size {block_size} and fit in "
                         f"the grid {tuple(first.shape[-3:])}")
    frusta = torch.randint(0, first.shape[0], (count,), generator=generator).tolist()
    offsets = [(torch.randint(0, (n - crop_cells) // block_size + 1, (count,), generator=generator) * block_size)
               .tolist() for n in first.shape[-3:]]
    crops = []
    for grid in grids:
        crops.append(torch.stack([grid[frustum, ..., d:d + crop_cells, y:y + crop_cells, x:x + crop_cells]
                                  for frustum, d, y, x in zip(frusta, *offsets)]))
    return crops


def semantic_tsdf_channels(tsdf: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The autoencoder's input: (B, D, Y, X) TSDF and labels -> (B, 1 + K, D, Y, X), the TSDF then the class
    one-hot (all zero where unlabeled)."""
    if tsdf.shape != labels.shape or tsdf.dim() != 4:
        raise ValueError(f"tsdf {tuple(tsdf.shape)} and labels {tuple(labels.shape)} must both be (B, D, Y, X)")
    one_hot = F.one_hot(labels.clamp(min=0), num_classes).to(tsdf.dtype) * (labels >= 0)[..., None]
    return torch.cat((tsdf[:, None], one_hot.permute(0, 4, 1, 2, 3)), dim=1)
