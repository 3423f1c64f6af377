"""The data of single-view training: synthetic rooms rendered, every kept frame turned into an (image, frustum
target) pair, cached per room; the datasets of the two stages read those caches.

A room's cache (``<data.root>/single_view_pairs/<scene>.pt``, plain tensors, loads with ``weights_only=True``)::

    {"images": (N, 3, H, W) uint8 RGB, "tsdf": (N, D, Y, X) float16 in [-1, 1] (+ = free),
     "labels": (N, D, Y, X) int8 class (-1 none), "weights": (N, D, Y, X) float16 loss-shaping weights,
     "frames": [frame index, ...], "settings": {"camera", "frustum", "loss_shaping", "class_names"}}

The targets are the exact semantic TSDF of the room in each frame's frustum
(:func:`~semantic_recon_ros.core.models.single_view.frustum_target.frustum_ground_truth`) and the loss-shaping weights of that
TSDF (:func:`~semantic_recon_ros.core.models.single_view.loss_shaping_weights`), computed once here. A cache whose
settings differ from the run config's (another frustum grid, loss shaping, camera or class list) is made again.
At the default 64 x 48 x 64 grid a pair takes 1 MB and about half a second on one CPU thread.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from semantic_recon_ros.core.camera import PinholeCamera
from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.datasets import open_sequence
from semantic_recon_ros.core.frame import RGBDFrame
from semantic_recon_ros.core.models.single_view import (FrustumGrid, loss_shaping_weights, random_block_crops,
                                                         semantic_tsdf_channels)
from semantic_recon_ros.core.models.single_view.frustum_target import frustum_ground_truth
from semantic_recon_ros.core.synthetic import DEFAULT_CAMERA, load_ground_truth, write_synthetic_scene

from .single_view_config import SingleViewRunConfig

GROUND_TRUTH_SCENE = Path("ground_truth") / "scene.json"
TARGET_KEYS = ("tsdf", "labels", "weights")
UPRIGHTNESS_KEYS = ("gravity_cam", "camera_height")
WORLD_DOWN = torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64)  # the rooms are z-up, the floor's top at z = 0


def training_camera(config: SingleViewRunConfig) -> PinholeCamera:
    """The camera of the run's rendered rooms: the synthetic default scaled to ``data.synthetic_width x height``."""
    return DEFAULT_CAMERA.scaled(config.data.synthetic_width, config.data.synthetic_height)


def cache_settings(config: SingleViewRunConfig) -> dict:
    """What a cache's targets depend on besides the room (plain values)."""
    return {"camera": dataclasses.asdict(training_camera(config)), "frustum": dataclasses.asdict(config.frustum),
            "loss_shaping": dataclasses.asdict(config.loss_shaping), "class_names": list(load_class_set().names)}


def extract_pairs(config: SingleViewRunConfig, scene: str, device: torch.device | str = "cpu",
                  progress: bool = True) -> dict:
    """Render room ``scene`` (a ``synthetic_<seed>`` of the config; kept when already rendered) and compute the
    (image, frustum target) pair of every ``extraction.frame_stride``-th frame; returns the cache's contents."""
    data = config.data
    folder = data.scene_dir(scene)
    seed = int(scene.rsplit("_", 1)[1])
    camera = training_camera(config)
    if not (folder / GROUND_TRUTH_SCENE).is_file():
        with tqdm(total=data.synthetic_frames, desc=f"render {scene}", unit="frame", disable=not progress) as bar:
            write_synthetic_scene(folder, seed, data.synthetic_frames, camera=camera,
                                  on_frame=lambda index, total: bar.update())
    sequence, truth = open_sequence(folder), load_ground_truth(folder)
    if sequence.camera != camera:
        raise ValueError(f"{folder}: rendered with {sequence.camera}, the config's rooms are {camera}; delete it")
    grid = FrustumGrid(camera, config.frustum)
    frames = list(range(0, len(sequence), config.extraction.frame_stride))
    images, targets = [], {key: [] for key in TARGET_KEYS}
    for index in tqdm(frames, desc=f"frusta {scene}", unit="frame", disable=not progress):
        frame = sequence[index]
        target = frustum_ground_truth(grid, truth.scene, frame.T_world_cam, device)
        images.append(torch.as_tensor(frame.color).permute(2, 0, 1).contiguous())
        targets["tsdf"].append(target.tsdf.half().cpu())
        targets["labels"].append(target.labels.to(torch.int8).cpu())
        targets["weights"].append(loss_shaping_weights(target.tsdf[None], config.loss_shaping)[0].half().cpu())
    return {"images": torch.stack(images), **{key: torch.stack(value) for key, value in targets.items()},
            "frames": frames, "settings": cache_settings(config)}


