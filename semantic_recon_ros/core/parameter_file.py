"""Reading config dataclasses from YAML, in the ROS 2 parameter-file layout or plain.

The same file serves the ROS node (``ros2 run ... --ros-args --params-file``) and the offline tools::

    mapping_node:            # node name (or /**)
      ros__parameters:
        volume:              # section = one config dataclass
          voxel_size: 0.04

A plain file (``volume: {voxel_size: 0.04}``) works too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml

from .config_fields import config_from_dict

T = TypeVar("T")


def read_parameters(path: str | Path) -> dict[str, Any]:
    """The parameter mapping of a YAML file: the first node's ``ros__parameters``, or the whole file."""
    path = Path(path)
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


def load_section(path: str | Path, section: str, cls: type[T], **overrides: Any) -> T:
    """Build config dataclass ``cls`` from ``section`` of the file, then apply non-None ``overrides``."""
    values = dict(read_parameters(path).get(section) or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    return config_from_dict(cls, values, f"{path} [{section}]")
