"""Launch the semantic mapping node with the package's parameter files, and optionally RViz.

    ros2 launch semantic_recon_ros mapping.launch.py camera_namespace:=/camera use_sim_time:=true
    ros2 launch semantic_recon_ros mapping.launch.py camera_params_file:=cameras/realsense_d435.yaml
    ros2 launch semantic_recon_ros mapping.launch.py "checkpoint:=''"   # fusion only, without the completion network

Every argument is described (``ros2 launch semantic_recon_ros mapping.launch.py --show-args``). The
node reads ``params_file`` (default: the installed ``config/mapping.yaml``, the file the tests use,
every parameter explicit), then ``camera_params_file`` if given: a small file of one camera's or one
kind of recording's differences (``config/cameras/``, ``config/datasets/``) whose keys override the
base one by one, as ROS 2 applies later parameter files over earlier ones. Its relative input topics
are remapped below ``camera_namespace`` unless a topic is given explicitly. RViz comes from
``rviz.launch.py``, included when ``rviz`` is true; it starts RViz only where RViz is installed (a warning
otherwise), so the defaults also work on a headless robot.

Without ``ros2`` (a venv), ``semantic-recon launch mapping.launch.py <name>:=<value> ...`` runs this file the same way.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node

PACKAGE = "semantic_recon_ros"
NODE_NAME = "mapping_node"  # the key of config/mapping.yaml
INPUTS = {  # launch argument -> (node topic, also the default below camera_namespace; what it carries)
    "color_topic": ("color/image_raw", "color images (rgb8, bgr8, rgba8, bgra8, mono8)"),
    "depth_topic": ("depth/image_raw", "depth images registered to color (32FC1 m, 16UC1 mm)"),
    "camera_info_topic": ("color/camera_info", "CameraInfo of the color camera"),
    "labels_topic": ("semantic/image_raw", "class-id images (used with use_labels)"),
}


def resolve_camera_params_file(value: str, config_dir: str) -> str | None:
    """The parameter file named by ``camera_params_file``: None when empty, else the path as given (~ expanded)
    or, when that is no file, the same path below the installed config folder. Raises if neither exists."""
    if not value:
        return None
    candidates = [os.path.abspath(os.path.expanduser(value)), os.path.join(config_dir, value)]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(f"camera_params_file {value!r} is neither a file nor one below {config_dir}")


def mapping_node(context: LaunchContext, config_dir: str, remappings: list) -> list[Node]:
    """The mapping node; an opaque function since the parameter list depends on whether camera_params_file is set."""
    parameters = [LaunchConfiguration("params_file")]
    camera_params_file = resolve_camera_params_file(LaunchConfiguration("camera_params_file").perform(context),
                                                    config_dir)
    if camera_params_file is not None:
        parameters.append(camera_params_file)  # after params_file: its keys override the base's
    parameters += [{"use_sim_time": LaunchConfiguration("use_sim_time")},
                   {"checkpoint": LaunchConfiguration("checkpoint")}]
    return [Node(
        package=PACKAGE,
        executable="mapping_node",
        name=NODE_NAME,
        namespace=LaunchConfiguration("namespace"),
        parameters=parameters,
        remappings=remappings,
        output="screen",
        emulate_tty=True,
        # the node saves its map on the first SIGINT and ignores later signals: the launch must not escalate to
        # SIGKILL (sigterm_timeout + sigkill_timeout after its SIGINT) while a large map is being written
        sigterm_timeout=LaunchConfiguration("save_timeout"),
        sigkill_timeout="5",
    )]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    config_dir = os.path.join(share, "config")
    camera_namespace = LaunchConfiguration("camera_namespace")
    arguments = [
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "mapping.yaml"),
                              description="ROS 2 parameter file of the mapping node (the base: every parameter)"),
        DeclareLaunchArgument("camera_params_file", default_value="",
                              description="parameter file layered over params_file (its keys override the base's): "
                                          "a camera's or a recording's differences, a path or one relative to the "
                                          "installed config folder (cameras/realsense_d435.yaml, "
                                          "datasets/7scenes_bag.yaml); empty = none"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (true when playing bags with --clock)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the mapping node and its outputs (mesh, voxel_map, ...)"),
        DeclareLaunchArgument("camera_namespace", default_value="/camera",
                              description="namespace of the camera topics (prefix of the default input topics)"),
        DeclareLaunchArgument("checkpoint", default_value="default",
                              description="completion network for the node's checkpoint parameter (overrides the "
                                          "params files): 'default' = the installed models/default.pt, empty = "
                                          "fusion only, or a checkpoint file path"),
        DeclareLaunchArgument("save_timeout", default_value="120",
                              description="seconds the node may take to save its map after Ctrl-C before the "
                                          "launch escalates to SIGTERM (ignored while saving) and, 5 s later, "
                                          "SIGKILL"),
        DeclareLaunchArgument("rviz", default_value="true",
                              description="start RViz (rviz.launch.py) with rviz_config where RViz is installed "
                                          "(a warning otherwise)"),
        DeclareLaunchArgument("rviz_config", default_value=os.path.join(share, "config", "mapping.rviz"),
                              description="RViz configuration file"),
    ]
    remappings = []
    for argument, (node_topic, meaning) in INPUTS.items():
        arguments.append(DeclareLaunchArgument(
            argument, default_value=PathJoinSubstitution([camera_namespace, node_topic]),
            description=f"input topic: {meaning}"))
        remappings.append((node_topic, LaunchConfiguration(argument)))
    rviz = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "rviz.launch.py")),
        launch_arguments={"rviz_config": LaunchConfiguration("rviz_config"),
                          "use_sim_time": LaunchConfiguration("use_sim_time")}.items(),
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription([*arguments, OpaqueFunction(function=mapping_node, args=[config_dir, remappings]), rviz])
