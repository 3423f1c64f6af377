"""The block-sparse semantic TSDF volume: the map's layers in a :class:`~.block_grid.BlockGrid`, fused frame by frame.

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

More layers can be added with ``volume.grid.add_layer`` (the completion network stores its predictions
that way); every layer is saved and loaded (:mod:`.persistence`). Every integration marks the blocks it
changed in the grid's versions (loading marks every block changed), so consumers can tell what is new.
The voxel grid convention and the in-block layout are those of :mod:`.block_grid`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from . import fusion_kernel
from .block_grid import BlockGrid
from .block_index import unique_coords_keys, unpack_keys
from .fusion_backends import BandQuery, FrameTensors, FusionBackend, KernelFusion, TorchFusion
from ..camera import PinholeCamera, check_rigid
from ..config.volume import VolumeConfig


@dataclass
class IntegrationStats:
    """What one :meth:`SemanticTSDFVolume.integrate` call did."""

    valid_pixels: int = 0
    blocks_in_view: int = 0
    blocks_allocated: int = 0
    blocks_dropped: int = 0
    blocks_refused: int = 0  # new blocks not allocated because of max_blocks
    voxels_updated: int = 0


def _as_tensor(array: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(array, torch.Tensor):
        return array.to(device).contiguous()
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def choose_fusion_backend(device: torch.device, use_kernel: bool = True) -> FusionBackend:
    """The compiled kernel on the CPU when it builds (warned once otherwise), else the torch implementation."""
    ops = fusion_kernel.load() if use_kernel and device.type == "cpu" else None
    return KernelFusion(ops) if ops is not None else TorchFusion()


class SemanticTSDFVolume:
    """Sparse voxel-block TSDF + color + semantic (+ feature) map on a torch device.

    Frames are fused by a :mod:`.fusion_backends` backend: the compiled kernel on the CPU (one pass over
    the voxels instead of ~100 tensor operations), the torch implementation on other devices or when the
    kernel cannot be built; both compute the same values. ``use_fusion_kernel = False`` forces torch.

    Args:
        config: fusion parameters.
        class_names: the semantic classes; votes are kept per class in this order.
        device: torch device for all storage and computation (e.g. ``"cuda"`` or ``"cpu"``).

    Attributes:
        grid: the block storage (layers, block index, versions, dense boxes).
        fusion: the fusion backend in use (``fusion.name``: "kernel" or "torch").
    """

    def __init__(self, config: VolumeConfig, class_names: Sequence[str], device: torch.device | str):
        self.config = config
        self.class_names = tuple(class_names)
        self.device = torch.device(device)
        self.grid = BlockGrid(config.block_size, config.max_blocks, self.device)
        V, K = config.voxels_per_block, len(self.class_names)
        for name, shape, fill in (("tsdf", (V,), 1.0), ("weight", (V,), 0.0), ("color", (V, 3), 0.0),
                                  ("semantic", (V, K), 0.0), ("features", (V, config.feature_dim), 0.0),
                                  ("feature_weight", (V,), 0.0)):
            self.grid.add_layer(name, shape, fill)
        self._ray_cache: dict[tuple[PinholeCamera, int], torch.Tensor] = {}
        self.fusion: FusionBackend = choose_fusion_backend(self.device)

    @property
    def use_fusion_kernel(self) -> bool:
        return self.fusion.name == "kernel"

    @use_fusion_kernel.setter
    def use_fusion_kernel(self, use: bool) -> None:
        self.fusion = choose_fusion_backend(self.device, use)

    @property
    def kernel_ops(self):
        """The compiled kernel's operators while the volume uses the kernel (CPU only), else None (torch path)."""
        return fusion_kernel.load() if self.use_fusion_kernel else None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_blocks(self) -> int:
        return self.grid.num_blocks

    @property
    def version(self) -> int:
        """Number of changes marked so far (see :meth:`BlockGrid.mark_changed`)."""
        return self.grid.version

    def memory_bytes(self) -> int:
        """Bytes held by the block pools (allocated capacity, not only blocks in use)."""
        return self.grid.memory_bytes()

    def block_centers(self, slots: torch.Tensor) -> torch.Tensor:
        """(N,) slots -> (N, 3) world-frame centres of those blocks in metres."""
        B, vs = self.config.block_size, self.config.voxel_size
        return (self.grid.block_coords(slots).float() * B + (B - 1) / 2) * vs

    def clear(self) -> None:
        """Forget every block (the pools keep their capacity)."""
        self.grid.clear()

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
        keys, valid_pixels = self.fusion.band_block_keys(frame, self._band_query(frame, camera), self.config)
        stats = IntegrationStats(valid_pixels=valid_pixels)
        if stats.valid_pixels == 0:
            return stats
        camera_position = torch.tensor(frame.T_world_cam[:3, 3], dtype=torch.float32, device=self.device)
        slots = self._ensure_blocks(keys, camera_position, stats)
        stats.blocks_in_view = int(slots.numel())
        stats.voxels_updated = self.fusion.fuse_voxels(self.grid, slots, frame, camera, self.config, True,
                                                       self.config.max_depth)
        self.grid.mark_changed(slots)
        if self.config.clearing_radius > 0:
            far = (self.block_centers(self.grid.slots) - camera_position).norm(dim=1) > self.config.clearing_radius
            stats.blocks_dropped += self.grid.remove(far)
        return stats

    def integrate_semantics(
        self,
        depth: np.ndarray | torch.Tensor,
        camera: PinholeCamera,
        T_world_cam: np.ndarray | torch.Tensor,
        labels: np.ndarray | torch.Tensor | None = None,
        class_probs: np.ndarray | torch.Tensor | None = None,
    ) -> IntegrationStats:
        """Fuse only the 2D labels or class probabilities of a frame whose geometry was fused before (e.g. a
        keyframe segmented later): the voxels within truncation of its depth get its votes, as :meth:`integrate`
        would give them; no block is allocated and TSDF, weight and color stay. Arguments as :meth:`integrate`
        (one of ``labels`` and ``class_probs``)."""
        if labels is None and class_probs is None:
            raise ValueError("integrate_semantics needs labels or class_probs")
        frame = self._check_inputs(depth, camera, T_world_cam, None, labels, class_probs, None)
        keys, valid_pixels = self.fusion.band_block_keys(frame, self._band_query(frame, camera), self.config)
        stats = IntegrationStats(valid_pixels=valid_pixels)
        slots = self.fusion.lookup(self.grid, keys)
        slots = slots[slots >= 0]
        stats.blocks_in_view = int(slots.numel())
        if valid_pixels and slots.numel():
            stats.voxels_updated = TorchFusion().fuse_semantics(self.grid, slots, frame, camera, self.config)
            self.grid.mark_changed(slots)
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
        keys = self.frustum_block_keys(camera, frame.T_world_cam, max_range)
        slots = self._ensure_blocks(keys, camera_position, stats)
        stats.blocks_in_view = int(slots.numel())
        stats.voxels_updated = self.fusion.fuse_voxels(self.grid, slots, frame, camera, cfg, False, max_range)
        self.grid.mark_changed(slots)
        return stats

    def frustum_block_keys(self, camera: PinholeCamera, T_world_cam: np.ndarray, max_range: float) -> torch.Tensor:
        """(N,) sorted unique keys of the blocks the camera frustum ``min_depth <= z <= max_range`` passes through
        (``T_world_cam``: (4, 4) camera-to-world pose)."""
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

    def _band_query(self, frame: FrameTensors, camera: PinholeCamera) -> BandQuery:
        """The samples of the blocks within truncation (+1 voxel) of the surface seen by every
        ``allocation_stride``-th pixel."""
        cfg = self.config
        band = cfg.truncation + cfg.voxel_size
        steps = int(np.ceil(2 * band / (0.5 * cfg.block_length))) + 1
        offsets = torch.linspace(-band, band, steps, device=self.device)
        # block coordinate (continuous) of the world point R @ (ray * z) + t, in block units
        scale = 1.0 / cfg.block_length
        R = torch.tensor(frame.T_world_cam[:3, :3] * scale, dtype=torch.float32, device=self.device)
        t = torch.tensor(frame.T_world_cam[:3, 3] * scale + 0.5 / cfg.block_size, dtype=torch.float32,
                         device=self.device)
        rays = self._pixel_rays(camera, cfg.allocation_stride).view(-1, 3)  # (rows * cols, 3), z = 1
        return BandQuery(rays, R, t, offsets, cfg.allocation_stride)

    def _ensure_blocks(self, keys: torch.Tensor, camera_position: torch.Tensor, stats: IntegrationStats):
        """Slots for ``keys``, allocating missing blocks within the ``max_blocks`` bound."""
        grid = self.grid
        slots = self.fusion.lookup(grid, keys)
        missing = slots < 0
        new_keys = keys[missing]
        overflow = self.num_blocks + new_keys.numel() - self.config.max_blocks
        if overflow > 0:
            # drop the farthest blocks that this frame does not see
            seen = torch.zeros(self.num_blocks, dtype=torch.bool, device=self.device)
            seen[grid.key_positions(keys[~missing])] = True
            distance = (self.block_centers(grid.slots) - camera_position).norm(dim=1)
            distance[seen] = -1.0
            order = torch.argsort(distance, descending=True)[:overflow]
            drop = torch.zeros_like(seen)
            drop[order[distance[order] >= 0]] = True
            stats.blocks_dropped += grid.remove(drop)
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
            slots[missing] = grid.allocate_keys(new_keys)
            stats.blocks_allocated = int(new_keys.numel())
        return slots
