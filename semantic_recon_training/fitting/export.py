"""``python -m semantic_recon_training export``: a Lightning checkpoint of
:class:`~.lightning_module.CompletionModule` -> the inference checkpoint of
:func:`semantic_recon_ros.core.models.save_checkpoint` (what the node loads).

The weights are stored as float16 by default (half the size; ``load_checkpoint`` copies them into the
float32 network, a relative round-off of about 1e-3 per weight).
"""

from __future__ import annotations

from pathlib import Path

import torch

from semantic_recon_ros.core.models import CheckpointInfo, S4RNet, load_checkpoint, save_checkpoint

from .training_config import run_config_from_dict

MODEL_PREFIX = "model."


def export_checkpoint(lightning_checkpoint: str | Path, out: str | Path, half: bool = True) -> CheckpointInfo:
    """Write the network of ``lightning_checkpoint`` to ``out``; returns the written checkpoint's info.

    Raises FileNotFoundError for a missing file and ValueError naming it when it holds no CompletionModule.
    """
    path = Path(lightning_checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"Lightning checkpoint not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=False)  # our own file: Lightning stores plain dicts
    hparams = state.get("hyper_parameters") if isinstance(state, dict) else None
    if not hparams or not {"config", "class_names", "voxel_size", "truncation"} <= set(hparams):
        raise ValueError(f"{path}: not a CompletionModule checkpoint (no run config in its hyper-parameters)")
    config = run_config_from_dict(dict(hparams["config"]), f"{path} hyper-parameters")
    model = S4RNet(config.model)
    weights = {k[len(MODEL_PREFIX):]: v for k, v in state["state_dict"].items() if k.startswith(MODEL_PREFIX)}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not fit {config.model}: {err}") from None
    if half:
        model = model.half()
    save_checkpoint(out, model, list(hparams["class_names"]), float(hparams["voxel_size"]),
                    float(hparams["truncation"]))
    _, info = load_checkpoint(out, "cpu")  # proves the file loads as the node loads it
    return info
