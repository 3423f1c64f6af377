"""The layered parameter files: config/mapping.yaml is the base, config/cameras/, config/datasets/ and config/modes/
hold differences.

The base sets every declared parameter (the fields of ``SECTIONS`` in semantic_recon_ros/ros/node_config.py) to its
default. Every other file holds only keys of the base, each set to a value other than the base's and commented, so
that layering it over the base (as ``--params-file base --params-file diff`` or the launch file's
``camera_params_file`` do) gives valid configs that differ exactly where the file says.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from support.paths import REPO
from semantic_recon_ros.core.config.fields import parameter_rows
from semantic_recon_ros.core.config.files import load_section, read_parameters
from semantic_recon_ros.ros.node_config import SECTIONS, parameter_name


BASE = REPO / "config" / "mapping.yaml"
DIFF_FILES = [path for folder in ("cameras", "datasets", "modes")
              for path in sorted((REPO / "config" / folder).glob("*.yaml"))]
NODE_KEY = "/**/mapping_node"  # the node name, in any namespace


def flatten(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def declared_defaults() -> dict:
    """{full parameter name: default} of every field of every section, as the node declares them."""
    return {parameter_name(section, name): default
            for section, cls in SECTIONS for name, default, *_ in parameter_rows(cls)}


def file_values(path: Path) -> dict:
    """The flattened parameters of one file in the ROS 2 layout, checking that layout on the way."""
    data = yaml.safe_load(path.read_text())
    assert list(data) == [NODE_KEY], f"{path.name}: expected the single key {NODE_KEY!r}"
    assert list(data[NODE_KEY]) == ["ros__parameters"], f"{path.name}: expected only ros__parameters"
    return flatten(data[NODE_KEY]["ros__parameters"])


def test_sections_declare_each_parameter_once():
    names = [parameter_name(section, name) for section, cls in SECTIONS for name, *_ in parameter_rows(cls)]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_base_file_sets_every_declared_parameter_to_its_default():
    values, table = file_values(BASE), declared_defaults()
    assert sorted(values) == sorted(table)
    assert values == table
    for name, default in table.items():
        assert type(values[name]) is type(default), f"{name}: YAML type {type(values[name]).__name__}"


def test_camera_and_dataset_files_exist():
    names = {str(p.relative_to(REPO / "config")) for p in DIFF_FILES}
    assert {"cameras/realsense_d435.yaml", "datasets/7scenes_bag.yaml", "modes/rgb_only.yaml"} <= names


@pytest.mark.parametrize("path", DIFF_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_difference_file_overrides_only_base_keys_with_other_values(path):
    base, diff = file_values(BASE), file_values(path)
    assert diff, f"{path.name} sets nothing"
    assert set(diff) <= set(base), f"{path.name}: keys not in the base: {sorted(set(diff) - set(base))}"
    for name, value in diff.items():
        # rclpy refuses an int for a declared double (and vice versa): the type must be the declared one
        assert type(value) is type(base[name]), f"{path.name}: {name} is {type(value).__name__}"
        assert value != base[name], f"{path.name}: {name} = {value!r} repeats the base value"


@pytest.mark.parametrize("path", DIFF_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_value_of_a_difference_file_has_a_comment(path):
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^\s+[A-Za-z_]\w*:\s*[^\s#]", line):  # a key with a value (not a section, not ros__parameters)
            assert lines[number - 1].strip().startswith("#"), f"{path.name}:{number + 1}: no comment above {line!r}"


@pytest.mark.parametrize("path", DIFF_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_layering_over_the_base_gives_valid_configs_with_the_file_values(path):
    base, diff = file_values(BASE), file_values(path)
    assert flatten(read_parameters([BASE, path])) == {**base, **diff}
    for section, cls in SECTIONS:
        config = load_section([BASE, path], section, cls)  # builds (and so validates) the dataclass
        for field in dataclasses.fields(cls):
            name = parameter_name(section, field.name)
            assert getattr(config, field.name) == diff.get(name, base[name]), name


@pytest.mark.parametrize("path", DIFF_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_ros_applies_the_difference_file_over_the_base(path):
    """rcl itself layers ``--params-file base --params-file diff``: the node's declared values are the file's."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.node import Node

    from semantic_recon_ros.ros.node_parameters import declare_sections

    base, diff = file_values(BASE), file_values(path)
    context = rclpy.Context()
    rclpy.init(args=["--ros-args", "--params-file", str(BASE), "--params-file", str(path)], context=context)
    try:
        node = Node("mapping_node", namespace="/some/namespace", context=context)
        try:
            configs = declare_sections(node)
            for section, cls in SECTIONS:
                for field in dataclasses.fields(cls):
                    name = parameter_name(section, field.name)
                    assert getattr(configs[cls], field.name) == diff.get(name, base[name]), name
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
