"""Two implementations of the per-frame fusion steps behind one interface: the compiled CPU kernel and torch.

A :class:`~.tsdf_volume.SemanticTSDFVolume` decides *what* to fuse (which blocks, within ``max_blocks``);
a backend does the three heavy steps of a frame:

* ``band_block_keys``: valid depth pixels -> sorted unique keys of the blocks near the observed surface,
* ``lookup``: block keys -> slots,
* ``fuse_voxels``: the projective TSDF / weight / color / semantic / feature update of given blocks.

:class:`KernelFusion` runs :mod:`.fusion_kernel` (CPU only, one pass per step); :class:`TorchFusion` is
the reference written with tensor operations (any device, e.g. CUDA). Both compute the same values,
operation for operation (test/core/test_fusion_kernel.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from ..camera import PinholeCamera, invert_rigid
from ..config.volume import VolumeConfig
from .block_grid import BlockGrid
from .block_index import unique_coords_keys


@dataclass
class FrameTensors:
    """Validated inputs of one integration, contiguous, on the volume's device."""

    depth: torch.Tensor  # (H, W) float32 metres as given: 0, NaN, inf and readings outside the depth range invalid
    color: torch.Tensor | None  # (H, W, 3) uint8
    labels: torch.Tensor | None  # (H, W) int64, values outside [0, K) = unlabeled
    class_probs: torch.Tensor | None  # (H, W, K) float32
    features: torch.Tensor | None  # (H, W, F) float32
    T_world_cam: np.ndarray  # (4, 4) float64


@dataclass
class BandQuery:
    """What ``band_block_keys`` needs: every ``stride``-th pixel's ray and the world -> block-unit transform.

    Attributes:
        rays: (P, 3) float32 camera rays (z = 1) of every ``stride``-th pixel, row-major.
        rotation, origin: (3, 3), (3,) float32: the world point ``R @ (ray * z) + t`` in block units (plus half
            a voxel, so flooring gives the block).
        offsets: (S,) float32 depth offsets sampled around each reading (the truncation band).
        stride: pixel stride.
    """

    rays: torch.Tensor
    rotation: torch.Tensor
    origin: torch.Tensor
    offsets: torch.Tensor
    stride: int


class FusionBackend(Protocol):
    name: str

    def band_block_keys(self, frame: FrameTensors, query: BandQuery, config: VolumeConfig) -> tuple[torch.Tensor, int]:
        """(sorted unique block keys near the surface, number of valid depth pixels)."""

    def lookup(self, grid: BlockGrid, keys: torch.Tensor) -> torch.Tensor:
        """(N,) keys -> (N,) slots, -1 where absent."""

    def fuse_voxels(self, grid: BlockGrid, slots: torch.Tensor, frame: FrameTensors, camera: PinholeCamera,
                    config: VolumeConfig, geometry: bool, feature_range: float) -> int:
        """Update every voxel of ``slots``; returns how many voxels' TSDF (without depth: features) changed."""


def projection(T_world_cam: np.ndarray, camera: PinholeCamera, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, 3) ``K @ R_cam_world`` and (3,) ``K @ t_cam_world``, float32, mapping a world point ``p`` to
    ``(u*z, v*z, z) = KR @ p + Kt``: pixel coordinates of an image padded by one pixel on every side,
    plus 0.5, so truncating ``u*z / z`` to an integer gives the nearest padded pixel; ``z`` is the depth
    along the optical axis in metres."""
    T_cam_world = invert_rigid(T_world_cam)
    K = camera.K.copy()
    K[:2, 2] += 1.5  # padding (+1) and rounding (+0.5), folded into the principal point
    KR = torch.tensor(K @ T_cam_world[:3, :3], dtype=torch.float32, device=device)
    Kt = torch.tensor(K @ T_cam_world[:3, 3], dtype=torch.float32, device=device)
    return KR, Kt


def rotate(points: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """(N, 3) points -> (N, 3) ``points @ M.T`` for a (3, 3) ``M``, summed in a fixed order with one rounding
    per multiply and add: the fusion kernel computes it the same way (and tiny matmuls are slow on CPU)."""
    return points[:, 0:1] * M[:, 0] + points[:, 1:2] * M[:, 1] + points[:, 2:3] * M[:, 2]


def voxel_projection(grid: BlockGrid, slots: torch.Tensor, T_world_cam: np.ndarray, camera: PinholeCamera,
                     voxel_size: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Projection (see :func:`projection`) of the voxels of the (n,) blocks ``slots``, affine per block.

    Returns (n, 3) ``(u*z, v*z, z)`` of each block's voxel 0 and (V, 3) offsets of the voxels within a
    block (storage order): voxel l of block b projects to ``block[b] + offsets[l]``.
    """
    KR, Kt = projection(T_world_cam, camera, grid.device)
    # K @ (R @ (origin + offset) + t) = (K @ R @ origin + K @ t) + K @ R @ offset
    origins = grid.block_coords(slots).float() * (grid.block_size * voxel_size)  # (n, 3)
    return rotate(origins, KR) + Kt, rotate(grid.local_coords.float() * voxel_size, KR)


