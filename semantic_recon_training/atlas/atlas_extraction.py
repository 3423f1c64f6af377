"""Cutting a posed RGB-D sequence into Atlas training chunks: features from the RGB, targets from the depth.

1. Every frame's features (RGB, viewing directions and the 2D segmenter's class probabilities, the 'deeplab' source of
   :mod:`semantic_recon_ros.core.rgb_only_features`) are back-projected along its rays up to ``max_range`` into a
   feature volume, exactly as the RGB-only node does; the 'color' source's features are a subset of these channels
   (:func:`source_channels`), so one cache serves both frozen sources.
2. Every frame's depth is fused with the segmenter's labels into the *target* volume (TSDF and fused 2D
   pseudo-labels). Depth never reaches the network's input. The fused TSDF is known only in the truncation band
   around the surface, while the network predicts every voxel a view sees, up to 3 m along the rays; with
   ``space_targets`` the rest of what depth tells is supervised too: a coarse projective TSDF with a long
   truncation (:meth:`~.atlas_config.AtlasExtractionConfig.space_volume_config`) gives voxels outside the band
   +1 where it is positive (in front of the observed depth: free space) and -1 where it is negative (behind it:
   occluded, so the field stays negative behind walls and no false shell forms at the back of the band).
3. Chunks are the cells of a block-aligned grid (``chunk_size`` voxels, spacing ``chunk_stride``) holding at least
   ``min_surface_voxels`` target surface voxels seen by some view. Each stores the chunk's dense features and
   targets, and the ``views_per_chunk`` frames that see most of its surface (RGB at ``view_downscale``, for the
   'learned' source, whose features are computed while training).
4. Chunk files ``chunk_<n>.pt`` (loadable with ``weights_only=True``), then ``manifest.json``.

Chunk file keys (S = chunk_size, C = volume channels of the 'deeplab' source, V views of h x w pixels):
``features`` (C, S, S, S) float16 means and variances of f (:func:`stored_features`; the variance is taken in float32
first: float16 means of f and f*f lose it, E[f*f] - E[f]^2 cancelling below float16's precision where views agree,
which is exactly on the surface); ``seen`` (1, S, S, S) bool (a view saw the voxel);
``target_tsdf`` (1, S, S, S) float32 (1 unobserved); ``target_observed`` (1, S, S, S) bool; ``target_labels``
(S, S, S) int8 (-1 none); ``origin`` (3,) float64 world centre of voxel (0, 0, 0); ``view_color`` (V, h, w, 3)
uint8; ``view_intrinsics`` (V, 4) fx, fy, cx, cy of the h x w views; ``view_T_world_cam`` (V, 4, 4).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from semantic_recon_ros.core.datasets import open_sequence
from semantic_recon_ros.core.map.tsdf_volume import SemanticTSDFVolume
from semantic_recon_ros.core.mapper import MapFrame, Mapper
from semantic_recon_ros.core.models import AtlasNetConfig
from semantic_recon_ros.core.models.model_config import COLOR_CHANNELS, DIRECTION_CHANNELS
from semantic_recon_ros.core.rgb_only_features import ImageFeatureExtractor, feature_map_camera
from semantic_recon_ros.core.segmentation.segmenter import Segmenter, labels_from_probs

from ..data.chunk_grid import ChunkGrid
from ..data.dense_volume import DenseVolume
from ..data.view_images import downscale_camera, pick_pixels
from .atlas_config import AtlasExtractionConfig

ATLAS_CHUNK_FORMAT = "semantic_recon_ros/atlas-chunk"
ATLAS_CHUNK_VERSION = 2  # 2: variances stored instead of means of f*f
MANIFEST_FILE = "manifest.json"
VIEW_SAMPLE_POINTS = 256  # surface voxels per chunk projected to rank the views


def stored_features(moments: torch.Tensor) -> torch.Tensor:
    """(2C, ...) float32 means of ``f`` and ``f * f`` -> (2C, ...) float16 means and variances of ``f``."""
    channels = moments.shape[0] // 2
    mean = moments[:channels]
    return torch.cat((mean, (moments[channels:] - mean * mean).clamp(min=0))).half()


def moments_from_stored(stored: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`stored_features` in float32: (2C, ...) means and variances -> means of ``f`` and ``f * f``
    (the network's input, :meth:`AtlasNet.reconstruct`)."""
    channels = stored.shape[0] // 2
    mean = stored[:channels].float()
    return torch.cat((mean, stored[channels:].float() + mean * mean))


