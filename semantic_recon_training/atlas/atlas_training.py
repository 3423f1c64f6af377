"""``atlas-fit`` and ``atlas-export``: train the Atlas network on a run's chunk caches, and write its inference
checkpoint (what the RGB-only node loads), with the scenes it was trained and validated on.

Output folder (``trainer.output_dir``), as for S4R (:mod:`..fitting.fit`): ``checkpoints/last.ckpt`` (``--resume``
continues from it), CSV logs, ``config.yaml`` and ``loss_curves.png``.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml
from torch.utils.data import DataLoader

from semantic_recon_ros.core.models import AtlasNet, CheckpointInfo, load_checkpoint, save_checkpoint

from ..data.training_record import RecordedScene, TrainingRecord, relative_to_repo
from ..fitting.fit import LAST_CHECKPOINT, build_trainer, check_resumable
from ..fitting.loss_curves import plot_loss_curves
from .atlas_config import AtlasRunConfig, atlas_config_from_dict
from .atlas_dataset import AtlasChunkDataset
from .atlas_module import AtlasModule
from .atlas_scenes import atlas_cache_dir

MODEL_PREFIX = "model."


def _loader(dataset: AtlasChunkDataset, config: AtlasRunConfig, shuffle: bool) -> DataLoader:
    trainer = config.trainer
    generator = torch.Generator().manual_seed(trainer.seed) if shuffle else None
    return DataLoader(dataset, batch_size=trainer.batch_size, shuffle=shuffle, drop_last=shuffle,
                      num_workers=trainer.num_workers, persistent_workers=trainer.num_workers > 0, generator=generator)


def fit_atlas(config: AtlasRunConfig, resume: bool = False) -> Path:
    """Train (``resume``: continue from the last checkpoint); returns the last checkpoint's path."""
    settings = config.trainer
    checkpoint = Path(settings.output_dir) / LAST_CHECKPOINT
    if resume:
        check_resumable(checkpoint, settings)
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    pl.seed_everything(settings.seed, workers=True, verbose=False)
    data = config.data
    source = config.model.feature_source
    train = AtlasChunkDataset([atlas_cache_dir(config, name) for name in data.train_scenes()], source,
                              config.augmentation.crop_size)
    val = (AtlasChunkDataset([atlas_cache_dir(config, name) for name in data.val_scenes], source)
           if data.val_scenes else None)
    voxel_size, truncation = train.map_settings()
    module = AtlasModule(config.to_dict(), list(train.class_names), voxel_size, truncation)
    out = Path(settings.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(_plain(config.to_dict()), sort_keys=False))
    trainer = build_trainer(config)
    trainer.fit(module, train_dataloaders=_loader(train, config, True),
                val_dataloaders=_loader(val, config, False) if val is not None else None,
                ckpt_path=str(checkpoint) if resume else None)
    trainer.save_checkpoint(checkpoint)
    plot_loss_curves(out, out / "loss_curves.png")
    return checkpoint


def training_record(config: AtlasRunConfig) -> TrainingRecord:
    """The scenes an Atlas run trains and validates on."""
    data = config.data
    split = {name: "validation" if name in data.val_scenes else "train" for name in data.scene_names()}
    scenes = [RecordedScene(data.synthetic_name(seed), split[data.synthetic_name(seed)], synthetic_seed=seed)
              for seed in data.synthetic_seeds]
    for sequence in data.sequences:
        extraction = config.extraction_for(sequence.extraction)
        scenes.append(RecordedScene(sequence.name, split[sequence.name], path=relative_to_repo(sequence.path),
                                    frame_stride=extraction.frame_stride, max_frames=extraction.max_frames))
    return TrainingRecord(tuple(scenes))


def export_atlas(lightning_checkpoint: str | Path, out: str | Path, half: bool = True) -> CheckpointInfo:
    """Write the network of an :class:`.atlas_module.AtlasModule` Lightning checkpoint to ``out`` (float16 weights by
    default); returns the written checkpoint's info. FileNotFoundError / ValueError naming the file."""
    path = Path(lightning_checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"Lightning checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)  # our own file
    except Exception as err:  # noqa: BLE001 - unpickling a foreign file raises about anything
        raise ValueError(f"{path}: not a Lightning checkpoint of `atlas-fit` ({type(err).__name__})") from None
    hparams = state.get("hyper_parameters") if isinstance(state, dict) else None
    if not hparams or not {"config", "class_names", "voxel_size", "truncation"} <= set(hparams):
        raise ValueError(f"{path}: not an AtlasModule checkpoint (no run config in its hyper-parameters)")
    try:
        config = atlas_config_from_dict(dict(hparams["config"]), f"{path} hyper-parameters")
    except ValueError as err:
        raise ValueError(f"{path}: not an AtlasModule checkpoint ({err})") from None
    model = AtlasNet(config.model)
    weights = {k[len(MODEL_PREFIX):]: v for k, v in state["state_dict"].items() if k.startswith(MODEL_PREFIX)}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not fit {config.model}: {err}") from None
    if half:
        model = model.half()
    save_checkpoint(out, model, list(hparams["class_names"]), float(hparams["voxel_size"]),
                    float(hparams["truncation"]), training=training_record(config).to_dict())
    _, info = load_checkpoint(out, "cpu")  # proves the file loads as the node loads it
    return info


def _plain(value):
    """Tuples -> lists (safe YAML), recursively."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