def valid_depth(depth: torch.Tensor, config: VolumeConfig) -> torch.Tensor:
    """(H, W) float32 metres -> (H, W) bool: inside ``[min_depth, max_depth]`` and not 0 (false for NaN)."""
    return (depth >= config.min_depth) & (depth <= config.max_depth) & (depth > 0)


class KernelFusion:
    """The compiled CPU kernel (:func:`.fusion_kernel.load`)."""

    name = "kernel"

    def __init__(self, ops: Any):
        self.ops = ops

    def band_block_keys(self, frame: FrameTensors, query: BandQuery, config: VolumeConfig) -> tuple[torch.Tensor, int]:
        keys, valid_pixels = self.ops.band_block_keys(frame.depth, query.rays, query.rotation, query.origin,
                                                      query.offsets, query.stride, config.min_depth, config.max_depth)
        return keys, valid_pixels

    def lookup(self, grid: BlockGrid, keys: torch.Tensor) -> torch.Tensor:
        # same result as grid.lookup_keys; torch's searchsorted splits even a few hundred keys over threads
        return self.ops.lookup_slots(grid.keys, grid.slots, keys)

    def fuse_voxels(self, grid: BlockGrid, slots: torch.Tensor, frame: FrameTensors, camera: PinholeCamera,
                    config: VolumeConfig, geometry: bool, feature_range: float) -> int:
        KR, Kt = projection(frame.T_world_cam, camera, grid.device)
        updated, featured = self.ops.fuse_voxels(
            slots.contiguous(), grid.coords_by_slot, KR, Kt, config.block_size, config.block_length,
            config.voxel_size, frame.depth, frame.color, frame.labels, frame.class_probs, frame.features,
            grid.layer("tsdf"), grid.layer("weight"), grid.layer("color"), grid.layer("semantic"),
            grid.layer("features"), grid.layer("feature_weight"), geometry, config.truncation, config.max_weight,
            config.min_depth, config.max_depth, feature_range)
        return updated or featured


def _pad(image: torch.Tensor, value: float) -> torch.Tensor:
    """(..., H, W) -> (..., H + 2, W + 2) with a one-pixel border of ``value``."""
    return torch.nn.functional.pad(image, (1, 1, 1, 1), value=value)


def _unpad_index(padded_pixel: torch.Tensor, width: int) -> torch.Tensor:
    """Flat pixel index in an image padded by :func:`_pad` -> flat index in the original (H, W) image."""
    row, col = padded_pixel // (width + 2), padded_pixel % (width + 2)
    return (row - 1) * width + (col - 1)


def _padded_color(color: torch.Tensor) -> torch.Tensor:
    """(H, W, 3) uint8 -> (H + 2, W + 2, 3) with a black one-pixel border (one copy)."""
    height, width = color.shape[:2]
    padded = torch.zeros((height + 2, width + 2, 3), dtype=torch.uint8, device=color.device)
    padded[1:-1, 1:-1] = color
    return padded