def source_channels(source: str, num_classes: int) -> torch.Tensor:
    """Indices of a feature source's channels among the cached 'deeplab' channels ``[f, f²]``, ``f = [rgb,
    direction, probs]`` (the 'learned' source computes its own and takes none)."""
    shared = COLOR_CHANNELS + DIRECTION_CHANNELS
    image = shared + num_classes
    if source == "deeplab":
        return torch.arange(2 * image)
    if source == "color":
        return torch.cat((torch.arange(shared), image + torch.arange(shared)))
    if source == "learned":
        return torch.zeros(0, dtype=torch.int64)
    raise ValueError(f"unknown feature source {source!r}")


def _surface_chunks(target: DenseVolume, seen_voxels: torch.Tensor, grid: ChunkGrid, min_count: int) -> torch.Tensor:
    """(C, 3) chunks holding at least ``min_count`` target surface voxels that a view saw (``seen_voxels``: (N, 3)
    volume voxels)."""
    chunks, counts = grid.count(seen_voxels)
    return chunks[counts >= min_count]


def _rank_views(points: torch.Tensor, cameras, poses: np.ndarray, config: AtlasExtractionConfig) -> np.ndarray:
    """(F,) number of ``points`` (N, 3) world each frame sees within ``[min_depth, max_range]``."""
    counts = np.zeros(len(poses), dtype=np.int64)
    homogeneous = torch.cat((points, torch.ones(len(points), 1, dtype=points.dtype)), dim=1).double()
    for index, (camera, T_world_cam) in enumerate(zip(cameras, poses)):
        cam = homogeneous @ torch.from_numpy(np.linalg.inv(T_world_cam)).T
        z = cam[:, 2]
        u = camera.fx * cam[:, 0] / z + camera.cx
        v = camera.fy * cam[:, 1] / z + camera.cy
        inside = ((z > config.min_depth) & (z < config.max_range) & (u >= 0) & (u <= camera.width - 1)
                  & (v >= 0) & (v <= camera.height - 1))
        counts[index] = int(inside.sum())
    return counts


