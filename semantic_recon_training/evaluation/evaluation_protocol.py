"""The evaluation protocol: held-out scenes, which of their frames form the input scan, which are held-out views.

As in training (:mod:`..data.chunk_extraction`; both draw through :mod:`..data.input_scan`), a seeded random
``input_fraction`` of a sequence's frames is fused into the incomplete input volume (same seed, same draw).
The frames left out are the held-out views the methods are rendered into. Synthetic held-out rooms are
generated from their seed (seeds 900-909 are reserved for evaluation and never trained on) and cached:
``<cache>/synthetic/room-<seed>-<frames>f-<width>x<height>-<voxel mm>mm/``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from semantic_recon_ros.core.config.fields import check_ranges, parameter
from semantic_recon_ros.core.datasets import FrameSequence, open_sequence
from semantic_recon_ros.core.synthetic import (DEFAULT_CAMERA, SyntheticGroundTruth, load_ground_truth,
                                               write_synthetic_scene)
from semantic_recon_ros.core.synthetic.scene_writer import GROUND_TRUTH_DIR, SCENE_FILE
from semantic_recon_ros.core.mapper import MapFrame, Mapper
from semantic_recon_ros.core.config.volume import VolumeConfig

from ..data.input_scan import fusion_volume_config, input_frame_mask
from ..data.pseudo_labels import LabelSource, sequence_key


@dataclass
class EvaluationProtocol:
    """How held-out scenes are scanned, fused, rendered and scored."""

    voxel_size: float = parameter(0.04, "Voxel edge in metres; the checkpoint must be trained for it.", 0.005, 0.5)
    truncation_voxels: float = parameter(4.0, "TSDF truncation in voxels.", 1.0, 16.0)
    block_size: int = parameter(8, "Block edge of the fusion volumes, in voxels.", 2, 32)
    min_depth: float = parameter(0.1, "Depth readings closer than this (metres) are ignored.", 0.0, 100.0)
    max_depth: float = parameter(5.0, "Depth readings farther than this (metres) are ignored.", 0.01, 100.0)
    synthetic_frames: int = parameter(60, "Frames rendered along each synthetic room's camera loop.", 2, 100_000)
    image_width: int = parameter(320, "Width of the rendered synthetic frames (pixels).", 16, 4096)
    image_height: int = parameter(240, "Height of the rendered synthetic frames (pixels).", 16, 4096)
    seven_scenes_stride: int = parameter(10, "Use every n-th frame of a 7-Scenes sequence.", 1, 10_000)
    held_out_range: tuple = parameter(
        (500, 600), "Real sequences: held-out views are taken from frames [first, last) (not trained on).")
    input_fraction: float = parameter(0.5, "Fraction of the frames fused into the input scan.", 0.01, 0.99)
    seed: int = parameter(0, "Seed of the input frame subset (as ChunkExtractionConfig.seed).", 0, None)
    views_per_scene: int = parameter(10, "Held-out views rendered per scene (evenly spread).", 1, 10_000)
    view_downscale: int = parameter(2, "Held-out views are scored at the frame resolution divided by this.", 1, 64)
    min_label_probability: float = parameter(
        0.5, "Pseudo-labels: pixels whose best class is less likely are unlabeled.", 0.0, 1.0)
    occupancy: str = parameter("surface", "Occupied voxels: the one-voxel surface shell (S4R / SG-NN).",
                               choices=("surface", "negative_band"))
    mesh_sample_spacing: float = parameter(0.02, "Mesh metrics sample surface points this far apart (metres).",
                                           0.001, 1.0)
    max_mesh_samples: int = parameter(1_000_000, "At most this many surface points per mesh.", 1000, None)
    fscore_threshold: float = parameter(0.05, "Distance (metres) within which mesh points match.", 0.001, 1.0)

    def __post_init__(self) -> None:
        self.held_out_range = tuple(int(n) for n in self.held_out_range)
        check_ranges(self)
        if len(self.held_out_range) != 2 or not 0 <= self.held_out_range[0] < self.held_out_range[1]:
            raise ValueError(f"EvaluationProtocol.held_out_range must be [first, last) frames, "
                             f"got {self.held_out_range}")
        if self.min_depth >= self.max_depth:
            raise ValueError(f"EvaluationProtocol.min_depth ({self.min_depth}) must be below max_depth "
                             f"({self.max_depth})")

    @property
    def truncation(self) -> float:
        return self.voxel_size * self.truncation_voxels

    def volume_config(self) -> VolumeConfig:
        return fusion_volume_config(self.voxel_size, self.block_size, self.truncation_voxels, self.min_depth,
                                    self.max_depth)


@dataclass
class EvaluationScene:
    """One held-out scene, split into input frames and held-out views.

    Attributes:
        name: e.g. ``room-900`` or the sequence folder name.
        source: the sequence folder.
        frames: the frames used (after striding); positions below index into it.
        is_input: (len(frames),) bool, fused into the input scan.
        views: positions of the held-out views (never input frames).
        ground_truth: synthetic ground truth, None for real sequences.
    """

    name: str
    source: Path
    frames: FrameSequence
    is_input: np.ndarray
    views: list[int]
    ground_truth: SyntheticGroundTruth | None

    def frame_index(self, position: int) -> int:
        """Index in the full sequence of frame ``position`` (the pseudo-label cache key)."""
        return int(self.frames.indices[position])


def pick_views(candidates: Sequence[int], count: int) -> list[int]:
    """At most ``count`` of the sorted ``candidates``, evenly spread over them (first and last included)."""
    candidates = sorted(int(c) for c in candidates)
    if len(candidates) <= count:
        return candidates
    return [candidates[int(round(i))] for i in np.linspace(0, len(candidates) - 1, count)]


def parse_seeds(text: str) -> list[int]:
    """``"900-904"`` / ``"900,902,905-906"`` -> sorted unique seeds; ValueError naming the bad part."""
    seeds: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                low, high = (int(n) for n in part.split("-", 1))
                if high < low:
                    raise ValueError
                seeds.update(range(low, high + 1))
            else:
                seeds.add(int(part))
        except ValueError:
            raise ValueError(f"bad seed list part {part!r} in {text!r}; expected e.g. 900-904 or 900,902") from None
    return sorted(seeds)


def synthetic_scene_dir(cache_dir: Path, seed: int, protocol: EvaluationProtocol) -> Path:
    return cache_dir / "synthetic" / (f"room-{seed}-{protocol.synthetic_frames}f-{protocol.image_width}x"
                                      f"{protocol.image_height}-{round(protocol.voxel_size * 1000)}mm")


def held_out_synthetic_scene(cache_dir: Path, seed: int, protocol: EvaluationProtocol, progress: bool = True) -> Path:
    """The folder of synthetic room ``seed`` rendered per ``protocol``, generated on first use.

    Generation writes into a temporary folder renamed when complete, so an interrupted run leaves no
    half-written scene behind.
    """
    folder = synthetic_scene_dir(cache_dir, seed, protocol)
    if (folder / GROUND_TRUTH_DIR / SCENE_FILE).is_file():
        return folder
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    camera = DEFAULT_CAMERA.scaled(protocol.image_width, protocol.image_height)
    with tqdm(total=protocol.synthetic_frames, desc=f"rendering room {seed}", unit="frame",
              disable=not progress, leave=False) as bar:
        write_synthetic_scene(partial, seed, protocol.synthetic_frames, camera=camera,
                              gt_voxel_size=protocol.voxel_size,
                              gt_truncation=protocol.truncation, on_frame=lambda index, total: bar.update())
    shutil.rmtree(folder, ignore_errors=True)  # an incomplete folder left by something else
    partial.rename(folder)
    return folder


def synthetic_evaluation_scene(folder: Path, protocol: EvaluationProtocol) -> EvaluationScene:
    """A written synthetic room: all frames, the seeded input half, held-out views among the rest."""
    truth = load_ground_truth(folder)
    frames = open_sequence(folder, "scannet").subset()
    is_input = input_frame_mask(len(frames), protocol.input_fraction, protocol.seed)
    if is_input.all():
        raise ValueError(f"{folder}: all {len(frames)} frames are input frames (input_fraction "
                         f"{protocol.input_fraction}); no held-out view is left")
    views = pick_views(np.flatnonzero(~is_input), protocol.views_per_scene)
    return EvaluationScene(f"room-{truth.scene.seed}", folder, frames, is_input, views, truth)


def real_evaluation_scene(folder: Path, protocol: EvaluationProtocol, stride: int,
                          held_out_only: bool = False) -> EvaluationScene:
    """A real sequence (e.g. 7-Scenes): every ``stride``-th frame, the seeded input subset, held-out views among
    the other frames whose sequence index lies in ``protocol.held_out_range``. With ``held_out_only`` the scene
    is only the frames in that range (RGB-only evaluation: its input frames are held back from training too)."""
    first, last = protocol.held_out_range
    frames = open_sequence(folder).subset(*((first, last) if held_out_only else (0, None)), stride=stride)
    if len(frames) < 2:
        raise ValueError(f"{folder}: {len(frames)} frames after stride {stride}; need at least 2")
    is_input = input_frame_mask(len(frames), protocol.input_fraction, protocol.seed)
    candidates = [p for p in np.flatnonzero(~is_input) if first <= frames.indices[p] < last]
    if not candidates:
        raise ValueError(f"{folder}: no frame outside the input lies in the held-out range [{first}, {last}) "
                         f"(frames {frames.indices[0]}..{frames.indices[-1]}, stride {stride})")
    return EvaluationScene(frames.name, Path(folder), frames, is_input,
                           pick_views(candidates, protocol.views_per_scene), None)


def fuse_frames(scene: EvaluationScene, positions: Sequence[int], protocol: EvaluationProtocol,
                class_names: Sequence[str], device: str, labels: LabelSource | None = None,
                progress: bool = True, description: str = "fusing") -> Mapper:
    """Fuse the frames at ``positions`` of ``scene`` (depth, color and, with ``labels``, their 2D labels)."""
    mapper = Mapper(protocol.volume_config(), class_names, device)
    key = sequence_key(scene.source)
    for position in tqdm(positions, desc=f"{description} {scene.name}", unit="frame", disable=not progress,
                         leave=False):
        frame = scene.frames[position]
        if frame.depth is None:
            raise ValueError(f"{scene.source}: frame {frame.name!r} has no depth")
        frame_labels = None if labels is None else labels.labels(key, scene.frame_index(position), frame)
        mapper.integrate(MapFrame(frame.camera, frame.T_world_cam, frame.color, frame.depth, frame_labels))
    return mapper
