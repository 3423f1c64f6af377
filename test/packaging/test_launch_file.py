"""launch/mapping.launch.py, launch/rviz.launch.py and config/mapping.rviz agree with the node.

The launch files' source is checked against the node (names, remapped topics, arguments); with the real launch
system (a ROS 2 install, or the venv's from ../shared/vendor/ros2-launch: see support.launch_system) the files
installed by a `colcon build` of the repository are loaded and their LaunchDescriptions built and evaluated against
that workspace's ament index. test_launch_process.py runs mapping.launch.py as `ros2 launch` does. The parameter
files themselves (config/mapping.yaml and the camera and dataset files layered over it) are checked in
test_parameter_files.py.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path

import pytest
import yaml

from support.launch_system import colcon_build, require_launch_system, sourced_environment
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
    assert ast.literal_eval(arguments["rviz"]["default_value"]) == "true"  # started where RViz is installed


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


@pytest.fixture(scope="module")
def installed_share(tmp_path_factory) -> Path:
    """The share folder of the package installed by `colcon build` into a temporary workspace, whose ament index
    (AMENT_PREFIX_PATH of the sourced workspace) this process uses for the module's tests."""
    require_launch_system()
    install = colcon_build(tmp_path_factory.mktemp("launch_ws"))
    sourced = sourced_environment(install, dict(os.environ))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AMENT_PREFIX_PATH", sourced["AMENT_PREFIX_PATH"])
        from ament_index_python.packages import get_package_share_directory

        share = Path(get_package_share_directory("semantic_recon_ros"))
        assert share == install / "semantic_recon_ros" / "share" / "semantic_recon_ros"
        yield share


@pytest.fixture
def rviz2_prefix(tmp_path, monkeypatch) -> Path:
    """An ament prefix holding a package rviz2 with an executable rviz2 (a script), first on AMENT_PREFIX_PATH."""
    (tmp_path / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (tmp_path / "share" / "ament_index" / "resource_index" / "packages" / "rviz2").touch()
    executable = tmp_path / "lib" / "rviz2" / "rviz2"
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\nexit 0\n")
    executable.chmod(0o755)
    monkeypatch.setenv("AMENT_PREFIX_PATH", os.pathsep.join([str(tmp_path), os.environ["AMENT_PREFIX_PATH"]]))
    return tmp_path


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
    # ros2 launch's Ctrl-C: SIGINT, then SIGTERM after sigterm_timeout, SIGKILL sigkill_timeout later; the node
    # saves its map on the SIGINT, so the default leaves 120 s for that instead of launch's 5 s
    context.launch_configurations.update(save_timeout="120")
    assert (perform(context, node.sigterm_timeout), perform(context, node.sigkill_timeout)) == ("120", "5")
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
    assert [e for e in included.entities if isinstance(e, Node)] == []  # RViz only where installed: see below
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


def rviz_launch_description(installed_share):
    """rviz.launch.py as installed, with its DeclareLaunchArguments and its OpaqueFunction that decides on RViz."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    description = load_launch_module(installed_share / "launch" / "rviz.launch.py").generate_launch_description()
    arguments = {a.name: a for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    (opaque,) = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    return arguments, opaque


def test_rviz_launch_description_builds(installed_share):
    from launch import LaunchContext

    assert (installed_share / "launch" / "rviz.launch.py").read_bytes() == RVIZ_LAUNCH_FILE.read_bytes()
    arguments, _ = rviz_launch_description(installed_share)
    assert set(arguments) == {"rviz_config", "use_sim_time"}
    rviz_config = "".join(s.perform(LaunchContext()) for s in arguments["rviz_config"].default_value)
    assert Path(rviz_config) == installed_share / "config" / "mapping.rviz"
    assert Path(rviz_config).read_bytes() == RVIZ_FILE.read_bytes()


def test_rviz_is_started_where_installed(installed_share, rviz2_prefix):
    from launch import LaunchContext
    from launch.substitutions import LocalSubstitution
    from launch_ros.actions import Node

    arguments, opaque = rviz_launch_description(installed_share)
    context = LaunchContext()
    for argument in arguments.values():
        argument.execute(context)
    (node,) = opaque.execute(context)
    assert isinstance(node, Node) and (node.node_package, node.node_executable) == ("rviz2", "rviz2")
    node._perform_substitutions(context)
    command = [perform(context, part) for part in node.cmd
               if not any(isinstance(s, LocalSubstitution) for s in part)]  # name and namespace: set in execute()
    assert command[0] == str(rviz2_prefix / "lib" / "rviz2" / "rviz2")  # found in the ament index like `ros2 run`
    assert command[1:3] == ["-d", str(installed_share / "config" / "mapping.rviz")]


def test_missing_rviz_is_a_warning_not_a_failure(installed_share, monkeypatch):
    """Without rviz2 (a headless robot) nothing is started: the launch goes on with the mapping node (which
    test_launch_process.py runs with the default rviz:=true and no rviz2, and checks the warning)."""
    from launch import LaunchContext
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    monkeypatch.setenv("AMENT_PREFIX_PATH", str(installed_share.parents[1]))  # this package only: no rviz2
    with pytest.raises(PackageNotFoundError):
        get_package_prefix("rviz2")
    arguments, opaque = rviz_launch_description(installed_share)
    context = LaunchContext()
    for argument in arguments.values():
        argument.execute(context)
    assert opaque.execute(context) == []


def perform(context, substitutions) -> str:
    from launch.utilities import perform_substitutions

    return perform_substitutions(context, substitutions)
