"""launch/mapping.launch.py, launch/rviz.launch.py and config/mapping.rviz agree with the node.

Where ``launch_ros`` is installed (a ROS 2 workspace after ``colcon build`` and sourcing), the launch
files are imported and their LaunchDescriptions built and evaluated; everywhere, their source is checked
against the node (names, remapped topics, arguments). The parameter files themselves (config/mapping.yaml
and the camera and dataset files layered over it) are checked in test_parameter_files.py.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

from support.paths import REPO
from semantic_recon_ros.ros.node_config import MappingNodeConfig


LAUNCH_FILE = REPO / "launch" / "mapping.launch.py"
RVIZ_LAUNCH_FILE = REPO / "launch" / "rviz.launch.py"
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


def declared_arguments(path: Path) -> dict[str, dict[str, ast.expr]]:
    """{argument name: {keyword: expression}} of the DeclareLaunchArgument calls with a literal name."""
    arguments = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument":
            if node.args and isinstance(node.args[0], ast.Constant):
                arguments[node.args[0].value] = {k.arg: k.value for k in node.keywords}
    return arguments


@pytest.mark.parametrize("path", [LAUNCH_FILE, RVIZ_LAUNCH_FILE], ids=lambda p: p.name)
def test_every_launch_argument_has_a_default_and_a_description(path):
    calls = [node for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument"]
    assert len(calls) >= (6 if path == LAUNCH_FILE else 2)
    for call in calls:
        keywords = {k.arg: k.value for k in call.keywords}
        assert "description" in keywords and "default_value" in keywords, ast.dump(call)


def test_mapping_launch_arguments_layer_a_camera_file_and_forward_rviz_ones():
    arguments = declared_arguments(LAUNCH_FILE)
    assert {"params_file", "camera_params_file", "use_sim_time", "namespace", "camera_namespace", "checkpoint",
            "rviz", "rviz_config"} <= set(arguments)  # the loop adds the INPUTS topics
    assert ast.literal_eval(arguments["camera_params_file"]["default_value"]) == ""  # none unless given
    rviz_arguments = declared_arguments(RVIZ_LAUNCH_FILE)
    assert set(rviz_arguments) == {"rviz_config", "use_sim_time"}
    for name, keywords in rviz_arguments.items():  # the same defaults whether started alone or included
        assert ast.unparse(keywords["default_value"]) == ast.unparse(arguments[name]["default_value"]), name
    source = LAUNCH_FILE.read_text()
    assert "rviz2" not in source and '"rviz.launch.py"' in source and "IncludeLaunchDescription(" in source


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


def load_launch_module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def installed_share() -> Path:
    """The installed share folder of the package (skips without launch_ros or without a sourced workspace)."""
    pytest.importorskip("launch_ros", reason="launch_ros is not installed (no ROS 2 install here)")
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        return Path(get_package_share_directory("semantic_recon_ros"))
    except PackageNotFoundError:
        pytest.skip("semantic_recon_ros is not installed in the ament index (colcon build and source first)")


def evaluated_mapping_node(description, **arguments):
    """The mapping Node of ``description`` for the given launch argument values, and what its command line passes
    with --params-file, in order: a file's path, or the parameters of a file launch_ros wrote from a dict."""
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LocalSubstitution
    from launch.utilities import perform_substitutions

    context = LaunchContext()
    context.launch_configurations.update(arguments)
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument):
            entity.execute(context)  # sets the defaults of the arguments not given
    (opaque,) = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    (node,) = opaque.execute(context)
    node._perform_substitutions(context)  # what execute() does first: expands the parameters into the command
    command = [perform_substitutions(context, part) for part in node.cmd[1:]  # [0] is the installed executable
               if not any(isinstance(s, LocalSubstitution) for s in part)]  # name and namespace: set in execute()
    params = []
    for path in (Path(command[i + 1]) for i, part in enumerate(command) if part == "--params-file"):
        if path.name.startswith("launch_params_"):  # a temporary file launch_ros wrote from a dict
            ((_, node_params),) = yaml.safe_load(path.read_text()).items()
            params.append(node_params["ros__parameters"])
            path.unlink()
        else:
            params.append(path)
    return node, params


