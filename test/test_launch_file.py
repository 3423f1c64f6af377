"""The launch file: every argument described, the shipped params file and RViz config used; builds where
launch_ros is installed (a ROS 2 install; skipped here otherwise)."""

from __future__ import annotations

import ast
import importlib.util

import pytest
import yaml

from conftest import REPO

LAUNCH = REPO / "launch" / "mapping.launch.py"


def declared_arguments() -> list[ast.Call]:
    tree = ast.parse(LAUNCH.read_text())
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument"]


def test_every_launch_argument_has_a_description():
    calls = declared_arguments()
    assert len(calls) >= 6
    for call in calls:
        keywords = {k.arg: k.value for k in call.keywords}
        assert "description" in keywords and "default_value" in keywords, ast.dump(call)


def test_launch_defaults_are_the_installed_config_files_the_tests_use():
    text = LAUNCH.read_text()
    assert '"config", "mapping.yaml"' in text and '"config", "mapping.rviz"' in text
    params = yaml.safe_load((REPO / "config" / "mapping.yaml").read_text())
    assert any(key.split("/")[-1] == "mapping_node" for key in params) and 'NODE_NAME = "mapping_node"' in text
    assert (REPO / "config" / "mapping.rviz").is_file()


def test_launch_description_builds_where_launch_ros_is_installed():
    pytest.importorskip("launch_ros", reason="launch_ros is not installable here; a ROS 2 install has it")
    spec = importlib.util.spec_from_file_location("mapping_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert len(description.entities) >= 7
