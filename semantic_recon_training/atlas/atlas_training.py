"""``atlas-fit`` and ``atlas-export``: train the Atlas network on a run's chunk caches, and write its inference
checkpoint (what the RGB-only node loads), with the scenes it was trained and validated on.

Output folder (``trainer.output_dir``), as for S4R (:mod:`..fitting.fit`): ``checkpoints/last.ckpt`` (``--resume``
continues from it), CSV logs, ``config.yaml`` and ``loss_curves.png``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from semantic_recon_ros.core.models import AtlasNet, CheckpointInfo

from ..fitting.export import export_network
from ..fitting.fit import train
from .atlas_config import AtlasRunConfig, atlas_config_from_dict
from .atlas_dataset import AtlasChunkDataset
from .atlas_module import AtlasModule
from .atlas_scenes import atlas_cache_dir


def _loader(dataset: AtlasChunkDataset, config: AtlasRunConfig, shuffle: bool) -> DataLoader:
    trainer = config.trainer
    generator = torch.Generator().manual_seed(trainer.seed) if shuffle else None
    return DataLoader(dataset, batch_size=trainer.batch_size, shuffle=shuffle, drop_last=shuffle,
                      num_workers=trainer.num_workers, persistent_workers=trainer.num_workers > 0, generator=generator)


def fit_atlas(config: AtlasRunConfig, resume: bool = False) -> Path:
    """Train (``resume``: continue from the last checkpoint); returns the last checkpoint's path."""
    def setup() -> tuple[AtlasModule, dict]:
        data = config.data
        source = config.model.feature_source
        train_set = AtlasChunkDataset([atlas_cache_dir(config, name) for name in data.train_scenes()], source,
                                      config.augmentation.crop_size)
        val_set = (AtlasChunkDataset([atlas_cache_dir(config, name) for name in data.val_scenes], source)
                   if data.val_scenes else None)
        voxel_size, truncation = train_set.map_settings()
        module = AtlasModule(config.to_dict(), list(train_set.class_names), voxel_size, truncation)
        return module, {"train_dataloaders": _loader(train_set, config, True),
                        "val_dataloaders": _loader(val_set, config, False) if val_set is not None else None}

    return train(config, setup, resume)


def export_atlas(lightning_checkpoint: str | Path, out: str | Path, half: bool = True) -> CheckpointInfo:
    """Write the network of an :class:`.atlas_module.AtlasModule` Lightning checkpoint to ``out`` (float16 weights by
    default); returns the written checkpoint's info. FileNotFoundError / ValueError naming the file."""
    return export_network(lightning_checkpoint, out, "an AtlasModule", "atlas-fit", atlas_config_from_dict, AtlasNet,
                          half)
