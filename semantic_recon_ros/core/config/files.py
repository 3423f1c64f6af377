"""Reading config dataclasses from YAML, in the ROS 2 parameter-file layout or plain, from layered files.

The same files serve the ROS node (``ros2 run ... --ros-args --params-file base.yaml --params-file
camera.yaml``) and the offline tools::

    /**/mapping_node:        # node name (or /**)
      ros__parameters:
        volume:              # section = one config dataclass
          voxel_size: 0.04

A plain file (``volume: {voxel_size: 0.04}``) works too. Several files are layered as ROS 2 layers
them: a later file overrides single keys of an earlier one (nested sections are merged key by key),
so a camera or dataset file holds only what differs from the base ``config/mapping.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml

from .fields import config_from_dict

T = TypeVar("T")
ParameterFiles = str | Path | Sequence[str | Path]


def _file_parameters(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: invalid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    for value in data.values():
        if isinstance(value, dict) and "ros__parameters" in value:
            return value["ros__parameters"] or {}
    return data


def merge_layers(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` merged into ``base`` (neither is changed): mappings merge key by key, recursively; any other
    value of ``override`` (number, string, list, null) replaces the base's."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_layers(merged[key], value)
        else:
            merged[key] = value
    return merged


def _as_paths(paths: ParameterFiles) -> list[Path]:
    return [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]


def read_parameters(paths: ParameterFiles) -> dict[str, Any]:
    """The parameter mapping of one YAML file (its first node's ``ros__parameters``, or the whole file), or of
    several files layered in order (later files override single keys of earlier ones)."""
    merged: dict[str, Any] = {}
    for path in _as_paths(paths):
        merged = merge_layers(merged, _file_parameters(path))
    return merged


def top_level_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """The top-level (non-section) entries of a parameter mapping."""
    return {key: value for key, value in parameters.items() if not isinstance(value, dict)}


def load_section(paths: ParameterFiles, section: str, cls: type[T], **overrides: Any) -> T:
    """Build config dataclass ``cls`` from ``section`` of the (layered) files, then apply non-None ``overrides``.

    ``section`` "" reads the top-level parameters that are fields of ``cls`` (other top-level
    parameters belong to other dataclasses, e.g. the node's own settings).
    """
    parameters = read_parameters(paths)
    if section:
        values = dict(parameters.get(section) or {})
    else:
        fields = set(cls.__dataclass_fields__)
        values = {k: v for k, v in top_level_parameters(parameters).items() if k in fields}
    values.update({k: v for k, v in overrides.items() if v is not None})
    names = ", ".join(str(p) for p in _as_paths(paths))
    return config_from_dict(cls, values, f"{names} [{section or 'top level'}]")
