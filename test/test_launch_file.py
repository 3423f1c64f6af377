"""launch/mapping.launch.py, config/mapping.yaml and config/mapping.rviz agree with the node.

Where ``launch_ros`` is installed (a ROS 2 workspace after ``colcon build`` and sourcing), the launch
file is imported and its LaunchDescription built; everywhere, its source is checked against the node
(names, remapped topics) and the shipped parameter file against the parameter table.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

from semantic_recon_ros.commands.params import SECTIONS, parameter_name
from semantic_recon_ros.core.config_fields import parameter_rows
from semantic_recon_ros.core.mapping_node_config import MappingNodeConfig

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "mapping.launch.py"
PARAMS_FILE = REPO / "config" / "mapping.yaml"
RVIZ_FILE = REPO / "config" / "mapping.rviz"


def launch_constants() -> dict:
    """Module-level constants of the launch file (read from its source, no launch import needed)."""
    constants = {}
    for statement in ast.parse(LAUNCH_FILE.read_text()).body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            try:
                constants[statement.targets[0].id] = ast.literal_eval(statement.value)
            except (ValueError, AttributeError):
                pass
    return constants


def flatten(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_params_file_sets_every_parameter_of_the_table_to_its_default():
    data = yaml.safe_load(PARAMS_FILE.read_text())
    ((key, node),) = data.items()
    assert key == "/**/mapping_node"  # the node name, in any namespace
    values = flatten(node["ros__parameters"])
    table = {parameter_name(section, name): default
             for section, cls in SECTIONS.items() for name, default, *_ in parameter_rows(cls)}
    assert values == table
    for name, default in table.items():
        assert type(values[name]) is type(default), f"{name}: YAML type {type(values[name]).__name__}"


def test_every_launch_argument_has_a_default_and_a_description():
    calls = [node for node in ast.walk(ast.parse(LAUNCH_FILE.read_text()))
             if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument"]
    assert len(calls) >= 6
    for call in calls:
        keywords = {k.arg: k.value for k in call.keywords}
        assert "description" in keywords and "default_value" in keywords, ast.dump(call)


def test_launch_file_names_match_the_node():
    pytest.importorskip("rclpy")
    from semantic_recon_ros.ros import mapping_node

    constants = launch_constants()
    assert constants["PACKAGE"] == "semantic_recon_ros"
    assert constants["NODE_NAME"] == mapping_node.NODE_NAME
    assert yaml.safe_load(PARAMS_FILE.read_text()).keys() == {f"/**/{mapping_node.NODE_NAME}"}
    remapped = [topic for topic, _ in constants["INPUTS"].values()]
    assert remapped == [mapping_node.COLOR_TOPIC, mapping_node.DEPTH_TOPIC, mapping_node.INFO_TOPIC,
                        mapping_node.LABELS_TOPIC]
    setup_py = (REPO / "setup.py").read_text()
    assert '"mapping_node = semantic_recon_ros.ros.mapping_node:main"' in setup_py  # executable="mapping_node"
    source = LAUNCH_FILE.read_text()
    assert 'executable="mapping_node"' in source
    assert '"config", "mapping.yaml"' in source and '"config", "mapping.rviz"' in source  # installed defaults


def test_rviz_config_shows_the_node_outputs():
    pytest.importorskip("rclpy")
    from semantic_recon_ros.ros import mapping_node

    rviz = yaml.safe_load(RVIZ_FILE.read_text())["Visualization Manager"]
    assert rviz["Global Options"]["Fixed Frame"] == MappingNodeConfig().world_frame
    displays = {d["Class"].split("/")[-1] + ":" + d.get("Topic", {}).get("Value", ""): d for d in rviz["Displays"]}
    mesh = displays["MarkerArray:/" + mapping_node.MESH_TOPIC]["Topic"]
    assert mesh["Durability Policy"] == "Transient Local" and mesh["Depth"] >= mapping_node.MESH_QOS.depth
    assert displays["PointCloud2:/" + mapping_node.VOXEL_MAP_TOPIC]["Channel Name"] == "label"
    assert "MarkerArray:/" + mapping_node.LEGEND_TOPIC in displays and "TF:" in displays


def test_launch_description_builds_with_the_installed_params_file():
    pytest.importorskip("launch_ros", reason="launch_ros is not installed (no ROS 2 install here)")
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument
    from launch_ros.actions import Node

    try:
        share = Path(get_package_share_directory("semantic_recon_ros"))
    except PackageNotFoundError:
        pytest.skip("semantic_recon_ros is not installed in the ament index (colcon build and source first)")
    spec = importlib.util.spec_from_file_location("mapping_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    arguments = {a.name: a for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    assert {"params_file", "use_sim_time", "namespace", "camera_namespace", "rviz", "color_topic", "depth_topic",
            "camera_info_topic", "labels_topic"} <= set(arguments)
    assert all(a.description and a.description != "no description given" for a in arguments.values())
    context = LaunchContext()
    params_file = "".join(s.perform(context) for s in arguments["params_file"].default_value)
    assert Path(params_file) == share / "config" / "mapping.yaml"
    assert Path(params_file).read_bytes() == PARAMS_FILE.read_bytes()  # the file the node tests use
    nodes = [e for e in description.entities if isinstance(e, Node)]
    assert [n.node_executable for n in nodes] == ["mapping_node", "rviz2"]
