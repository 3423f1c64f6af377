"""The block-sparse semantic TSDF volume: storage, frame integration, memory bound, save/load.

Voxel grid convention: voxel ``g = (i, j, k)`` (integers, world frame) has its centre at
``g * voxel_size``. Block ``b`` holds voxels ``b * block_size + l`` with local coordinates
``l in [0, block_size)^3``, stored flattened as ``(l_x * B + l_y) * B + l_z``.

Per voxel layers (``V = block_size**3`` voxels per block, ``K`` classes, ``F`` feature channels):

=================  ===================  ==============================================================
layer              pool shape           meaning
=================  ===================  ==============================================================
``tsdf``           (slots, V)           truncated signed distance / truncation, in [-1, 1] (+ = free)
``weight``         (slots, V)           fusion weight, 0 = never observed, capped at ``max_weight``
``color``          (slots, V, 3)        running-average RGB, 0..255 float
``semantic``       (slots, V, K)        accumulated class votes (one-hot labels or probabilities)
``features``       (slots, V, F)        running-average back-projected 2D features (F may be 0)
``feature_weight`` (slots, V)           number of views averaged into ``features``
=================  ===================  ==============================================================

More layers can be added with :meth:`SemanticTSDFVolume.add_layer` (the completion network stores
its predictions that way); every layer is saved and loaded. ``block_version`` (per slot, not saved)
holds the integration count at which each block last changed (loading marks every block changed), so
consumers can tell what is new.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from . import fusion_kernel
from .block_index import BlockIndex, pack_coords, unique_coords_keys, unpack_keys
from .camera import PinholeCamera, check_rigid, invert_rigid
from .config_fields import config_from_dict
from .volume_config import VolumeConfig

FILE_FORMAT = "semantic_recon_ros/volume"
FILE_VERSION = 1


@dataclass
class IntegrationStats:
    """What one :meth:`SemanticTSDFVolume.integrate` call did."""

    valid_pixels: int = 0
    blocks_in_view: int = 0
    blocks_allocated: int = 0
    blocks_dropped: int = 0
    blocks_refused: int = 0  # new blocks not allocated because of max_blocks
    voxels_updated: int = 0


@dataclass
class FrameTensors:
    """Validated inputs of one integration, on the volume's device (see :meth:`SemanticTSDFVolume.integrate`)."""

    depth: torch.Tensor  # (H, W) float32 metres as given: 0, NaN, inf and readings outside the depth range invalid
    color: torch.Tensor | None  # (H, W, 3) uint8
    labels: torch.Tensor | None  # (H, W) int64, values outside [0, K) = unlabeled
    class_probs: torch.Tensor | None  # (H, W, K) float32
    features: torch.Tensor | None  # (H, W, F) float32
    T_world_cam: np.ndarray  # (4, 4) float64
    # every tensor is contiguous


def _pad(image: torch.Tensor, value: float) -> torch.Tensor:
    """(..., H, W) -> (..., H + 2, W + 2) with a one-pixel border of ``value``."""
    return torch.nn.functional.pad(image, (1, 1, 1, 1), value=value)


def _unpad_index(padded_pixel: torch.Tensor, width: int) -> torch.Tensor:
    """Flat pixel index in an image padded by :func:`_pad` -> flat index in the original (H, W) image."""
    row, col = padded_pixel // (width + 2), padded_pixel % (width + 2)
    return (row - 1) * width + (col - 1)


