"""Model checkpoints: one plain ``torch.save`` file that loads with ``weights_only=True``.

Contents (a dict of plain types and tensors)::

    {"state_dict": {name: tensor}, "config": {field: value}, "class_names": [str, ...],
     "voxel_size": float (metres), "truncation": float (metres), "model": "s4r" | "s4r_colorblind" | "atlas",
     "version": CHECKPOINT_VERSION,
     "calibration": {name: plain values},   # optional: see core/completion_confidence.py
     "training": {name: plain values}}      # optional: the scenes it was trained and validated on

The voxel size and truncation are the map settings the network was trained for (it sees TSDF
values normalized by the truncation, at that voxel size); :func:`load_checkpoint` refuses a
checkpoint that does not fit the map it is loaded for.

The single-view model (``"model": "single_view"``, :mod:`.single_view`: the image-to-latent network with the block
decoder it decodes through) reconstructs one image's frustum, not a map: instead of the voxel size and truncation it
stores the camera it was trained for, ``"camera": {"fx", "fy", "cx", "cy", "width", "height"}`` (pixels), and its
``config`` has the sections ``frustum``, ``autoencoder`` and ``image_to_latent``
(:class:`~.single_view.SingleViewConfig`). Loading it where a map's settings are expected fails with an error that
says so, as does loading a map model where ``expected_model="single_view"`` is asked for. ``calibration`` (how confident the network's
surface is where, fitted after training on validation scenes) is added to a saved checkpoint by
:func:`save_calibration`; ``training`` (what the network was trained and validated on, so that an evaluation
can refuse those scenes) is written by the trainer's export. The models package keeps both as plain values.
Checkpoint files are created with the usual permissions (0666 less the umask), readable by others as
installed models must be.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..camera import PinholeCamera
from ..config.fields import config_from_dict
from .atlas_net import AtlasNet
from .fast_conv import fast_cpu_path_available, set_fast_cpu_convolutions
from .model_config import AtlasNetConfig, S4RNetConfig
from .s4r_unet import S4RNet
from .single_view import BlockDecoder, ImageToLatentNet, SingleViewConfig

CHECKPOINT_VERSION = 1
CHECKPOINT_KEYS = ("state_dict", "config", "class_names", "voxel_size", "truncation", "model", "version")
SINGLE_VIEW = "single_view"
SINGLE_VIEW_KEYS = ("state_dict", "config", "class_names", "camera", "model", "version")
MAP_MODEL_KINDS = ("s4r", "s4r_colorblind", "atlas")
MODEL_KINDS = (*MAP_MODEL_KINDS, SINGLE_VIEW)
CAMERA_KEYS = ("fx", "fy", "cx", "cy", "width", "height")
MAP_SETTING_TOLERANCE = 1e-6  # relative
LIGHTNING_KEY = "pytorch-lightning_version"  # found in the training checkpoints of PyTorch Lightning


@dataclass(frozen=True)
class CheckpointInfo:
    """Everything in a checkpoint besides the weights. ``voxel_size`` and ``truncation`` are None and ``camera`` is
    set for a single-view model (and only for it)."""

    model: str
    config: S4RNetConfig | AtlasNetConfig | SingleViewConfig
    class_names: tuple[str, ...]
    voxel_size: float | None
    truncation: float | None
    version: int
    calibration: dict | None = None
    training: dict | None = None
    camera: PinholeCamera | None = None


def model_kind(model: nn.Module) -> str:
    """``"s4r"``, ``"s4r_colorblind"``, ``"atlas"`` or ``"single_view"``."""
    if isinstance(model, S4RNet):
        return "s4r" if model.config.use_color else "s4r_colorblind"
    if isinstance(model, AtlasNet):
        return "atlas"
    if isinstance(model, ImageToLatentNet):
        return SINGLE_VIEW
    raise ValueError(f"no checkpoint format for {type(model).__name__}; expected S4RNet, AtlasNet or ImageToLatentNet")


def single_view_config(model: ImageToLatentNet) -> SingleViewConfig:
    """The config of a single-view network: its frustum grid, its decoder's autoencoder and its own."""
    return SingleViewConfig(model.frustum, model.decoder.config, model.config)


