"""Print the parameter table (name, default, description, range) of every configuration section.

The table is generated from the config dataclasses of the node's parameter sections (the core's and the
node's own), the single source of the ROS parameters, the YAML files and the offline tools; the README
embeds its output (a test keeps them equal).
"""

from __future__ import annotations

import argparse

from ..core.config.fields import parameter_rows
from ..ros.node_config import SECTIONS, parameter_name


def markdown_table() -> str:
    lines = ["| parameter | default | description | range |", "|---|---|---|---|"]
    for section, cls in SECTIONS:
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
