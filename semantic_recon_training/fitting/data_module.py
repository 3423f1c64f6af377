"""The LightningDataModule over a run's chunk caches, split into train and validation by scene."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ..data.chunk_dataset import ChunkDataset
from .training_config import RunConfig


class ChunkDataModule(pl.LightningDataModule):
    """Training chunks of ``data.train_scenes()`` and validation chunks of ``data.val_scenes``.

    Every scene has its own cache (``data.cache_dir(scene)``, written by ``python -m semantic_recon_training
    extract``), so no chunk of a validation scene is ever seen in training. Shuffling draws from a generator
    seeded with ``trainer.seed``.
    """

    def __init__(self, config: RunConfig) -> None:
        super().__init__()
        self.config = config
        data = config.data
        self.train_dirs = [data.cache_dir(name) for name in data.train_scenes()]
        self.val_dirs = [data.cache_dir(name) for name in data.val_scenes]
        if not self.train_dirs:
            raise ValueError("the run config has no training scenes (every scene is in data.val_scenes)")
        self.train_set: ChunkDataset | None = None
        self.val_set: ChunkDataset | None = None

    def _open(self, dirs: list[Path]) -> ChunkDataset:
        missing = [str(d) for d in dirs if not (d / "manifest.json").is_file()]
        if missing:
            raise FileNotFoundError(f"chunk caches missing: {missing}; "
                                    "run `python -m semantic_recon_training extract` first")
        return ChunkDataset(dirs)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = self._open(self.train_dirs)
        if self.val_set is None and self.val_dirs:
            self.val_set = self._open(self.val_dirs)

    @property
    def class_names(self) -> tuple[str, ...]:
        self.setup()
        return self.train_set.class_names

    def map_settings(self) -> tuple[float, float]:
        """(voxel size, truncation) in metres of the training chunks (from the first cache's manifest)."""
        self.setup()
        config = self.train_set.manifests[0]["config"]
        return float(config["voxel_size"]), float(config["voxel_size"]) * float(config["truncation_voxels"])

    def _loader(self, dataset: ChunkDataset, shuffle: bool) -> DataLoader:
        trainer = self.config.trainer
        generator = torch.Generator().manual_seed(trainer.seed) if shuffle else None
        return DataLoader(dataset, batch_size=trainer.batch_size, shuffle=shuffle, drop_last=shuffle,
                          num_workers=trainer.num_workers, persistent_workers=trainer.num_workers > 0,
                          generator=generator)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        if len(self.train_set) < self.config.trainer.batch_size:
            raise ValueError(f"{len(self.train_set)} training chunks, fewer than one batch of "
                             f"{self.config.trainer.batch_size}")
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        self.setup()
        return self._loader(self.val_set, shuffle=False) if self.val_set is not None else []
