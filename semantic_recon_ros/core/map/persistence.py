"""Saving and loading a :class:`~.tsdf_volume.SemanticTSDFVolume` with every layer (predictions included).

A volume file is a plain ``torch.save`` dict (loadable with ``weights_only=True``)::

    {"format": "semantic_recon_ros/volume", "version": 1, "config": VolumeConfig fields,
     "class_names": [...], "block_coords": (n, 3) int64, "layer_fill": {name: fill},
     "layers": {name: (n, V, ...) float32}}

with blocks in key order, so the same map always gives the same file. Writes are atomic (temporary
file in the same folder, fsync, rename): a crash never leaves a half-written file in place.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from ..config.fields import config_from_dict
from ..config.volume import VolumeConfig
from .tsdf_volume import SemanticTSDFVolume

FILE_FORMAT = "semantic_recon_ros/volume"
FILE_VERSION = 1


def volume_state(volume: SemanticTSDFVolume) -> dict:
    """Everything needed to rebuild the map, as CPU tensors and plain values, blocks in key order."""
    grid = volume.grid
    slots = grid.slots
    return {
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "config": dataclasses.asdict(volume.config),
        "class_names": list(volume.class_names),
        "block_coords": grid.block_coords().cpu(),
        "layer_fill": {name: grid.layer_fill(name) for name in grid.layer_names},
        "layers": {name: grid.layer(name)[slots].cpu() for name in grid.layer_names},
    }


def atomic_torch_save(obj: object, path: str | Path) -> Path:
    """``torch.save`` into ``path`` atomically (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_volume(volume: SemanticTSDFVolume, path: str | Path) -> Path:
    """Write every layer of ``volume`` to ``path`` atomically; returns the path."""
    return atomic_torch_save(volume_state(volume), path)


def read_volume_state(path: str | Path) -> dict:
    """The checked state dict of a volume file (FileNotFoundError, or ValueError naming the file)."""
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises several types for corrupt files
        raise ValueError(f"{path}: not a readable volume file ({err})") from None
    if not isinstance(state, dict) or state.get("format") != FILE_FORMAT:
        raise ValueError(f"{path}: not a semantic_recon_ros volume file")
    if state["version"] != FILE_VERSION:
        raise ValueError(f"{path}: volume file version {state['version']}, this code reads {FILE_VERSION}")
    return state


def restore_volume(volume: SemanticTSDFVolume, state: dict, source: str = "volume file") -> None:
    """Replace the blocks of ``volume`` by those of ``state`` (from :func:`read_volume_state`), every layer.

    The state must fit the volume: same classes and the same voxel size, block size, truncation and
    feature channels (ValueError naming the difference; the volume is left unchanged). Layers the
    volume lacks (e.g. predictions) are added; layers the state lacks keep their fill value. Every
    restored block is marked changed.
    """
    saved = config_from_dict(VolumeConfig, state["config"], str(source))
    config = volume.config
    differences = [f"{name} {getattr(saved, name)} (this map: {getattr(config, name)})"
                   for name in ("voxel_size", "block_size", "truncation_voxels", "feature_dim")
                   if getattr(saved, name) != getattr(config, name)]
    if tuple(state["class_names"]) != volume.class_names:
        differences.append(f"classes {state['class_names']} (this map: {list(volume.class_names)})")
    if differences:
        raise ValueError(f"{source} does not fit this map: {'; '.join(differences)}")
    coords = state["block_coords"]
    if len(coords) > volume.grid.max_blocks:
        raise ValueError(f"{source} holds {len(coords)} blocks, more than volume.max_blocks ({volume.grid.max_blocks})")
    grid = volume.grid
    for name, fill in state["layer_fill"].items():
        if not grid.has_layer(name):
            grid.add_layer(name, tuple(state["layers"][name].shape[1:]), fill)
    grid.clear()
    slots = grid.allocate(coords.to(volume.device))
    for name, values in state["layers"].items():
        grid.layer(name)[slots] = values.to(volume.device)
    if len(slots):
        grid.mark_changed(slots)  # loaded blocks are new to consumers (e.g. the completion network)


def load_volume(path: str | Path, device: torch.device | str) -> SemanticTSDFVolume:
    """A new volume on ``device`` from a file written by :func:`save_volume` (its own config and classes)."""
    state = read_volume_state(path)
    config = config_from_dict(VolumeConfig, state["config"], str(path))
    volume = SemanticTSDFVolume(config, state["class_names"], device)
    restore_volume(volume, state, str(path))
    return volume
