"""``python -m semantic_recon_training fit``: build the Lightning Trainer of a run config and train (or resume).

Output folder (``trainer.output_dir``): ``checkpoints/last.ckpt`` (saved every
``trainer.checkpoint_every_n_steps`` steps and at the end; ``--resume`` continues from it, with the optimizer,
schedule and step), ``logs/version_<n>/metrics.csv`` (one CSV log per start, so a resumed run adds a
version), TensorBoard event files under ``tensorboard/`` when the ``tensorboard`` package imports (a one-line
note otherwise), ``config.yaml`` (the resolved run config) and, at the end, ``loss_curves.png``
(:mod:`.loss_curves`).

``--resume`` continues the step count and the ``max_time`` budget of the checkpoint (Lightning counts the time of
earlier runs); a checkpoint that has already used either is refused before anything starts, naming the override
that extends it (``--max-steps``, ``--max-time``).
"""

from __future__ import annotations

import importlib.util
import sys
from datetime import timedelta
from pathlib import Path
from typing import Callable

import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from .data_module import ChunkDataModule
from .lightning_module import CompletionModule
from .loss_curves import plot_loss_curves
from .training_config import RunConfig, TrainerConfig

LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


def last_checkpoint(config: RunConfig) -> Path:
    """Where ``fit`` keeps the checkpoint that ``--resume`` and ``export`` read."""
    return Path(config.trainer.output_dir) / LAST_CHECKPOINT


def precision_setting(trainer: TrainerConfig) -> str:
    """``trainer.precision``, with "auto" = bf16-mixed (16-mixed without bf16) on CUDA and 32-true otherwise."""
    if trainer.precision != "auto":
        return trainer.precision
    if trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def strategy_setting(trainer: TrainerConfig) -> str:
    """``trainer.strategy``, with "auto" = DDP when devices * num_nodes > 1."""
    if trainer.strategy != "auto":
        return trainer.strategy
    return "ddp" if trainer.devices * trainer.num_nodes > 1 else "auto"


def build_trainer(config: RunConfig) -> pl.Trainer:
    settings = config.trainer
    out = Path(settings.output_dir)
    loggers = [CSVLogger(out, name="logs")]
    if importlib.util.find_spec("tensorboard") is not None:
        loggers.append(TensorBoardLogger(out, name="tensorboard"))
    else:
        print("fit: logging to CSV only (pip install tensorboard for TensorBoard logs)", file=sys.stderr)
    callbacks = [
        ModelCheckpoint(dirpath=out / "checkpoints", filename="step{step:07d}", auto_insert_metric_name=False,
                        every_n_train_steps=settings.checkpoint_every_n_steps, save_top_k=1, save_last=True,
                        enable_version_counter=False),  # always last.ckpt, which --resume reads
        LearningRateMonitor(logging_interval="step"),
    ]
    if settings.progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=max(1, settings.log_every_n_steps // 2)))
    return pl.Trainer(
        accelerator=settings.accelerator, devices=settings.devices, num_nodes=settings.num_nodes,
        strategy=strategy_setting(settings), precision=precision_setting(settings),
        max_steps=settings.max_steps, max_epochs=-1, max_time=settings.max_time or None, logger=loggers, callbacks=callbacks,
        log_every_n_steps=settings.log_every_n_steps, val_check_interval=settings.val_every_n_steps,
        check_val_every_n_epoch=None, limit_val_batches=settings.limit_val_batches or 1.0,
        num_sanity_val_steps=0, gradient_clip_val=settings.gradient_clip_val or None,
        deterministic="warn" if settings.deterministic else False,
        enable_progress_bar=settings.progress_bar, default_root_dir=out)


def fit(config: RunConfig, resume: bool = False) -> Path:
    """Train the S4R network (``resume``: continue from :func:`last_checkpoint`); returns the last checkpoint's path.

    Raises FileNotFoundError when ``resume`` is set and there is no checkpoint to continue from.
    """
    def setup() -> tuple[pl.LightningModule, dict]:
        data = ChunkDataModule(config)
        voxel_size, truncation = data.map_settings()
        if abs(voxel_size - config.extraction.voxel_size) > 1e-9:
            raise ValueError(f"the chunk caches have voxel size {voxel_size} m, the config's extraction "
                             f"{config.extraction.voxel_size} m; extract again")
        return CompletionModule(config.to_dict(), list(data.class_names), voxel_size, truncation), {"datamodule": data}

    return train(config, setup, resume)


def train(config, setup: Callable[[], tuple[pl.LightningModule, dict]], resume: bool = False) -> Path:
    """The training run every trainer shares (the S4R and the Atlas run configs): threads and seed from
    ``config.trainer``, ``setup()`` -> (the LightningModule, the data arguments of ``Trainer.fit``), the resolved
    config written to ``config.yaml``, fit (``resume``: from the last checkpoint, checked first), the final
    checkpoint and the loss curves. Returns the last checkpoint's path."""
    settings = config.trainer
    checkpoint = Path(settings.output_dir) / LAST_CHECKPOINT
    if resume:
        check_resumable(checkpoint, settings)
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    pl.seed_everything(settings.seed, workers=True, verbose=False)
    module, data = setup()
    out = Path(settings.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(_plain(config.to_dict()), sort_keys=False))
    trainer = build_trainer(config)
    trainer.fit(module, **data, ckpt_path=str(checkpoint) if resume else None)
    trainer.save_checkpoint(checkpoint)  # the final step (ModelCheckpoint saves only every n steps)
    if trainer.is_global_zero:
        plot_loss_curves(out, out / "loss_curves.png")
    return checkpoint


def check_resumable(checkpoint: Path, settings: TrainerConfig) -> None:
    """FileNotFoundError when there is no ``checkpoint``; ValueError when it is no Lightning checkpoint or has
    already used the run's ``max_steps`` or ``max_time`` (Lightning would restore it and stop at once)."""
    if not checkpoint.is_file():
        raise FileNotFoundError(f"--resume: no Lightning checkpoint at {checkpoint}")
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)  # our own file
    except Exception as err:  # noqa: BLE001 - unpickling a foreign file raises about anything
        raise ValueError(f"--resume: {checkpoint} is not a Lightning checkpoint ({type(err).__name__})") from None
    if not isinstance(state, dict) or "global_step" not in state:
        raise ValueError(f"--resume: {checkpoint} is not a Lightning checkpoint (no global_step)")
    step = int(state["global_step"])
    if step >= settings.max_steps:
        raise ValueError(f"--resume: {checkpoint} is already at step {step} of trainer.max_steps "
                         f"{settings.max_steps}; train further with --max-steps N (N > {step})")
    budget = settings.max_time_seconds()
    timers = [value for key, value in state.get("callbacks", {}).items() if str(key).startswith("Timer")]
    spent = max((float(timer.get("time_elapsed", {}).get("train", 0.0)) for timer in timers), default=0.0)
    if budget is not None and spent >= budget:
        raise ValueError(f"--resume: {checkpoint} has already used {timedelta(seconds=round(spent))} of "
                         f"trainer.max_time {settings.max_time} (the budget counts earlier runs); extend it with "
                         "--max-time DD:HH:MM:SS")


def _plain(value):
    """Tuples -> lists (safe YAML), recursively."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