def _rotate(points: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """(N, 3) points -> (N, 3) ``points @ M.T`` for a (3, 3) ``M``, summed in a fixed order with one rounding
    per multiply and add: the fusion kernel computes it the same way (and tiny matmuls are slow on CPU)."""
    return points[:, 0:1] * M[:, 0] + points[:, 1:2] * M[:, 1] + points[:, 2:3] * M[:, 2]


def _as_tensor(array: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(array, torch.Tensor):
        return array.to(device).contiguous()
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def _padded_color(color: torch.Tensor) -> torch.Tensor:
    """(H, W, 3) uint8 -> (H + 2, W + 2, 3) with a black one-pixel border (one copy)."""
    height, width = color.shape[:2]
    padded = torch.zeros((height + 2, width + 2, 3), dtype=torch.uint8, device=color.device)
    padded[1:-1, 1:-1] = color
    return padded


class SemanticTSDFVolume:
    """Sparse voxel-block TSDF + color + semantic (+ feature) map on a torch device.

    On the CPU, frames are fused by the compiled kernel of :mod:`.fusion_kernel` (one pass over the
    voxels instead of ~100 tensor operations); on other devices, or when the kernel cannot be built,
    by the torch implementation below, which computes the same values (test/test_fusion_kernel.py).
    Setting ``use_fusion_kernel = False`` forces the torch implementation.

    Args:
        config: fusion parameters.
        class_names: the semantic classes; votes are kept per class in this order.
        device: torch device for all storage and computation (e.g. ``"cuda"`` or ``"cpu"``).
    """

    def __init__(self, config: VolumeConfig, class_names: Sequence[str], device: torch.device | str):
        self.config = config
        self.class_names = tuple(class_names)
        self.device = torch.device(device)
        self.index = BlockIndex(self.device)
        self.block_coords = torch.zeros((0, 3), dtype=torch.int64, device=self.device)  # per slot
        self.block_version = torch.zeros(0, dtype=torch.int64, device=self.device)  # per slot
        self.version = 0  # incremented by every integration that changes blocks
        self.layers: dict[str, torch.Tensor] = {}
        self.layer_fill: dict[str, float] = {}
        V, K = config.voxels_per_block, len(self.class_names)
        for name, shape, fill in (("tsdf", (V,), 1.0), ("weight", (V,), 0.0), ("color", (V, 3), 0.0),
                                  ("semantic", (V, K), 0.0), ("features", (V, config.feature_dim), 0.0),
                                  ("feature_weight", (V,), 0.0)):
            self.add_layer(name, shape, fill)
        self._free_slots = torch.zeros(0, dtype=torch.int64, device=self.device)
        self._slots_in_use = 0  # high-water mark of the pools
        B = config.block_size
        l = torch.arange(B, device=self.device)
        # (V, 3) float local coordinates of a block's voxels, in storage order
        self._local_offsets = torch.stack(torch.meshgrid(l, l, l, indexing="ij"), dim=-1).reshape(-1, 3).float()
        self._ray_cache: dict[tuple[PinholeCamera, int], torch.Tensor] = {}
        self.use_fusion_kernel = self.device.type == "cpu"

    # ------------------------------------------------------------------ storage
    def add_layer(self, name: str, shape: tuple[int, ...], fill: float) -> None:
        """Add a float32 per-voxel layer of per-block shape ``shape`` (e.g. ``(V, 3)``), ``fill`` everywhere."""
        if name in self.layers:
            raise ValueError(f"layer {name!r} exists already")
        self.layers[name] = torch.full((self.capacity, *shape), fill, dtype=torch.float32, device=self.device)
        self.layer_fill[name] = float(fill)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_blocks(self) -> int:
        return len(self.index)

    @property
    def capacity(self) -> int:
        return int(self.block_coords.shape[0])

    def _mark_changed(self, slots: torch.Tensor) -> None:
        self.version += 1
        self.block_version[slots] = self.version

    def memory_bytes(self) -> int:
        """Bytes held by the block pools (allocated capacity, not only blocks in use)."""
        tensors = [*self.layers.values(), self.block_coords]
        return sum(t.numel() * t.element_size() for t in tensors)

    def _grow(self, needed: int) -> None:
        capacity = min(max(needed, 2 * self.capacity, 64), max(self.config.max_blocks, needed))
        extra = capacity - self.capacity
        self.block_coords = torch.cat((self.block_coords, self.block_coords.new_zeros((extra, 3))))
        self.block_version = torch.cat((self.block_version, self.block_version.new_zeros(extra)))
        for name, tensor in self.layers.items():
            self.layers[name] = torch.cat((tensor, tensor.new_full((extra, *tensor.shape[1:]), self.layer_fill[name])))

    def _take_slots(self, count: int) -> torch.Tensor:
        """``count`` slots for new blocks, holding every layer's fill value: freed slots first (refilled),
        then never used ones, which still hold the fill value from :meth:`add_layer` or :meth:`_grow`."""
        reused = self._free_slots[:count]
        self._free_slots = self._free_slots[count:]
        if reused.numel():
            for name, tensor in self.layers.items():
                tensor[reused] = self.layer_fill[name]
            self.block_version[reused] = 0
        fresh_count = count - reused.numel()
        if self._slots_in_use + fresh_count > self.capacity:
            self._grow(self._slots_in_use + fresh_count)
        fresh = torch.arange(self._slots_in_use, self._slots_in_use + fresh_count, device=self.device)
        self._slots_in_use += fresh_count
        return torch.cat((reused, fresh))

    def _add_blocks(self, keys: torch.Tensor) -> torch.Tensor:
        slots = self._take_slots(keys.numel())
        self.block_coords[slots] = unpack_keys(keys)
        self.index.insert(keys, slots)
        return slots

    def _drop_blocks(self, drop: torch.Tensor) -> int:
        """Remove index entries where the (num_blocks,) mask ``drop`` is true; returns how many."""
        count = int(drop.sum())
        if count:
            self._free_slots = torch.cat((self._free_slots, self.index.slots[drop]))
            self.index.remove(~drop)
        return count

    def block_centers(self, slots: torch.Tensor) -> torch.Tensor:
        """(N,) slots -> (N, 3) world-frame centres of those blocks in metres."""
        B, vs = self.config.block_size, self.config.voxel_size
        return (self.block_coords[slots].float() * B + (B - 1) / 2) * vs

    def clear(self) -> None:
        """Forget every block (the pools keep their capacity)."""
        self._drop_blocks(torch.ones(self.num_blocks, dtype=torch.bool, device=self.device))

    # ------------------------------------------------------------------ integration
    def integrate(
        self,
        depth: np.ndarray | torch.Tensor,
        camera: PinholeCamera,
        T_world_cam: np.ndarray | torch.Tensor,
        color: np.ndarray | torch.Tensor | None = None,
        labels: np.ndarray | torch.Tensor | None = None,
        class_probs: np.ndarray | torch.Tensor | None = None,
        features: np.ndarray | torch.Tensor | None = None,
    ) -> IntegrationStats:
        """Fuse one registered frame.

        Args:
            depth: (H, W) float z-depth in metres; 0, NaN, inf and values outside
                ``[min_depth, max_depth]`` are ignored.
            camera: intrinsics of all images, ``(H, W) == camera.shape``.
            T_world_cam: (4, 4) rigid camera-to-world pose.
            color: optional (H, W, 3) uint8 RGB.
            labels: optional (H, W) integer class ids; values outside ``[0, K)`` are unlabeled.
            class_probs: optional (H, W, K) float class probabilities (instead of ``labels``).
            features: optional (H, W, F) float features, ``F == config.feature_dim``.
        Returns:
            IntegrationStats. Bad inputs raise ValueError before the volume is modified.
        """
        frame = self._check_inputs(depth, camera, T_world_cam, color, labels, class_probs, features)
        valid_pixels, keys = self._keys_in_truncation_band(frame, camera)
        stats = IntegrationStats(valid_pixels=valid_pixels)
        if stats.valid_pixels == 0:
            return stats
        camera_position = torch.tensor(frame.T_world_cam[:3, 3], dtype=torch.float32, device=self.device)
        slots = self._ensure_blocks(keys, camera_position, stats)
        stats.blocks_in_view = int(slots.numel())
        stats.voxels_updated = self._update_voxels(slots, frame, camera)
        self._mark_changed(slots)
        if self.config.clearing_radius > 0:
            far = (self.block_centers(self.index.slots) - camera_position).norm(dim=1) > self.config.clearing_radius
            stats.blocks_dropped += self._drop_blocks(far)
        return stats

    def integrate_features(
        self,
        features: np.ndarray | torch.Tensor,
        camera: PinholeCamera,
        T_world_cam: np.ndarray | torch.Tensor,
        max_range: float | None = None,
    ) -> IntegrationStats:
        """Back-project per-pixel features without depth (RGB-only mapping, as in Atlas).

        Every voxel whose centre lies in the camera frustum with ``min_depth <= z <= max_range`` takes
        the feature of the pixel it projects to, averaged over views with binary weights
        (``feature_weight`` counts the views). Blocks in that frustum are allocated (within
        ``max_blocks``); TSDF, weight, color and semantics are left untouched.

        Args:
            features: (H, W, F) float, ``F == config.feature_dim``.
            camera: intrinsics, ``(H, W) == camera.shape``.
            T_world_cam: (4, 4) rigid camera-to-world pose.
            max_range: farthest z to fill in metres (default ``config.max_depth``).
        """
        cfg = self.config
        max_range = cfg.max_depth if max_range is None else float(max_range)
        if not cfg.min_depth < max_range <= cfg.max_depth:
            raise ValueError(f"max_range must be in ({cfg.min_depth}, {cfg.max_depth}], got {max_range}")
        if features is None:
            raise ValueError("features are required")
        no_depth = np.zeros(camera.shape, np.float32)
        frame = self._check_inputs(no_depth, camera, T_world_cam, None, None, None, features)
        camera_position = torch.tensor(frame.T_world_cam[:3, 3], dtype=torch.float32, device=self.device)
        stats = IntegrationStats()
        keys = self._keys_in_frustum(camera, frame.T_world_cam, max_range)
        slots = self._ensure_blocks(keys, camera_position, stats)
        stats.blocks_in_view = int(slots.numel())
        stats.voxels_updated = self._update_voxels(slots, frame, camera, geometry=False, feature_range=max_range)
        self._mark_changed(slots)
        return stats

    def _keys_in_frustum(self, camera: PinholeCamera, T_world_cam: np.ndarray, max_range: float) -> torch.Tensor:
        """Sorted unique keys of the blocks the frustum ``min_depth <= z <= max_range`` passes through."""
        cfg = self.config
        step = 0.5 * cfg.block_length
        # pixel spacing whose footprint at max_range stays below half a block
        stride = max(1, int(step * min(camera.fx, camera.fy) / max_range))
        rows = torch.arange(0, camera.height + stride, stride, device=self.device).clamp_(max=camera.height - 1)
        cols = torch.arange(0, camera.width + stride, stride, device=self.device).clamp_(max=camera.width - 1)
        rays = camera.pixel_rays(self.device)[rows][:, cols].reshape(-1, 3)
        z = torch.arange(cfg.min_depth, max_range + step, step, device=self.device).clamp_(max=max_range)
        scale = 1.0 / cfg.block_length
        R = torch.tensor(T_world_cam[:3, :3] * scale, dtype=torch.float32, device=self.device)
        t = torch.tensor(T_world_cam[:3, 3] * scale + 0.5 / cfg.block_size, dtype=torch.float32, device=self.device)
        coords = torch.addcmul(t, (rays @ R.T)[:, None, :], z[None, :, None]).floor_().reshape(-1, 3)
        return unique_coords_keys(coords.to(torch.int64))

    def _check_inputs(self, depth, camera, T_world_cam, color, labels, class_probs, features) -> FrameTensors:
        shape = camera.shape
        if depth.ndim != 2 or tuple(depth.shape) != shape:
            raise ValueError(f"depth must be {shape} (camera size), got {tuple(depth.shape)}")
        if depth.dtype not in (np.float32, np.float64, torch.float32, torch.float64):
            raise ValueError(f"depth must be float metres (float32/float64), got {depth.dtype}")
        T = check_rigid(T_world_cam, "T_world_cam")
        out = FrameTensors(depth=_as_tensor(depth, self.device).float(), color=None, labels=None, class_probs=None,
                           features=None, T_world_cam=T)
        if color is not None:
            if tuple(color.shape) != (*shape, 3) or color.dtype not in (np.uint8, torch.uint8):
                raise ValueError(f"color must be {shape + (3,)} uint8 RGB, got {tuple(color.shape)} {color.dtype}")
            out.color = _as_tensor(color, self.device)
        if labels is not None and class_probs is not None:
            raise ValueError("give either labels or class_probs, not both")
        if labels is not None:
            integer = np.issubdtype(labels.dtype, np.integer) if isinstance(labels, np.ndarray) else (
                not labels.dtype.is_floating_point and labels.dtype != torch.bool)
            if tuple(labels.shape) != shape or not integer:
                raise ValueError(f"labels must be {shape} integer class ids, got {tuple(labels.shape)} {labels.dtype}")
            out.labels = _as_tensor(labels, self.device).to(torch.int64)
        if class_probs is not None:
            if tuple(class_probs.shape) != (*shape, self.num_classes):
                raise ValueError(f"class_probs must be {shape + (self.num_classes,)}, got {tuple(class_probs.shape)}")
            probs = _as_tensor(class_probs, self.device).float()
            if not torch.isfinite(probs).all() or (probs < 0).any():
                raise ValueError("class_probs must be finite and non-negative")
            out.class_probs = probs
        if features is not None:
            F = self.config.feature_dim
            if F == 0:
                raise ValueError("features given but the volume has feature_dim = 0")
            if tuple(features.shape) != (*shape, F):
                raise ValueError(f"features must be {shape + (F,)}, got {tuple(features.shape)}")
            out.features = _as_tensor(features, self.device).float()
        return out

    def _pixel_rays(self, camera: PinholeCamera, stride: int) -> torch.Tensor:
        """(H / stride, W / stride, 3) rays (z = 1) of every stride-th pixel, cached per camera."""
        rays = self._ray_cache.get((camera, stride))
        if rays is None:
            rays = camera.pixel_rays(self.device)[::stride, ::stride].contiguous()
            self._ray_cache = {(camera, stride): rays}  # one camera at a time: no unbounded growth
        return rays

    def _fusion_kernel(self) -> Any | None:
        """The compiled CPU kernel's operators, or None to use the torch implementation (other devices,
        ``use_fusion_kernel`` false, build failed)."""
        return fusion_kernel.load() if self.use_fusion_kernel and self.device.type == "cpu" else None

    def _valid_depth(self, depth: torch.Tensor) -> torch.Tensor:
        """(H, W) float32 metres -> (H, W) bool: inside ``[min_depth, max_depth]`` and not 0 (false for NaN)."""
        cfg = self.config
        return (depth >= cfg.min_depth) & (depth <= cfg.max_depth) & (depth > 0)

    def _keys_in_truncation_band(self, frame: FrameTensors, camera: PinholeCamera) -> tuple[int, torch.Tensor]:
        """Number of valid depth pixels, and the sorted unique keys of the blocks within truncation (+1 voxel)
        of the surface seen by every ``allocation_stride``-th pixel."""
        cfg = self.config
        s = cfg.allocation_stride
        band = cfg.truncation + cfg.voxel_size
        steps = int(np.ceil(2 * band / (0.5 * cfg.block_length))) + 1
        offsets = torch.linspace(-band, band, steps, device=self.device)
        # block coordinate (continuous) of the world point R @ (ray * z) + t, in block units
        scale = 1.0 / cfg.block_length
        R = torch.tensor(frame.T_world_cam[:3, :3] * scale, dtype=torch.float32, device=self.device)
        t = torch.tensor(frame.T_world_cam[:3, 3] * scale + 0.5 / cfg.block_size, dtype=torch.float32,
                         device=self.device)
        rays = self._pixel_rays(camera, s).view(-1, 3)  # (rows * cols, 3), z = 1
        kernel = self._fusion_kernel()
        if kernel is not None:
            keys, valid_pixels = kernel.band_block_keys(frame.depth, rays, R, t, offsets, s, cfg.min_depth,
                                                        cfg.max_depth)
            return valid_pixels, keys
        valid = self._valid_depth(frame.depth)
        sampled = valid[::s, ::s].reshape(-1)
        d = frame.depth[::s, ::s].reshape(-1)[sampled]
        z = (d[:, None] + offsets[None, :]).clamp_(min=1e-3)  # (P, S)
        # R @ ray, then * z, then + t, one rounding per operation, as the kernel does (no fused multiply-add)
        rays = rays[sampled]
        world_rays = rays[:, 0:1] * R[:, 0] + rays[:, 1:2] * R[:, 1] + R[:, 2]  # (P, 3)
        coords = (world_rays[:, None, :] * z[..., None]).add_(t).floor_().reshape(-1, 3).to(torch.int64)
        return int(valid.sum()), unique_coords_keys(coords)

    def _ensure_blocks(self, keys: torch.Tensor, camera_position: torch.Tensor, stats: IntegrationStats):
        """Slots for ``keys``, allocating missing blocks within the ``max_blocks`` bound."""
        kernel = self._fusion_kernel()
        if kernel is None:
            slots = self.index.lookup(keys)
        else:  # same result; torch's searchsorted splits even a few hundred keys over threads
            slots = kernel.lookup_slots(self.index.keys, self.index.slots, keys)
        missing = slots < 0
        new_keys = keys[missing]
        overflow = self.num_blocks + new_keys.numel() - self.config.max_blocks
        if overflow > 0:
            # drop the farthest blocks that this frame does not see
            seen = torch.zeros(self.num_blocks, dtype=torch.bool, device=self.device)
            seen[torch.searchsorted(self.index.keys, keys[~missing])] = True
            distance = (self.block_centers(self.index.slots) - camera_position).norm(dim=1)
            distance[seen] = -1.0
            order = torch.argsort(distance, descending=True)[:overflow]
            drop = torch.zeros_like(seen)
            drop[order[distance[order] >= 0]] = True
            stats.blocks_dropped += self._drop_blocks(drop)
            room = self.config.max_blocks - self.num_blocks
            if new_keys.numel() > room:
                # keep the new blocks nearest to the camera
                B, vs = self.config.block_size, self.config.voxel_size
                centers = (unpack_keys(new_keys).float() * B + (B - 1) / 2) * vs
                nearest = torch.argsort((centers - camera_position).norm(dim=1))[:room]
                stats.blocks_refused = new_keys.numel() - room
                keep = torch.zeros(new_keys.numel(), dtype=torch.bool, device=self.device)
                keep[nearest] = True
                refused = missing.clone()
                refused[missing] = ~keep
                new_keys = new_keys[keep]
                slots, missing, keys = slots[~refused], missing[~refused], keys[~refused]
        if new_keys.numel():
            slots[missing] = self._add_blocks(new_keys)
            stats.blocks_allocated = int(new_keys.numel())
        return slots

    def _projection(self, T_world_cam: np.ndarray, camera: PinholeCamera) -> tuple[torch.Tensor, torch.Tensor]:
        """(3, 3) ``K @ R_cam_world`` and (3,) ``K @ t_cam_world``, float32, mapping a world point ``p`` to
        ``(u*z, v*z, z) = KR @ p + Kt``: pixel coordinates of an image padded by one pixel on every side,
        plus 0.5, so truncating ``u*z / z`` to an integer gives the nearest padded pixel; ``z`` is the depth
        along the optical axis in metres."""
        T_cam_world = invert_rigid(T_world_cam)
        K = camera.K.copy()
        K[:2, 2] += 1.5  # padding (+1) and rounding (+0.5), folded into the principal point
        KR = torch.tensor(K @ T_cam_world[:3, :3], dtype=torch.float32, device=self.device)
        Kt = torch.tensor(K @ T_cam_world[:3, 3], dtype=torch.float32, device=self.device)
        return KR, Kt

    def _voxel_projection(self, slots: torch.Tensor, T_world_cam: np.ndarray, camera: PinholeCamera):
        """Projection (see :meth:`_projection`) of the voxels of the (n,) blocks ``slots``, affine per block.

        Returns (n, 3) ``(u*z, v*z, z)`` of each block's voxel 0 and (V, 3) offsets of the voxels within a
        block (storage order): voxel l of block b projects to ``block[b] + offsets[l]``.
        """
        cfg = self.config
        KR, Kt = self._projection(T_world_cam, camera)
        # K @ (R @ (origin + offset) + t) = (K @ R @ origin + K @ t) + K @ R @ offset
        origins = self.block_coords[slots].float() * (cfg.block_size * cfg.voxel_size)  # (n, 3)
        return _rotate(origins, KR) + Kt, _rotate(self._local_offsets * cfg.voxel_size, KR)

    def _update_voxels(self, slots: torch.Tensor, frame: FrameTensors, camera: PinholeCamera,
                       geometry: bool = True, feature_range: float | None = None) -> int:
        """Projective TSDF/color/semantic/feature update of every voxel of the blocks ``slots``.

        ``geometry`` false leaves TSDF, weight, color and semantics alone (no depth). Features go to every
        voxel projecting into the image with ``min_depth <= z <= feature_range`` (default ``max_depth``).
        Returns the number of voxels whose TSDF (or, without depth, features) changed.
        """
        cfg = self.config
        far = cfg.max_depth if feature_range is None else feature_range
        kernel = self._fusion_kernel()
        if kernel is not None:
            KR, Kt = self._projection(frame.T_world_cam, camera)
            layers = self.layers
            updated, featured = kernel.fuse_voxels(
                slots.contiguous(), self.block_coords, KR, Kt, cfg.block_size, cfg.block_size * cfg.voxel_size,
                cfg.voxel_size, frame.depth, frame.color, frame.labels, frame.class_probs, frame.features,
                layers["tsdf"], layers["weight"], layers["color"], layers["semantic"], layers["features"],
                layers["feature_weight"], geometry, cfg.truncation, cfg.max_weight, cfg.min_depth, cfg.max_depth,
                far)
            return updated or featured

        block_proj, voxel_proj = self._voxel_projection(slots, frame.T_world_cam, camera)
        V, W = cfg.voxels_per_block, camera.width
        z = block_proj[:, 2:3] + voxel_proj[:, 2]  # (n, V)
        behind = block_proj[:, 2] + voxel_proj[:, 2].min() <= 0  # blocks reaching behind the camera
        any_behind = bool(behind.any())
        divisor = z.clamp(min=1e-6) if any_behind else z  # no NaN from 0 / 0; behind voxels masked below
        u = (block_proj[:, 0:1] + voxel_proj[:, 0]).div_(divisor).clamp_(0, W + 1.5).to(torch.int32)
        v = (block_proj[:, 1:2] + voxel_proj[:, 1]).div_(divisor).clamp_(0, camera.height + 1.5).to(torch.int32)
        # Pixels are looked up in images padded by one invalid pixel on every side, so a projection
        # clamped onto the padding reads "invalid" without separate bound checks.
        padded_pixel = torch.add(u, v, alpha=W + 2).view(-1)  # (n * V,)
        updated = 0
        if geometry:
            padded_depth = _pad(torch.where(self._valid_depth(frame.depth), frame.depth, -torch.inf), -torch.inf)
            sdf = padded_depth.view(-1).index_select(0, padded_pixel).sub_(z.view(-1))  # -inf where invalid
            update = sdf >= -cfg.truncation
            if any_behind:
                update.view(-1, V)[behind] &= z[behind] > 0
            flat = update.nonzero().squeeze(1)  # (M,) indices into the (n * V) candidates
            voxel = slots.index_select(0, flat // V) * V + flat % V  # (M,) flat pool indices
            sdf = sdf.index_select(0, flat)
            padded = padded_pixel.index_select(0, flat)  # int32: index_select takes it as is
            self._fuse_geometry_and_color(voxel, sdf, padded, frame)
            if frame.labels is not None or frame.class_probs is not None:
                near = sdf.abs() < cfg.truncation
                self._fuse_semantics(voxel[near], _unpad_index(padded[near], W), frame)
            updated = int(voxel.numel())
        if frame.features is not None:
            in_image = (u >= 1) & (u <= W) & (v >= 1) & (v <= camera.height) & (z >= cfg.min_depth) & (z <= far)
            flat = in_image.view(-1).nonzero().squeeze(1)
            voxel = slots.index_select(0, flat // V) * V + flat % V
            self._fuse_features(voxel, _unpad_index(padded_pixel.index_select(0, flat), W), frame.features)
            updated = updated or int(voxel.numel())
        return updated

    def _fuse_geometry_and_color(self, voxel, sdf, padded_pixel, frame: FrameTensors) -> None:
        cfg = self.config
        tsdf_pool = self.layers["tsdf"].view(-1)
        weight_pool = self.layers["weight"].view(-1)
        w_old = weight_pool.index_select(0, voxel)
        w_sum = w_old + 1.0
        observed = (sdf / cfg.truncation).clamp_(max=1.0)
        tsdf = tsdf_pool.index_select(0, voxel).mul_(w_old).add_(observed).div_(w_sum)
        tsdf_pool.index_copy_(0, voxel, tsdf)
        weight_pool.index_copy_(0, voxel, w_sum.clamp(max=cfg.max_weight))
        if frame.color is not None:
            color_pool = self.layers["color"].view(-1, 3)
            rgb = _padded_color(frame.color).view(-1, 3).index_select(0, padded_pixel).float()
            color = color_pool.index_select(0, voxel).mul_(w_old[:, None]).add_(rgb).div_(w_sum[:, None])
            color_pool.index_copy_(0, voxel, color)

    def _fuse_semantics(self, voxel, pixel, frame: FrameTensors) -> None:
        K = self.num_classes
        pool = self.layers["semantic"].view(-1, K)
        if frame.labels is not None:
            label = frame.labels.reshape(-1)[pixel]
            labeled = (label >= 0) & (label < K)
            voxel, label = voxel[labeled], label[labeled]
            votes = pool[voxel]
            votes[torch.arange(voxel.numel(), device=self.device), label] += 1.0
        else:
            votes = pool[voxel] + frame.class_probs.reshape(-1, K)[pixel]
        total = votes.sum(dim=1, keepdim=True)
        pool[voxel] = votes * (self.config.max_weight / total).clamp_(max=1.0)

    def _fuse_features(self, voxel, pixel, features: torch.Tensor) -> None:
        F = features.shape[-1]
        feat_pool = self.layers["features"].view(-1, F)
        weight_pool = self.layers["feature_weight"].view(-1)
        w_old = weight_pool[voxel]
        feat_pool[voxel] = (feat_pool[voxel] * w_old[:, None] + features.reshape(-1, F)[pixel]) / (w_old[:, None] + 1)
        weight_pool[voxel] = (w_old + 1).clamp_(max=self.config.max_weight)

    # ------------------------------------------------------------------ voxel access
    def voxel_indices(self, voxels: torch.Tensor, allocate: bool = False) -> torch.Tensor:
        """(N, 3) global voxel coords -> (N,) flat indices into ``layer.flatten(0, 1)`` (-1 where absent).

        With ``allocate``, missing blocks are allocated first (ValueError beyond ``max_blocks``).
        """
        B = self.config.block_size
        voxels = voxels.to(self.device, torch.int64)
        block = torch.div(voxels, B, rounding_mode="floor")
        keys = pack_coords(block)
        slots = self.index.lookup(keys)
        if allocate and (slots < 0).any():
            new_keys = torch.unique(keys[slots < 0])
            if self.num_blocks + new_keys.numel() > self.config.max_blocks:
                raise ValueError(f"writing these voxels needs {new_keys.numel()} new blocks, over max_blocks")
            self._add_blocks(new_keys)
            slots = self.index.lookup(keys)
        local = voxels - block * B
        flat = slots * self.config.voxels_per_block + (local[:, 0] * B + local[:, 1]) * B + local[:, 2]
        return torch.where(slots >= 0, flat, torch.full_like(flat, -1))

    def read_voxels(self, voxels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Layer values at (N, 3) global voxel coords; absent voxels read each layer's fill value.

        Returns ``{layer name: (N, ...) tensor}`` plus ``"allocated"``: (N,) bool.
        """
        flat = self.voxel_indices(voxels)
        allocated = flat >= 0
        out = {"allocated": allocated}
        for name, pool in self.layers.items():
            values = pool.flatten(0, 1)[flat.clamp(min=0)].clone()
            values[~allocated] = self.layer_fill[name]
            out[name] = values
        return out

    def write_voxels(self, voxels: torch.Tensor, **values: torch.Tensor) -> None:
        """Set layers at (N, 3) global voxel coords, allocating blocks as needed.

        Example: ``volume.write_voxels(coords, tsdf=t, weight=w)`` with ``t``, ``w`` of shape (N,).
        Layers not given keep their values.
        """
        unknown = set(values) - set(self.layers)
        if unknown:
            raise ValueError(f"unknown layers {sorted(unknown)}; layers are {list(self.layers)}")
        flat = self.voxel_indices(voxels, allocate=True)
        for name, value in values.items():
            pool = self.layers[name]
            pool.flatten(0, 1)[flat] = value.to(self.device, pool.dtype)

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict:
        """Everything needed to rebuild the map, as CPU tensors and plain values, blocks in key order."""
        slots = self.index.slots
        return {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "config": dataclasses.asdict(self.config),
            "class_names": list(self.class_names),
            "block_coords": unpack_keys(self.index.keys).cpu(),
            "layer_fill": dict(self.layer_fill),
            "layers": {name: tensor[slots].cpu() for name, tensor in self.layers.items()},
        }

    def save(self, path: str | Path) -> Path:
        """Write every layer to ``path`` atomically (temporary file in the same folder, fsync, rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(self.state(), f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str) -> "SemanticTSDFVolume":
        """Read a file written by :meth:`save` onto ``device``."""
        try:
            state = torch.load(Path(path), map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as err:  # torch raises several types for corrupt files
            raise ValueError(f"{path}: not a readable volume file ({err})") from None
        if not isinstance(state, dict) or state.get("format") != FILE_FORMAT:
            raise ValueError(f"{path}: not a semantic_recon_ros volume file")
        if state["version"] != FILE_VERSION:
            raise ValueError(f"{path}: volume file version {state['version']}, this code reads {FILE_VERSION}")
        volume = cls(config_from_dict(VolumeConfig, state["config"], str(path)), state["class_names"], device)
        for name, fill in state["layer_fill"].items():
            if name not in volume.layers:
                volume.add_layer(name, tuple(state["layers"][name].shape[1:]), fill)
        coords = state["block_coords"].to(volume.device)
        slots = volume._add_blocks(pack_coords(coords))
        for name, values in state["layers"].items():
            volume.layers[name][slots] = values.to(volume.device)
        if len(slots):
            volume._mark_changed(slots)  # loaded blocks are new to consumers (e.g. the completion network)
        return volume
