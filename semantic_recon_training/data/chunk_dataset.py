"""The on-disk chunk cache (one ``.pt`` per chunk plus ``manifest.json``) and the torch Dataset reading it.

A cache folder is written by :func:`.chunk_extraction.extract_chunks`. Each chunk file is a dict of
CPU tensors and plain values, loadable with ``torch.load(path, weights_only=True)``
(``X, Y, Z`` = chunk dims, ``V`` = views, ``h x w`` = view resolution, ``K`` = classes):

=====================  ======================  =======================================================
key                    shape / type            meaning
=====================  ======================  =======================================================
``format``/``version`` str / int               :data:`CHUNK_FORMAT`, :data:`CHUNK_VERSION`
``chunk``              (3,) int64              chunk grid coords (:mod:`.chunk_grid`)
``origin``             (3,) float64            world centre of voxel (0, 0, 0), metres
``voxel_size``         float                   metres
``truncation``         float                   metres; TSDFs are sdf / truncation in [-1, 1]
``tsdf``               (1, X, Y, Z) float32    input fusion (a random subset of the frames); 1 unobserved
``observed``           (1, X, Y, Z) bool       input voxel observed (fusion weight > 0)
``color``              (3, X, Y, Z) uint8      input fused RGB (0 unobserved)
``input_labels``       (X, Y, Z) int8          input fused 2D (pseudo-)labels: most voted class, -1 none
``target_tsdf``        (1, X, Y, Z) float32    fusion of all frames (the "more complete" target)
``target_observed``    (1, X, Y, Z) bool       its observed mask
``gt_tsdf``            (1, X, Y, Z) float32    synthetic ground truth (only when the source has it)
``gt_labels``          (X, Y, Z) int16         its class ids, -1 unlabeled (beyond the truncation)
``view_frames``        (V,) int64              frame index in the (strided) sequence
``view_overlap``       (V,) float32            overlap fraction that selected the view
``view_in_input``      (V,) bool               the frame was fused into the input
``view_depth``         (V, h, w) float32       z-depth in metres, 0 invalid
``view_color``         (V, h, w, 3) uint8      RGB
``view_labels``        (V, h, w) int16         2D (pseudo-)labels, -1 unlabeled
``view_intrinsics``    (V, 4) float64          fx, fy, cx, cy of the h x w images
``view_T_world_cam``   (V, 4, 4) float64       camera-to-world poses (optical frame)
=====================  ======================  =======================================================

:class:`ChunkDataset` turns these into training samples (float colors in [0, 1], int64 labels, flags for
the optional targets so that chunks with and without ground truth can share a batch).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import Dataset

from semantic_recon_ros.core.camera import PinholeCamera

CHUNK_FORMAT = "semantic_recon_ros/train-chunk"
CHUNK_VERSION = 2  # 2: input_labels
MANIFEST_FORMAT = "semantic_recon_ros/train-chunks"
MANIFEST_VERSION = 1
MANIFEST_FILE = "manifest.json"
# manifest config entries that must agree between caches mixed in one dataset
_SHARED_CONFIG = ("voxel_size", "truncation_voxels", "chunk_dims", "views_per_chunk")


def read_manifest(cache_dir: str | Path) -> dict:
    """The parsed ``manifest.json`` of a cache folder (FileNotFoundError / ValueError naming the file)."""
    path = Path(cache_dir) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"chunk cache manifest not found: {path}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: not a {MANIFEST_FORMAT} manifest")
    if manifest.get("version") != MANIFEST_VERSION:
        raise ValueError(f"{path}: manifest version {manifest.get('version')}, this code reads {MANIFEST_VERSION}")
    return manifest


def load_chunk(path: str | Path) -> dict:
    """Read one chunk file (``weights_only=True``); ValueError naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"chunk file not found: {path}")
    try:
        chunk = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt files
        raise ValueError(f"{path}: not a readable chunk file ({err})") from None
    if not isinstance(chunk, dict) or chunk.get("format") != CHUNK_FORMAT:
        raise ValueError(f"{path}: not a {CHUNK_FORMAT} file")
    if chunk.get("version") != CHUNK_VERSION:
        raise ValueError(f"{path}: chunk version {chunk.get('version')}, this code reads {CHUNK_VERSION}")
    return chunk