def save_checkpoint(path: str | Path, model: nn.Module, class_names: Sequence[str], voxel_size: float | None = None,
                    truncation: float | None = None, training: dict | None = None,
                    camera: PinholeCamera | None = None) -> None:
    """Write ``model`` with its config and the map settings it was trained for (atomic replace); ``training``
    (plain values): the scenes it was trained and validated on. A single-view model (:class:`ImageToLatentNet`)
    takes the ``camera`` it was trained for instead of the map settings; ValueError for a missing or misplaced
    setting."""
    kind = model_kind(model)
    config = single_view_config(model) if kind == SINGLE_VIEW else model.config
    class_names = [str(name) for name in class_names]
    if len(class_names) != config.num_classes:
        raise ValueError(f"{len(class_names)} class names for a model with num_classes = {config.num_classes}")
    state = {
        "state_dict": {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()},
        "config": dataclasses.asdict(config),
        "class_names": class_names,
        "model": kind,
        "version": CHECKPOINT_VERSION,
    }
    if kind == SINGLE_VIEW:
        if camera is None or voxel_size is not None or truncation is not None:
            raise ValueError("a single-view model is saved with the camera it was trained for, and no voxel size or "
                             "truncation")
        state["camera"] = {key: getattr(camera, key) for key in CAMERA_KEYS}
    else:
        if camera is not None:
            raise ValueError(f"a {kind} model is saved with the map settings it was trained for, not a camera")
        if voxel_size is None or truncation is None or not (voxel_size > 0 and truncation > 0):
            raise ValueError(f"voxel_size and truncation must be positive, got {voxel_size}, {truncation}")
        state.update(voxel_size=float(voxel_size), truncation=float(truncation))
    if training is not None:
        state["training"] = training
    _atomic_save(state, Path(path))


def save_calibration(path: str | Path, calibration: dict) -> None:
    """Store ``calibration`` (plain values) in the checkpoint ``path``, replacing any it had; the weights and
    everything else stay as they are (atomic replace)."""
    _save_entry(Path(path), "calibration", calibration)


def save_training_record(path: str | Path, training: dict) -> None:
    """Store ``training`` (plain values: the scenes the network was trained and validated on) in the checkpoint
    ``path``, replacing any it had; the weights and everything else stay as they are (atomic replace)."""
    _save_entry(Path(path), "training", training)


def _save_entry(path: Path, key: str, value: dict) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    _check_contents(path, state)
    state[key] = value
    _check_contents(path, state)
    _atomic_save(state, path, mode=path.stat().st_mode & 0o777)


def _atomic_save(state: dict, path: Path, mode: int | None = None) -> None:
    """``torch.save`` into a temporary file beside ``path``, renamed over it; permissions ``mode`` when given, else
    those of any new file (0666 less the umask)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp_name = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    handle = os.open(temp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as f:
            torch.save(state, f)
        if mode is not None:
            os.chmod(temp_name, mode)
        os.replace(temp_name, path)
    except BaseException:
        os.unlink(temp_name)
        raise


def load_checkpoint(path: str | Path, device: torch.device | str, expected_class_names: Sequence[str] | None = None,
                    expected_voxel_size: float | None = None, expected_truncation: float | None = None,
                    fast_cpu: bool = True, expected_model: str | None = None) -> tuple[nn.Module, CheckpointInfo]:
    """Rebuild the model of a checkpoint on ``device``, in eval mode.

    Raises FileNotFoundError for a missing file and ValueError naming the file when it is not a
    readable checkpoint (corrupted, missing keys, wrong version, weights that do not fit the config)
    or does not fit the map (``expected_*`` given and different; voxel sizes and truncations are
    compared with a relative tolerance of 1e-6; a single-view model fits no map) or is not of the
    ``expected_model`` kind. With ``fast_cpu`` the 3D convolutions of the map models use the
    oneDNN path (:mod:`.fast_conv`) when this build has it; it only acts on CPU tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - unpickling a foreign file raises about anything
        raise ValueError(f"{path}: not a readable checkpoint ({_load_failure(err)})") from None
    info = _check_contents(path, state)
    if expected_model is not None and info.model != expected_model:
        raise ValueError(f"{path}: a {info.model!r} checkpoint ({_purpose(info.model)}), not a {expected_model!r} "
                         f"one ({_purpose(expected_model)})")
    _check_fits_map(path, info, expected_class_names, expected_voxel_size, expected_truncation)
    try:
        model = _build(info)
    except ValueError as err:
        raise ValueError(f"{path}: the {info.model} config does not make a network: {err}") from None
    try:
        model.load_state_dict(state["state_dict"], strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not fit the {info.model} config {info.config}: {err}") from None
    model = model.to(device).eval()
    if info.model != SINGLE_VIEW and fast_cpu and fast_cpu_path_available():
        set_fast_cpu_convolutions(model, True)
    return model, info


def _build(info: CheckpointInfo) -> nn.Module:
    if info.model == SINGLE_VIEW:
        config = info.config
        return ImageToLatentNet(config.image_to_latent, config.frustum, BlockDecoder(config.autoencoder))
    return S4RNet(info.config) if info.model in ("s4r", "s4r_colorblind") else AtlasNet(info.config)


def _purpose(kind: str) -> str:
    return {"s4r": "completes a depth-fused RGB-D map", "s4r_colorblind": "completes a depth-fused RGB-D map",
            "atlas": "reconstructs a map from posed color images (RGB-only mapping)",
            SINGLE_VIEW: "reconstructs one image's frustum: semantic-recon single-view"}.get(kind, "unknown")


def _load_failure(err: Exception) -> str:
    """One line on why ``torch.load(weights_only=True)`` failed, without PyTorch's advice to load the file with
    ``weights_only=False`` (which would run any code the file holds)."""
    foreign = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
    if foreign:
        return (f"it holds Python objects ({foreign.group(1)}) that a plain checkpoint does not; a training "
                "checkpoint must be exported first")
    unpickler = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(err))
    lines = str(err).strip().splitlines()
    reason = unpickler.group(1) if unpickler else lines[0] if lines else ""
    return f"{type(err).__name__}: {reason[:160]}" if reason else type(err).__name__