def prepare_single_view_scenes(config: SingleViewRunConfig, only: list[str] | None = None, overwrite: bool = False,
                               progress: bool = True) -> dict[str, Path]:
    """Extract the run's rooms (or the ``only`` ones) whose cache is missing, stale or ``overwrite``n; returns scene
    name -> cache file. ValueError naming unknown scenes in ``only``."""
    scenes = config.data.scene_names()
    if only:
        unknown = sorted(set(only) - set(scenes))
        if unknown:
            raise ValueError(f"unknown scenes {unknown}; this config has {scenes}")
        scenes = [name for name in scenes if name in only]
    if config.trainer.num_threads:
        torch.set_num_threads(config.trainer.num_threads)
    settings = cache_settings(config)
    caches = {}
    for scene in scenes:
        path = caches[scene] = config.cache_file(scene)
        if path.is_file() and not overwrite and _cached_settings(path) == settings:
            continue
        _atomic_save(extract_pairs(config, scene, progress=progress), path)
    return caches


def _cached_settings(path: Path) -> dict | None:
    return torch.load(path, map_location="cpu", weights_only=True).get("settings")


def _atomic_save(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        torch.save(state, temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def load_pairs(config: SingleViewRunConfig, scenes: list[str]) -> dict[str, torch.Tensor]:
    """The cached pairs of ``scenes``, concatenated: images (N, 3, H, W) uint8, tsdf / weights (N, D, Y, X)
    float16, labels (N, D, Y, X) int8. FileNotFoundError / ValueError (naming the command to run) for a missing or
    stale cache."""
    settings = cache_settings(config)
    parts = []
    for scene in scenes:
        path = config.cache_file(scene)
        if not path.is_file():
            raise FileNotFoundError(f"no pairs of {scene} at {path}: run single-view-extract first")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("settings") != settings:
            raise ValueError(f"{path} was extracted with other settings than the config's (frustum grid, loss "
                             "shaping, camera or classes): run single-view-extract again")
        parts.append(state)
    return {key: torch.cat([part[key] for part in parts]) for key in ("images", *TARGET_KEYS)}


def pair_frames(config: SingleViewRunConfig, scenes: list[str]) -> Iterator[RGBDFrame]:
    """The rendered frame of every cached pair of ``scenes``, in :func:`load_pairs`' order."""
    for scene in scenes:
        sequence = open_sequence(config.data.scene_dir(scene))
        for index in torch.load(config.cache_file(scene), map_location="cpu", weights_only=True)["frames"]:
            yield sequence[index]


def camera_uprightness(config: SingleViewRunConfig, scenes: list[str]) -> dict[str, torch.Tensor]:
    """The gravity-head targets of the cached pairs of ``scenes`` (in :func:`load_pairs`' order), from the rendered
    rooms' poses: ``gravity_cam`` (N, 3) float32, the unit gravity direction in the camera (optical) frame
    (``R_world_cam^T (0, 0, -1)``: the rooms are z-up), and ``camera_height`` (N,) float32, the camera's height
    above the floor (metres; the floor's top is at z = 0)."""
    poses = torch.stack([torch.as_tensor(frame.T_world_cam, dtype=torch.float64)
                         for frame in pair_frames(config, scenes)])
    return {"gravity_cam": (poses[:, :3, :3].transpose(1, 2) @ WORLD_DOWN).float(),
            "camera_height": poses[:, 2, 3].float()}


def view_depths(config: SingleViewRunConfig, scenes: list[str]) -> dict[str, torch.Tensor]:
    """The depth images of the cached pairs of ``scenes`` (in :func:`load_pairs`' order), from the rendered rooms:
    ``depth`` (N, H, W) float32 z-depth in metres (0 = invalid), the input of a depth network
    (``image_to_latent.depth_input``)."""
    depth = torch.stack([torch.as_tensor(frame.depth, dtype=torch.float32) for frame in pair_frames(config, scenes)])
    return {"depth": torch.where(torch.isfinite(depth), depth, torch.zeros_like(depth))}


MAX_INVALID_BORDER = 0.12  # of the image size, per side
MAX_HOLE_SHARE = 0.3  # of the blob cells
HOLE_CELL = 8  # pixels per blob cell
DEPTH_NOISE = 0.01  # relative, one sigma


def degrade_depth(depth: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(H, W) exact z-depth -> the same view as a real RGB-D sensor gives it, for training a depth network: a random
    invalid (0) border up to ``MAX_INVALID_BORDER`` of the size per side (what a resampled image of another camera
    leaves), invalid blobs of ``HOLE_CELL`` pixels on up to ``MAX_HOLE_SHARE`` of the image (dark, shiny or far
    surfaces), and ``DEPTH_NOISE`` relative Gaussian noise."""
    height, width = depth.shape

    def uniform(high: float) -> float:
        return float(torch.rand((), generator=generator)) * high

    keep = torch.zeros_like(depth, dtype=torch.bool)
    top, bottom = round(uniform(MAX_INVALID_BORDER) * height), round(uniform(MAX_INVALID_BORDER) * height)
    left, right = round(uniform(MAX_INVALID_BORDER) * width), round(uniform(MAX_INVALID_BORDER) * width)
    keep[top:height - bottom, left:width - right] = True
    cells = torch.rand(-(-height // HOLE_CELL), -(-width // HOLE_CELL), generator=generator) < uniform(MAX_HOLE_SHARE)
    holes = cells.repeat_interleave(HOLE_CELL, 0).repeat_interleave(HOLE_CELL, 1)[:height, :width]
    noisy = depth * (1 + DEPTH_NOISE * torch.randn(depth.shape, generator=generator))
    return torch.where(keep & ~holes, noisy, torch.zeros_like(depth))


class FrustumPairs(Dataset):
    """Stage 2 samples: ``image`` (3, H, W) float in [0, 1], ``tsdf`` and ``weights`` (D, Y, X) float32, ``labels``
    (D, Y, X) int64, ``depth`` (H, W) float32 when ``pairs`` has it (:func:`view_depths`), and ``gravity_cam`` (3,)
    and ``camera_height`` () float32 when ``pairs`` has them (:func:`camera_uprightness`). With ``flip``, sample
    ``i`` is mirrored left-right (image and depth columns and frustum x alike; the gravity direction's x negated) on
    every second visit, decided by a per-item random draw. With ``depth_degradation`` > 0 that share of the samples'
    depth is degraded as a real sensor's (:func:`degrade_depth`)."""

    def __init__(self, pairs: dict[str, torch.Tensor], flip: bool = False, depth_degradation: float = 0.0) -> None:
        self.pairs, self.flip, self.depth_degradation = pairs, flip, depth_degradation

    def __len__(self) -> int:
        return len(self.pairs["images"])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = {"image": self.pairs["images"][index].float() / 255, "tsdf": self.pairs["tsdf"][index].float(),
                  "labels": self.pairs["labels"][index].long(), "weights": self.pairs["weights"][index].float()}
        if "depth" in self.pairs:
            sample["depth"] = self.pairs["depth"][index].float()
            if self.depth_degradation and bool(torch.rand(()) < self.depth_degradation):
                sample["depth"] = degrade_depth(sample["depth"])
        uprightness = {key: self.pairs[key][index].float() for key in UPRIGHTNESS_KEYS if key in self.pairs}
        if self.flip and bool(torch.rand(()) < 0.5):
            sample = {key: value.flip(-1) for key, value in sample.items()}
            if "gravity_cam" in uprightness:
                uprightness["gravity_cam"] = uprightness["gravity_cam"] * torch.tensor([-1.0, 1.0, 1.0])
        return sample | uprightness


class FrustumCrops(Dataset):
    """Stage 1 samples: a random ``crop_cells^3`` cube on the block grid of a random frustum of ``pairs`` (a new draw
    on every visit; ``length`` visits per epoch): ``channels`` (1 + K, c, c, c) (TSDF then class one-hot),
    ``tsdf`` and ``weights`` (c, c, c) float32, ``labels`` (c, c, c) int64."""

    def __init__(self, pairs: dict[str, torch.Tensor], crop_cells: int, block_size: int, num_classes: int,
                 length: int) -> None:
        self.pairs, self.crop_cells, self.block_size = pairs, crop_cells, block_size
        self.num_classes, self.length = num_classes, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        tsdf, labels, weights = random_block_crops([self.pairs[key] for key in TARGET_KEYS], self.crop_cells, 1,
                                                   self.block_size)
        tsdf, labels, weights = tsdf.float(), labels.long(), weights.float()
        channels = semantic_tsdf_channels(tsdf, labels, self.num_classes)
        return {"channels": channels[0], "tsdf": tsdf[0], "labels": labels[0], "weights": weights[0]}
