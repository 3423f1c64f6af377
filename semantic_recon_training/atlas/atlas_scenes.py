"""The scenes of an Atlas run: generate its synthetic rooms, then cut every scene into an Atlas chunk cache.

Caches live in ``<data.root>/atlas_chunks/<scene>``, one per scene, so the train / validation split is by scene. A
scene whose cache has a manifest is not extracted again (``overwrite`` redoes it); generated rooms are kept, so an
interrupted preparation resumes.
"""

from __future__ import annotations

import json

from pathlib import Path

import torch

from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.segmentation import DeepLabADE20K

from ..fitting.data_sources import SceneSource, generate_synthetic_scene
from .atlas_config import AtlasRunConfig
from .atlas_extraction import ATLAS_CHUNK_VERSION, MANIFEST_FILE, extract_atlas_chunks


def atlas_cache_dir(config: AtlasRunConfig, scene: str) -> Path:
    return config.data.root_path / "atlas_chunks" / scene


def prepare_atlas_scenes(config: AtlasRunConfig, only: list[str] | None = None, overwrite: bool = False,
                         progress: bool = True) -> dict[str, Path]:
    """Generate and extract the run's scenes (or the ``only`` ones); returns scene name -> cache folder."""
    data = config.data
    scenes = {data.synthetic_name(seed): (data.scene_dir(data.synthetic_name(seed)), "auto",
                                          data.synthetic_extraction, seed) for seed in data.synthetic_seeds}
    scenes.update({s.name: (Path(s.path), s.format, s.extraction, None) for s in data.sequences})
    if only:
        unknown = sorted(set(only) - set(scenes))
        if unknown:
            raise ValueError(f"unknown scenes {unknown}; this config has {sorted(scenes)}")
        scenes = {name: scenes[name] for name in only}
    if config.trainer.num_threads:
        torch.set_num_threads(config.trainer.num_threads)
    class_names = load_class_set().names
    segmenter = None
    caches = {}
    for name, (path, format, overrides, seed) in scenes.items():
        cache = caches[name] = atlas_cache_dir(config, name)
        if cache_is_current(cache) and not overwrite:
            continue
        if seed is not None:
            generate_synthetic_scene(config, SceneSource(name, path, format, config.extraction, seed), overwrite,
                                     progress)
        segmenter = segmenter or DeepLabADE20K(data.segmenter_dir, class_names,
                                               num_threads=max(1, config.trainer.num_threads))
        manifest = extract_atlas_chunks(path, cache, segmenter, config.extraction_for(overrides, name), class_names,
                                        data.min_label_probability, format, progress)
        print(f"{name}: {len(manifest['chunks'])} chunks from {manifest['num_frames']} frames in "
              f"{manifest['seconds']['total']:.0f} s", flush=True)
    return caches


def cache_is_current(cache: Path) -> bool:
    """The chunk cache is complete (its manifest written last) and of this trainer's chunk version."""
    manifest = cache / MANIFEST_FILE
    return manifest.is_file() and json.loads(manifest.read_text()).get("version") == ATLAS_CHUNK_VERSION
