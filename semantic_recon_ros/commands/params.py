"""Print the parameter table (name, default, description, range) of every configuration section.

The table is generated from the core's config dataclasses, the single source of the ROS parameters,
the YAML files and the offline tools; the README embeds its output (a test keeps them equal).
"""

from __future__ import annotations

import argparse

from ..core.config_fields import parameter_rows
from ..core.mapping_node_config import MappingNodeConfig
from ..core.completion_config import CompletionConfig
from ..core.volume_config import VolumeConfig

# section name (ROS parameter prefix and YAML key; "" = top-level node parameters) -> config dataclass
SECTIONS = {
    "": MappingNodeConfig,
    "volume": VolumeConfig,
    "completion": CompletionConfig,
}


def parameter_name(section: str, name: str) -> str:
    """Full ROS parameter name of field ``name`` of ``section`` (``volume.voxel_size``, ``world_frame``)."""
    return f"{section}.{name}" if section else name


def markdown_table() -> str:
    lines = ["| parameter | default | description | range |", "|---|---|---|---|"]
    for section, cls in SECTIONS.items():
        for name, default, description, valid in parameter_rows(cls):
            shown = '""' if default == "" else default  # an empty code span would not render
            valid = valid.replace("|", "\\|")  # choices are listed as "a | b": escape the table separator
            lines.append(f"| `{parameter_name(section, name)}` | `{shown}` | {description} | {valid} |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    print(markdown_table())
    return 0
