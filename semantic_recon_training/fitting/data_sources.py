"""The scenes of a training run: generate the synthetic rooms, then cut every scene into a chunk cache.

Each scene of :class:`~.training_config.DataConfig` (synthetic rooms ``synthetic_<seed>`` and recorded
sequences: anything ``open_sequence`` reads, i.e. 7-Scenes / TUM / ScanNet-style folders and ROS 2 bag folders,
plus ROS 1 ``.bag`` files, converted once to ROS 2 bags under ``<data.root>/converted/``) gets its own cache folder
``<data.root>/chunks/<scene>`` (``<scene>.gt2d`` for the rooms of ``data.labeled_seeds``, whose views carry their 2D
ground-truth labels), so the train / validation split is by scene. Work already done is kept:
a synthetic room whose ``ground_truth/scene.json`` exists is not rendered again and a scene whose cache has
a manifest is not extracted again (``overwrite`` redoes both), so an interrupted preparation resumes.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from rosbags.convert import convert
from tqdm import tqdm

from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.synthetic import (DEFAULT_CAMERA, DepthNoiseConfig, RenderConfig,
                                               write_synthetic_scene)

from ..data.chunk_dataset import MANIFEST_FILE
from ..data.chunk_extraction import GROUND_TRUTH_SCENE, ChunkExtractionConfig, extract_chunks
from ..data.pseudo_labels import GroundTruthLabels, LabelSource, deeplab_labels
from .training_config import RunConfig


@dataclass
class SceneSource:
    """One scene to extract: its name, sequence folder, reader format and extraction config."""

    name: str
    path: Path
    format: str
    extraction: ChunkExtractionConfig
    synthetic_seed: int | None = None
    ros1_bag: Path | None = None  # the ROS 1 bag file that ``path`` is converted from


def scene_sources(config: RunConfig) -> list[SceneSource]:
    """Every scene of the run, synthetic rooms first (their folders may not exist yet)."""
    data = config.data
    sources = [SceneSource(data.synthetic_name(seed), data.scene_dir(data.synthetic_name(seed)), "auto",
                           config.extraction_for(data.synthetic_extraction), seed)
               for seed in data.synthetic_seeds]
    for sequence in data.sequences:
        path = Path(sequence.path)
        if not path.exists():
            raise FileNotFoundError(f"training sequence {sequence.name!r} not found: {path}")
        format, ros1_bag = sequence.format, None
        if path.is_file() and path.suffix == ROS1_BAG_SUFFIX:  # converted to a ROS 2 bag folder in prepare_scenes
            path, format, ros1_bag = data.root_path / "converted" / sequence.name, "rosbag", path
        sources.append(SceneSource(sequence.name, path, format, config.extraction_for(sequence.extraction),
                                   ros1_bag=ros1_bag))
    return sources


ROS1_BAG_SUFFIX = ".bag"
ROS2_BAG_METADATA = "metadata.yaml"


def ros2_bag_of(ros1_bag: Path, out_dir: Path) -> Path:
    """The ROS 2 bag folder ``out_dir`` with the messages of the ROS 1 bag file ``ros1_bag`` (converted with
    rosbags unless ``out_dir`` already holds a bag), which ``open_sequence`` reads."""
    if (out_dir / ROS2_BAG_METADATA).is_file():
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted conversion
    convert([ros1_bag], partial, dst_storage="sqlite3", dst_version=8, compress=None, compress_mode="file",
            default_typestore=None, typestore=None, exclude_topics=[], include_topics=[], exclude_msgtypes=[],
            include_msgtypes=[])
    partial.rename(out_dir)
    return out_dir


def label_source(config: RunConfig) -> LabelSource:
    """The run's 2D labels: cached DeepLab pseudo-labels (``trainer.num_threads`` threads), or ground truth.
    (The rooms of ``data.labeled_seeds`` take ground truth for their views only: :func:`prepare_scenes`.)"""
    classes = load_class_set()
    if config.data.labels == "ground_truth":
        return GroundTruthLabels(classes.num_classes)
    return deeplab_labels(config.data.segmenter_dir, classes.names, config.data.label_cache_dir,
                          min_probability=config.data.min_label_probability,
                          num_threads=max(1, config.trainer.num_threads))


def generate_synthetic_scene(config: RunConfig, source: SceneSource, overwrite: bool = False,
                             progress: bool = True) -> Path:
    """Render synthetic room ``source.synthetic_seed`` into ``source.path`` (kept when already complete)."""
    data = config.data
    if (source.path / GROUND_TRUTH_SCENE).is_file() and not overwrite:
        return source.path
    camera = DEFAULT_CAMERA.scaled(data.synthetic_width, data.synthetic_height)
    render = RenderConfig(depth_noise=DepthNoiseConfig(enabled=data.synthetic_depth_noise))
    with tqdm(total=data.synthetic_frames, desc=f"render {source.name}", unit="frame", disable=not progress) as bar:
        return write_synthetic_scene(source.path, source.synthetic_seed, data.synthetic_frames, camera=camera,
                                     gt_voxel_size=config.extraction.voxel_size, render_config=render,
                                     on_frame=lambda index, total: bar.update())


def prepare_scenes(config: RunConfig, only: list[str] | None = None, overwrite: bool = False,
                   device: torch.device | str = "cpu", progress: bool = True) -> dict[str, Path]:
    """Generate and extract the run's scenes (or the ``only`` ones); returns scene name -> cache folder.

    Raises ValueError naming unknown scenes in ``only``.
    """
    sources = scene_sources(config)
    if only:
        unknown = sorted(set(only) - {s.name for s in sources})
        if unknown:
            raise ValueError(f"unknown scenes {unknown}; this config has {[s.name for s in sources]}")
        sources = [s for s in sources if s.name in only]
    labels = None
    ground_truth = GroundTruthLabels(load_class_set().num_classes)
    caches = {}
    for source in sources:
        cache = config.data.cache_dir(source.name)
        caches[source.name] = cache
        if (cache / MANIFEST_FILE).is_file() and not overwrite:
            continue
        if source.synthetic_seed is not None:
            generate_synthetic_scene(config, source, overwrite, progress)
        if source.ros1_bag is not None:
            ros2_bag_of(source.ros1_bag, source.path)
        labels = labels or label_source(config)
        mixed = config.data.labels == "segmenter" and config.data.view_labels(source.name) == "ground_truth"
        view_labels = ground_truth if mixed else None  # SSR's labeled rooms: ground-truth views, segmenter input
        summary = extract_chunks(source.path, cache, labels, source.extraction, load_class_set().names,
                                 format=source.format, device=device, overwrite=True, progress=progress,
                                 view_labels=view_labels)
        print(f"{source.name}{' (2D ground-truth views)' if view_labels is not None else ''}: "
              f"{summary.num_chunks} chunks from {summary.num_frames} frames "
              f"({summary.num_input_frames} fused into the input), "
              + ", ".join(f"{k} {v:.0f} s" for k, v in summary.seconds.items()), flush=True)
    return caches
