"""Print the parameter table (name, default, description, range) of every configuration section.

The table is generated from the core's config dataclasses, the single source of the ROS parameters,
the YAML files and the offline tools; the README embeds its output (a test keeps them equal).
"""

from __future__ import annotations

import argparse

from ..core.config_fields import parameter_rows
from ..core.volume_config import VolumeConfig

# section name (ROS parameter prefix and YAML key) -> config dataclass
SECTIONS = {
    "volume": VolumeConfig,
}


def markdown_table() -> str:
    lines = ["| parameter | default | description | range |", "|---|---|---|---|"]
    for section, cls in SECTIONS.items():
        for name, default, description, valid in parameter_rows(cls):
            lines.append(f"| `{section}.{name}` | `{default}` | {description} | {valid} |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    print(markdown_table())
    return 0
