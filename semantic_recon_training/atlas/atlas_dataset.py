"""The torch Dataset over Atlas chunk caches (:mod:`.atlas_extraction`), and the module reading a run's split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import Dataset

from .atlas_extraction import ATLAS_CHUNK_VERSION, MANIFEST_FILE, moments_from_stored, source_channels


class AtlasChunkDataset(Dataset):
    """Chunks of one or more caches as training samples for ``feature_source``.

    With ``crop_size`` every sample is a crop of that edge at a random offset (torch's generator: seeded per
    DataLoader worker by Lightning) inside its chunk, ``origin`` moved with it; 0 takes whole chunks.

    A sample holds ``features`` (C, S, S, S) float32 (the source's channels; empty for 'learned'), ``seen``
    (1, S, S, S) bool, ``target_tsdf`` (1, S, S, S) float32, ``target_observed`` (1, S, S, S) bool,
    ``target_labels`` (S, S, S) int64 (-1 none), ``origin`` (3,) float64, and the stored views: ``view_color``
    (V, 3, h, w) float in [0, 1], ``view_intrinsics`` (V, 4), ``view_T_world_cam`` (V, 4, 4).
    """

    def __init__(self, cache_dirs: Sequence[str | Path], feature_source: str, crop_size: int = 0) -> None:
        self.files: list[Path] = []
        self.manifests = []
        for cache in map(Path, cache_dirs):
            manifest_path = cache / MANIFEST_FILE
            if not manifest_path.is_file():
                raise FileNotFoundError(f"Atlas chunk cache missing: {cache}; run `python -m semantic_recon_training "
                                        "atlas-extract` first")
            manifest = json.loads(manifest_path.read_text())
            if manifest.get("version") != ATLAS_CHUNK_VERSION:
                raise ValueError(f"Atlas chunk cache {cache} has version {manifest.get('version')}, this trainer reads "
                                 f"version {ATLAS_CHUNK_VERSION}; run `python -m semantic_recon_training atlas-extract "
                                 "--overwrite`")
            self.manifests.append(manifest)
            self.files += [cache / entry["file"] for entry in manifest["chunks"]]
        if not self.manifests:
            raise ValueError("no chunk caches given")
        names = {tuple(m["class_names"]) for m in self.manifests}
        if len(names) != 1:
            raise ValueError(f"chunk caches with different class lists: {sorted(names)}")
        self.class_names = names.pop()
        self.channels = source_channels(feature_source, len(self.class_names))
        self.feature_source = feature_source
        self.crop_size = int(crop_size)

    def map_settings(self) -> tuple[float, float]:
        """(voxel size, truncation) in metres of the chunks."""
        config = self.manifests[0]["config"]
        return float(config["voxel_size"]), float(config["voxel_size"]) * float(config["truncation_voxels"])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        record = torch.load(self.files[index], map_location="cpu", weights_only=True)
        size = record["seen"].shape[-1]
        crop = self.crop_size or size
        if crop > size:
            raise ValueError(f"crop_size {crop} exceeds the cached chunks' {size} voxels")
        offset = torch.randint(0, size - crop + 1, (3,))
        box = (..., *(slice(int(o), int(o) + crop) for o in offset))
        voxel_size = self.map_settings()[0]
        return {
            "features": moments_from_stored(record["features"][self.channels][box]),
            "seen": record["seen"][box],
            "target_tsdf": record["target_tsdf"][box],
            "target_observed": record["target_observed"][box],
            "target_labels": record["target_labels"][box].long(),
            "origin": record["origin"] + offset.double() * voxel_size,
            "view_color": record["view_color"].permute(0, 3, 1, 2).float() / 255.0,
            "view_intrinsics": record["view_intrinsics"],
            "view_T_world_cam": record["view_T_world_cam"],
        }