def test_launch_description_builds_with_the_installed_params_file(installed_share):
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
    from launch_ros.actions import Node

    module = load_launch_module(LAUNCH_FILE)
    description = module.generate_launch_description()
    arguments = {a.name: a for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    assert {"params_file", "camera_params_file", "use_sim_time", "namespace", "camera_namespace", "rviz",
            "rviz_config", "color_topic", "depth_topic", "camera_info_topic", "labels_topic"} <= set(arguments)
    assert all(a.description and a.description != "no description given" for a in arguments.values())
    context = LaunchContext()
    params_file = "".join(s.perform(context) for s in arguments["params_file"].default_value)
    assert Path(params_file) == installed_share / "config" / "mapping.yaml"
    assert Path(params_file).read_bytes() == PARAMS_FILE.read_bytes()  # the file the node tests use
    assert "".join(s.perform(context) for s in arguments["camera_params_file"].default_value) == ""

    node, params = evaluated_mapping_node(description)
    assert node.node_executable == "mapping_node" and node.node_package == "semantic_recon_ros"
    assert params == [Path(params_file), {"use_sim_time": False}, {"checkpoint": "default"}]
    _, params = evaluated_mapping_node(description, use_sim_time="true", checkpoint="''")  # the README's fusion only
    assert params == [Path(params_file), {"use_sim_time": True}, {"checkpoint": ""}]

    (rviz,) = [e for e in description.entities if isinstance(e, IncludeLaunchDescription)]
    context.launch_configurations.update(rviz="false")
    assert not rviz.condition.evaluate(context)
    context.launch_configurations.update(rviz="true")
    assert rviz.condition.evaluate(context)
    included = rviz.launch_description_source.get_launch_description(context)  # loads the installed file
    assert Path(rviz.launch_description_source.location) == installed_share / "launch" / "rviz.launch.py"
    assert [e.node_executable for e in included.entities if isinstance(e, Node)] == ["rviz2"]
    context.launch_configurations.update(rviz_config="/some/view.rviz", use_sim_time="true")
    forwarded = {name: value.perform(context) for name, value in rviz.launch_arguments}
    assert forwarded == {"rviz_config": "/some/view.rviz", "use_sim_time": "true"}  # the including file's values


@pytest.mark.parametrize("given", ["absolute", "relative to config"])
def test_camera_params_file_is_layered_after_params_file(installed_share, given):
    module = load_launch_module(LAUNCH_FILE)
    installed = installed_share / "config" / "cameras" / "realsense_d435.yaml"
    value = str(installed) if given == "absolute" else "cameras/realsense_d435.yaml"
    _, params = evaluated_mapping_node(module.generate_launch_description(), camera_params_file=value)
    # the camera file right after the base; use_sim_time and checkpoint (launch arguments) still override both
    assert params == [installed_share / "config" / "mapping.yaml", installed, {"use_sim_time": False},
                      {"checkpoint": "default"}]


def test_missing_camera_params_file_is_an_error(installed_share):
    module = load_launch_module(LAUNCH_FILE)
    with pytest.raises(FileNotFoundError, match="no_such_camera.yaml"):
        evaluated_mapping_node(module.generate_launch_description(), camera_params_file="cameras/no_such_camera.yaml")


def test_rviz_launch_description_builds(installed_share):
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument
    from launch_ros.actions import Node

    description = load_launch_module(RVIZ_LAUNCH_FILE).generate_launch_description()
    arguments = {a.name: a for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    assert set(arguments) == {"rviz_config", "use_sim_time"}
    rviz_config = "".join(s.perform(LaunchContext()) for s in arguments["rviz_config"].default_value)
    assert Path(rviz_config) == installed_share / "config" / "mapping.rviz"
    assert Path(rviz_config).read_bytes() == RVIZ_FILE.read_bytes()
    nodes = [e for e in description.entities if isinstance(e, Node)]
    assert [(n.node_package, n.node_executable) for n in nodes] == [("rviz2", "rviz2")]