class TorchFusion:
    """The reference implementation with tensor operations (any device)."""

    name = "torch"

    def band_block_keys(self, frame: FrameTensors, query: BandQuery, config: VolumeConfig) -> tuple[torch.Tensor, int]:
        s = query.stride
        valid = valid_depth(frame.depth, config)
        sampled = valid[::s, ::s].reshape(-1)
        d = frame.depth[::s, ::s].reshape(-1)[sampled]
        z = (d[:, None] + query.offsets[None, :]).clamp_(min=1e-3)  # (P, S)
        # R @ ray, then * z, then + t, one rounding per operation, as the kernel does (no fused multiply-add)
        R, rays = query.rotation, query.rays[sampled]
        world_rays = rays[:, 0:1] * R[:, 0] + rays[:, 1:2] * R[:, 1] + R[:, 2]  # (P, 3)
        coords = (world_rays[:, None, :] * z[..., None]).add_(query.origin).floor_().reshape(-1, 3).to(torch.int64)
        return unique_coords_keys(coords), int(valid.sum())

    def lookup(self, grid: BlockGrid, keys: torch.Tensor) -> torch.Tensor:
        return grid.lookup_keys(keys)

    @staticmethod
    def _project(grid: BlockGrid, slots: torch.Tensor, frame: FrameTensors, camera: PinholeCamera,
                 config: VolumeConfig) -> tuple[torch.Tensor, ...]:
        """Every voxel of ``slots`` in the image: (n, V) depth ``z``, (n, V) int32 padded pixel columns ``u`` and rows
        ``v``, (n * V,) flat padded pixel, and (n,) bool blocks reaching behind the camera."""
        block_proj, voxel_proj = voxel_projection(grid, slots, frame.T_world_cam, camera, config.voxel_size)
        W = camera.width
        z = block_proj[:, 2:3] + voxel_proj[:, 2]  # (n, V)
        behind = block_proj[:, 2] + voxel_proj[:, 2].min() <= 0  # blocks reaching behind the camera
        divisor = z.clamp(min=1e-6) if bool(behind.any()) else z  # no NaN from 0 / 0; behind voxels masked later
        u = (block_proj[:, 0:1] + voxel_proj[:, 0]).div_(divisor).clamp_(0, W + 1.5).to(torch.int32)
        v = (block_proj[:, 1:2] + voxel_proj[:, 1]).div_(divisor).clamp_(0, camera.height + 1.5).to(torch.int32)
        # Pixels are looked up in images padded by one invalid pixel on every side, so a projection
        # clamped onto the padding reads "invalid" without separate bound checks.
        return z, u, v, torch.add(u, v, alpha=W + 2).view(-1), behind

    @staticmethod
    def _signed_distances(frame: FrameTensors, config: VolumeConfig, padded_pixel: torch.Tensor,
                          z: torch.Tensor) -> torch.Tensor:
        """(n * V,) observed depth minus voxel depth (metres; -inf where the pixel has no valid depth)."""
        padded_depth = _pad(torch.where(valid_depth(frame.depth, config), frame.depth, -torch.inf), -torch.inf)
        return padded_depth.view(-1).index_select(0, padded_pixel).sub_(z.view(-1))

    def fuse_semantics(self, grid: BlockGrid, slots: torch.Tensor, frame: FrameTensors, camera: PinholeCamera,
                       config: VolumeConfig) -> int:
        """Fuse only the frame's labels or class probabilities into the voxels of ``slots`` within truncation of
        its depth (the voxels a full update would give votes); TSDF, weight and color stay. Returns the number of
        voxels that received votes. (Used for keyframes segmented after their geometry was fused; on every
        device, as it runs about once a second.)"""
        V = config.voxels_per_block
        z, _, _, padded_pixel, _ = self._project(grid, slots, frame, camera, config)
        sdf = self._signed_distances(frame, config, padded_pixel, z)
        flat = ((sdf.abs() < config.truncation) & (z.view(-1) > 0)).nonzero().squeeze(1)
        voxel = slots.index_select(0, flat // V) * V + flat % V
        pixel = _unpad_index(padded_pixel.index_select(0, flat), camera.width)
        self._fuse_semantics(grid, voxel, pixel, frame, config)
        return int(voxel.numel())

    def fuse_voxels(self, grid: BlockGrid, slots: torch.Tensor, frame: FrameTensors, camera: PinholeCamera,
                    config: VolumeConfig, geometry: bool, feature_range: float) -> int:
        V, W = config.voxels_per_block, camera.width
        z, u, v, padded_pixel, behind = self._project(grid, slots, frame, camera, config)
        updated = 0
        if geometry:
            sdf = self._signed_distances(frame, config, padded_pixel, z)  # -inf where invalid
            update = sdf >= -config.truncation
            if bool(behind.any()):
                update.view(-1, V)[behind] &= z[behind] > 0
            flat = update.nonzero().squeeze(1)  # (M,) indices into the (n * V) candidates
            voxel = slots.index_select(0, flat // V) * V + flat % V  # (M,) flat pool indices
            sdf = sdf.index_select(0, flat)
            padded = padded_pixel.index_select(0, flat)  # int32: index_select takes it as is
            self._fuse_geometry_and_color(grid, voxel, sdf, padded, frame, config)
            if frame.labels is not None or frame.class_probs is not None:
                near = sdf.abs() < config.truncation
                self._fuse_semantics(grid, voxel[near], _unpad_index(padded[near], W), frame, config)
            updated = int(voxel.numel())
        if frame.features is not None:
            in_image = ((u >= 1) & (u <= W) & (v >= 1) & (v <= camera.height) & (z >= config.min_depth)
                        & (z <= feature_range))
            flat = in_image.view(-1).nonzero().squeeze(1)
            voxel = slots.index_select(0, flat // V) * V + flat % V
            self._fuse_features(grid, voxel, _unpad_index(padded_pixel.index_select(0, flat), W), frame.features,
                                config)
            updated = updated or int(voxel.numel())
        return updated

    @staticmethod
    def _fuse_geometry_and_color(grid: BlockGrid, voxel, sdf, padded_pixel, frame: FrameTensors,
                                 config: VolumeConfig) -> None:
        tsdf_pool = grid.layer("tsdf").view(-1)
        weight_pool = grid.layer("weight").view(-1)
        w_old = weight_pool.index_select(0, voxel)
        w_sum = w_old + 1.0
        observed = (sdf / config.truncation).clamp_(max=1.0)
        tsdf = tsdf_pool.index_select(0, voxel).mul_(w_old).add_(observed).div_(w_sum)
        tsdf_pool.index_copy_(0, voxel, tsdf)
        weight_pool.index_copy_(0, voxel, w_sum.clamp(max=config.max_weight))
        if frame.color is not None:
            color_pool = grid.layer("color").view(-1, 3)
            rgb = _padded_color(frame.color).view(-1, 3).index_select(0, padded_pixel).float()
            color = color_pool.index_select(0, voxel).mul_(w_old[:, None]).add_(rgb).div_(w_sum[:, None])
            color_pool.index_copy_(0, voxel, color)

    @staticmethod
    def _fuse_semantics(grid: BlockGrid, voxel, pixel, frame: FrameTensors, config: VolumeConfig) -> None:
        semantic = grid.layer("semantic")
        K = semantic.shape[-1]
        pool = semantic.view(-1, K)
        if frame.labels is not None:
            label = frame.labels.reshape(-1)[pixel]
            labeled = (label >= 0) & (label < K)
            voxel, label = voxel[labeled], label[labeled]
            votes = pool[voxel]
            votes[torch.arange(voxel.numel(), device=voxel.device), label] += 1.0
        else:
            votes = pool[voxel] + frame.class_probs.reshape(-1, K)[pixel]
        total = votes.sum(dim=1, keepdim=True)
        pool[voxel] = votes * (config.max_weight / total).clamp_(max=1.0)

    @staticmethod
    def _fuse_features(grid: BlockGrid, voxel, pixel, features: torch.Tensor, config: VolumeConfig) -> None:
        F = features.shape[-1]
        feat_pool = grid.layer("features").view(-1, F)
        weight_pool = grid.layer("feature_weight").view(-1)
        w_old = weight_pool[voxel]
        feat_pool[voxel] = (feat_pool[voxel] * w_old[:, None] + features.reshape(-1, F)[pixel]) / (w_old[:, None] + 1)
        weight_pool[voxel] = (w_old + 1).clamp_(max=config.max_weight)