def extract_atlas_chunks(source: str | Path, cache_dir: str | Path, segmenter: Segmenter,
                         config: AtlasExtractionConfig, class_names: Sequence[str], min_label_probability: float = 0.5,
                         format: str = "auto", progress: bool = True) -> dict:
    """Write the Atlas chunk cache of one sequence (see the module docstring); returns its manifest.

    Raises ValueError for a sequence without depth or without any chunk.
    """
    start = time.perf_counter()
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    for old in cache_dir.glob("chunk_*.pt"):
        old.unlink()
    (cache_dir / MANIFEST_FILE).unlink(missing_ok=True)
    class_names = tuple(class_names)
    frames = open_sequence(source, format).subset(stride=config.frame_stride, max_frames=config.max_frames or None)
    if len(frames) == 0:
        raise ValueError(f"{source}: no frames")
    features_config = AtlasNetConfig(num_classes=len(class_names), feature_source="deeplab")
    extractor = ImageFeatureExtractor(features_config, segmenter)
    feature_volume = SemanticTSDFVolume(config.volume_config(extractor.channels), class_names, "cpu")
    target_map = Mapper(config.volume_config(), class_names)
    space_map = Mapper(config.space_volume_config(), class_names) if config.space_targets else None
    views, cameras, poses = [], [], []
    for index in tqdm(range(len(frames)), desc=f"fuse {Path(source).name}", unit="frame", disable=not progress):
        frame = frames[index]
        if frame.depth is None:
            raise ValueError(f"{source}: frame {index} has no depth; the targets of RGB-only training need it")
        probs = segmenter.predict(frame.color)
        target_map.integrate(MapFrame(frame.camera, frame.T_world_cam, frame.color, frame.depth,
                                      labels_from_probs(probs, min_label_probability)))
        if space_map is not None:
            space_map.integrate(MapFrame(frame.camera, frame.T_world_cam, frame.color, frame.depth))
        features = extractor(frame.color, frame.camera, frame.T_world_cam, probs)
        feature_volume.integrate_features(features, feature_map_camera(frame.camera), frame.T_world_cam,
                                          max_range=config.max_range)
        views.append(pick_pixels(frame.color, config.view_downscale))
        cameras.append(downscale_camera(frame.camera, config.view_downscale))
        poses.append(frame.T_world_cam)
    fused = time.perf_counter() - start

    target = DenseVolume.from_volume(target_map.volume)
    space = DenseVolume.from_volume(space_map.volume) if space_map is not None else None
    S, B = config.chunk_size, config.block_size
    if config.chunk_stride % B:
        raise ValueError(f"chunk_stride ({config.chunk_stride}) must be a multiple of block_size ({B})")
    grid = ChunkGrid((S,) * 3, (config.chunk_stride,) * 3, config.voxel_size)
    surface = target.surface_voxels()
    seen_mask = _seen(feature_volume, surface, config)
    chunks = _surface_chunks(target, surface[seen_mask], grid, config.min_surface_voxels)
    if len(chunks) == 0:
        raise ValueError(f"{source}: no chunk has {config.min_surface_voxels} target surface voxels seen by a view")
    poses_array = np.stack(poses)
    entries = []
    rng = np.random.default_rng(0)
    for number, chunk in enumerate(tqdm(chunks, desc="chunks", unit="chunk", disable=not progress)):
        first = grid.first_voxel(chunk[None])[0]
        boxes = feature_volume.grid.read_boxes(("features", "feature_weight"), (first // B)[None], (S // B,) * 3)
        crop = target.crop(first, (S,) * 3)
        if space is not None:
            _add_space_targets(crop, space, first, config.voxel_size)
        inside = ((surface >= first) & (surface < first + S)).all(dim=1)
        points = surface[inside]
        points = points[torch.from_numpy(rng.permutation(len(points))[:VIEW_SAMPLE_POINTS])]
        ranked = np.argsort(-_rank_views(points.double() * config.voxel_size, cameras, poses_array, config),
                            kind="stable")[:config.views_per_chunk]
        record = {
            "format": ATLAS_CHUNK_FORMAT, "version": ATLAS_CHUNK_VERSION,
            "origin": first.double() * config.voxel_size,
            "features": stored_features(boxes["features"][0]),
            "seen": boxes["feature_weight"][0] > 0,
            "target_tsdf": crop["tsdf"][None], "target_observed": crop["observed"][None],
            "target_labels": crop["labels"],
            "view_color": torch.from_numpy(np.stack([views[i] for i in ranked])),
            "view_intrinsics": torch.tensor([[cameras[i].fx, cameras[i].fy, cameras[i].cx, cameras[i].cy]
                                             for i in ranked], dtype=torch.float64),
            "view_T_world_cam": torch.from_numpy(poses_array[ranked]),
        }
        name = f"chunk_{number:05d}.pt"
        temporary = cache_dir / f".{name}.tmp"
        torch.save(record, temporary)
        os.replace(temporary, cache_dir / name)
        entries.append({"file": name, "chunk": chunk.tolist(), "views": [int(frames.indices[i]) for i in ranked]})
    manifest = {"format": ATLAS_CHUNK_FORMAT, "version": ATLAS_CHUNK_VERSION, "source": str(Path(source).resolve()),
                "config": dataclasses.asdict(config), "class_names": list(class_names),
                "feature_source": "deeplab", "num_frames": len(frames),
                "frame_indices": [int(i) for i in frames.indices],
                "view_size": [int(views[0].shape[1]), int(views[0].shape[0])],
                "seconds": {"fuse": round(fused, 1), "total": round(time.perf_counter() - start, 1)},
                "chunks": entries}
    temporary = cache_dir / f".{MANIFEST_FILE}.tmp"
    temporary.write_text(json.dumps(manifest, indent=1))
    os.replace(temporary, cache_dir / MANIFEST_FILE)
    return manifest


def _add_space_targets(crop: dict, space: DenseVolume, first: torch.Tensor, voxel_size: float) -> None:
    """Outside the truncation band, ``crop``'s TSDF becomes the sign of the coarse ``space`` TSDF where that is known
    (trilinear, all 8 coarse voxels observed): +1 free, -1 occluded (see the module docstring)."""
    dims = crop["tsdf"].shape
    axes = [torch.arange(n, dtype=torch.float64) for n in dims]
    index = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    tsdf, known = space.interpolate((index + first.double()) * voxel_size)
    outside = known.view(dims) & ~crop["observed"]
    crop["tsdf"][outside] = torch.where(tsdf.view(dims)[outside] < 0, -1.0, 1.0)
    crop["observed"] |= outside


def _seen(feature_volume: SemanticTSDFVolume, voxels: torch.Tensor, config: AtlasExtractionConfig) -> torch.Tensor:
    """(N,) bool: the (N, 3) volume voxels lie in a block that some view's features reached."""
    blocks = torch.div(voxels, config.block_size, rounding_mode="floor")
    return feature_volume.grid.lookup(blocks) >= 0
