"""``python -m semantic_recon_training export``: a Lightning checkpoint of
:class:`~.lightning_module.CompletionModule` -> the inference checkpoint of
:func:`semantic_recon_ros.core.models.save_checkpoint` (what the node loads).

The weights are stored as float16 by default (half the size; ``load_checkpoint`` copies them into the
float32 network, a relative round-off of about 1e-3 per weight). The checkpoint records the scenes the network
was trained and validated on (:mod:`..data.training_record`), those of ``trainer.init_checkpoint`` included, so
that the evaluation can refuse them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from semantic_recon_ros.core.models import CheckpointInfo, S4RNet, load_checkpoint, save_checkpoint

from ..data.training_record import RecordedScene, TrainingRecord, relative_to_repo
from .training_config import run_config_from_dict

MODEL_PREFIX = "model."


def export_checkpoint(lightning_checkpoint: str | Path, out: str | Path, half: bool = True) -> CheckpointInfo:
    """Write the network of a :class:`.lightning_module.CompletionModule` checkpoint to ``out``; returns the written
    checkpoint's info (:func:`export_network`)."""
    return export_network(lightning_checkpoint, out, "a CompletionModule", "fit", run_config_from_dict, S4RNet, half)


def read_lightning_checkpoint(path: str | Path, module: str, command: str,
                              keys: tuple[str, ...] = ("config", "class_names", "voxel_size", "truncation"),
                              ) -> tuple[dict, dict]:
    """(state, hyper-parameters) of a Lightning checkpoint of ``module`` (with its article: 'a CompletionModule')
    written by the training ``command``, its hyper-parameters holding ``keys``. FileNotFoundError for a missing file,
    ValueError naming it for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Lightning checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)  # our own file: Lightning stores plain dicts
    except Exception as err:  # noqa: BLE001 - unpickling a foreign file raises about anything
        raise ValueError(f"{path}: not a Lightning checkpoint of `{command}` ({type(err).__name__})") from None
    hparams = state.get("hyper_parameters") if isinstance(state, dict) else None
    if not hparams or not set(keys) <= set(hparams):
        raise ValueError(f"{path}: not {module} checkpoint (no run config in its hyper-parameters)")
    return state, hparams


def load_module_weights(path: str | Path, network: nn.Module, state: dict, what: object) -> None:
    """The Lightning module's ``model.*`` weights of ``state`` into ``network`` (strict); ValueError naming the file
    and ``what`` (the network's config) when they do not fit."""
    weights = {k[len(MODEL_PREFIX):]: v for k, v in state["state_dict"].items() if k.startswith(MODEL_PREFIX)}
    try:
        network.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not fit {what}: {err}") from None


def export_network(lightning_checkpoint: str | Path, out: str | Path, module: str, command: str,
                   config_from_dict: Callable[[dict, str], Any], network: Callable[[Any], nn.Module],
                   half: bool = True) -> CheckpointInfo:
    """Write the network of a Lightning checkpoint of ``module`` (:func:`read_lightning_checkpoint`) to ``out``,
    rebuilt as ``network(run config .model)`` from the run config in its hyper-parameters; float16 weights with
    ``half``, and the run's :func:`training_record`. Returns the written checkpoint's info.

    Raises FileNotFoundError for a missing file and ValueError naming it when it holds no such module.
    """
    path = Path(lightning_checkpoint)
    state, hparams = read_lightning_checkpoint(path, module, command)
    try:
        config = config_from_dict(dict(hparams["config"]), f"{path} hyper-parameters")
    except ValueError as err:
        raise ValueError(f"{path}: not {module} checkpoint ({err})") from None
    model = network(config.model)
    load_module_weights(path, model, state, config.model)
    if half:
        model = model.half()
    save_checkpoint(out, model, list(hparams["class_names"]), float(hparams["voxel_size"]),
                    float(hparams["truncation"]), training=training_record(config).to_dict())
    _, info = load_checkpoint(out, "cpu")  # proves the file loads as the node loads it
    return info


def training_record(config) -> TrainingRecord:
    """The scenes a run (an S4R or Atlas run config) trains and validates on, with those of its
    ``trainer.init_checkpoint`` (marked incomplete, with a warning, when that checkpoint records none)."""
    data = config.data
    split = {name: "validation" if name in data.val_scenes else "train" for name in data.scene_names()}
    scenes = [RecordedScene(data.synthetic_name(seed), split[data.synthetic_name(seed)], synthetic_seed=seed)
              for seed in data.synthetic_seeds]
    for sequence in data.sequences:
        extraction = config.extraction_for(sequence.extraction)
        scenes.append(RecordedScene(sequence.name, split[sequence.name], path=relative_to_repo(sequence.path),
                                    frame_stride=extraction.frame_stride, max_frames=extraction.max_frames))
    record = TrainingRecord(tuple(scenes))
    if not config.trainer.init_checkpoint:
        return record
    _, start = load_checkpoint(config.trainer.init_checkpoint, "cpu", fast_cpu=False)
    if start.training is None:
        print(f"warning: trainer.init_checkpoint {config.trainer.init_checkpoint} records no training scenes: "
              "the exported checkpoint's record is incomplete", file=sys.stderr)
        return TrainingRecord(record.scenes, complete=False)
    return record.merged(TrainingRecord.from_dict(start.training))