def _check_contents(path: Path, state: object) -> CheckpointInfo:
    if not isinstance(state, dict):
        raise ValueError(f"{path}: checkpoint must be a dict, got {type(state).__name__}")
    kind = state.get("model")
    missing = [key for key in (SINGLE_VIEW_KEYS if kind == SINGLE_VIEW else CHECKPOINT_KEYS) if key not in state]
    if missing and LIGHTNING_KEY in state:
        raise ValueError(f"{path}: a training (Lightning) checkpoint, not an inference checkpoint: export it first")
    if missing:
        raise ValueError(f"{path}: checkpoint lacks keys {missing} (has {sorted(state)})")
    if state["version"] != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {state['version']!r}, this code reads {CHECKPOINT_VERSION}")
    if kind not in MODEL_KINDS:
        raise ValueError(f"{path}: unknown model {kind!r}; known: {MODEL_KINDS}")
    for key in ("calibration", "training"):
        if state.get(key) is not None and not isinstance(state[key], dict):
            raise ValueError(f"{path}: checkpoint {key} must be a dict, got {type(state[key]).__name__}")
    if kind == SINGLE_VIEW:
        return _single_view_info(path, state)
    config_class = AtlasNetConfig if kind == "atlas" else S4RNetConfig
    try:
        config = config_from_dict(config_class, state["config"], source=str(path))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: invalid {config_class.__name__}: {err}") from None
    if kind != "atlas" and config.use_color != (kind == "s4r"):
        raise ValueError(f"{path}: model {kind!r} contradicts config use_color = {config.use_color}")
    class_names = tuple(state["class_names"])
    if len(class_names) != config.num_classes:
        raise ValueError(f"{path}: {len(class_names)} class names but num_classes = {config.num_classes}")
    return CheckpointInfo(kind, config, class_names, float(state["voxel_size"]), float(state["truncation"]),
                          int(state["version"]), state.get("calibration"), state.get("training"))


def _single_view_info(path: Path, state: dict) -> CheckpointInfo:
    config = SingleViewConfig.from_dict(state["config"], source=str(path))
    class_names = tuple(state["class_names"])
    if len(class_names) != config.num_classes:
        raise ValueError(f"{path}: {len(class_names)} class names but autoencoder.num_classes = {config.num_classes}")
    camera = state["camera"]
    if not isinstance(camera, dict) or set(camera) != set(CAMERA_KEYS):
        raise ValueError(f"{path}: the camera must have the keys {list(CAMERA_KEYS)}, got {camera!r}")
    try:
        camera = PinholeCamera(*(float(camera[key]) for key in CAMERA_KEYS[:4]), int(camera["width"]),
                               int(camera["height"]))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: invalid camera: {err}") from None
    return CheckpointInfo(SINGLE_VIEW, config, class_names, None, None, int(state["version"]),
                          state.get("calibration"), state.get("training"), camera)


def _check_fits_map(path: Path, info: CheckpointInfo, class_names: Sequence[str] | None, voxel_size: float | None,
                    truncation: float | None) -> None:
    if class_names is not None and tuple(class_names) != info.class_names:
        raise ValueError(f"{path}: trained for classes {list(info.class_names)}, the map uses {list(class_names)}")
    if info.model == SINGLE_VIEW and (voxel_size is not None or truncation is not None):
        raise ValueError(f"{path}: a 'single_view' checkpoint ({_purpose(SINGLE_VIEW)}) has no voxel size or "
                         "truncation: it cannot complete or reconstruct a map")
    for name, expected, actual in (("voxel size", voxel_size, info.voxel_size),
                                   ("truncation", truncation, info.truncation)):
        if expected is not None and not math.isclose(expected, actual, rel_tol=MAP_SETTING_TOLERANCE):
            raise ValueError(f"{path}: trained for {name} {actual} m, the map uses {expected} m")