def view_cameras(intrinsics: torch.Tensor, height: int, width: int) -> list[PinholeCamera]:
    """(V, 4) fx, fy, cx, cy -> V cameras of ``height x width`` images (for the renderer)."""
    return [PinholeCamera(*(float(x) for x in row), width=int(width), height=int(height))
            for row in intrinsics.tolist()]


class ChunkDataset(Dataset):
    """Training samples from one or more chunk caches (e.g. several scenes).

    Every sample is a dict (``B`` added by the default collate):

    - ``tsdf`` (1, X, Y, Z) float32, ``observed`` (1, X, Y, Z) bool, ``color`` (3, X, Y, Z) float32 in [0, 1]:
      the network input, with ``input_labels`` (X, Y, Z) int64: the input frames' fused 2D labels (-1 none).
    - ``origin`` (3,) float64, ``voxel_size`` and ``truncation`` floats (metres), ``name`` str.
    - ``view_depth`` (V, h, w) float32, ``view_color`` (V, h, w, 3) float32 in [0, 1], ``view_labels``
      (V, h, w) int64 (-1 unlabeled), ``view_intrinsics`` (V, 4) float64, ``view_T_world_cam`` (V, 4, 4)
      float64, ``view_frames`` (V,) int64.
    - ``target_tsdf`` (1, X, Y, Z) float32 and ``target_observed`` (1, X, Y, Z) bool, ``has_target`` bool.
    - ``gt_tsdf`` (1, X, Y, Z) float32 and ``gt_labels`` (X, Y, Z) int64, ``has_gt`` bool; without ground
      truth they are filled with 1 / -1 and ``has_gt`` is False.

    Args:
        cache_dirs: one cache folder or several; they must agree on classes, voxel size, truncation,
            chunk dims and views per chunk (ValueError naming the folders otherwise).
    """

    def __init__(self, cache_dirs: str | Path | Sequence[str | Path]) -> None:
        dirs = [cache_dirs] if isinstance(cache_dirs, (str, Path)) else list(cache_dirs)
        if not dirs:
            raise ValueError("ChunkDataset needs at least one cache folder")
        self.manifests = [read_manifest(d) for d in dirs]
        first = self.manifests[0]
        for directory, manifest in zip(dirs[1:], self.manifests[1:]):
            if manifest["class_names"] != first["class_names"]:
                raise ValueError(f"{directory} has classes {manifest['class_names']}, {dirs[0]} has "
                                 f"{first['class_names']}")
            for key in _SHARED_CONFIG:
                if manifest["config"][key] != first["config"][key]:
                    raise ValueError(f"{directory} has {key} = {manifest['config'][key]}, {dirs[0]} has "
                                     f"{first['config'][key]}")
        self.class_names = tuple(first["class_names"])
        self.files = [Path(d) / entry["file"] for d, m in zip(dirs, self.manifests) for entry in m["chunks"]]
        self.names = [f"{m['sequence_key']}/{entry['file']}" for m in self.manifests for entry in m["chunks"]]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        chunk = load_chunk(self.files[index])
        dims = tuple(chunk["tsdf"].shape[1:])
        has_target = "target_tsdf" in chunk
        has_gt = "gt_tsdf" in chunk
        return {
            "name": self.names[index],
            "tsdf": chunk["tsdf"],
            "observed": chunk["observed"],
            "color": chunk["color"].to(torch.float32) / 255.0,
            "input_labels": chunk["input_labels"].to(torch.int64),
            "origin": chunk["origin"],
            "voxel_size": float(chunk["voxel_size"]),
            "truncation": float(chunk["truncation"]),
            "view_depth": chunk["view_depth"],
            "view_color": chunk["view_color"].to(torch.float32) / 255.0,
            "view_labels": chunk["view_labels"].to(torch.int64),
            "view_intrinsics": chunk["view_intrinsics"],
            "view_T_world_cam": chunk["view_T_world_cam"],
            "view_frames": chunk["view_frames"],
            "target_tsdf": chunk["target_tsdf"] if has_target else torch.ones((1, *dims)),
            "target_observed": chunk["target_observed"] if has_target else torch.zeros((1, *dims), dtype=torch.bool),
            "has_target": torch.tensor(has_target),
            "gt_tsdf": chunk["gt_tsdf"] if has_gt else torch.ones((1, *dims)),
            "gt_labels": chunk["gt_labels"].to(torch.int64) if has_gt else torch.full(dims, -1, dtype=torch.int64),
            "has_gt": torch.tensor(has_gt),
        }
