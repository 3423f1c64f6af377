"""Launch the semantic mapping node with the package's parameter file, and optionally RViz.

    ros2 launch semantic_recon_ros mapping.launch.py camera_namespace:=/camera use_sim_time:=true
    ros2 launch semantic_recon_ros mapping.launch.py "checkpoint:=''"   # fusion only, without the completion network

Every argument is described (``ros2 launch semantic_recon_ros mapping.launch.py --show-args``). The
node reads ``params_file`` (default: the installed ``config/mapping.yaml``, the file the tests use);
its relative input topics are remapped below ``camera_namespace`` unless a topic is given explicitly.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
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


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    camera_namespace = LaunchConfiguration("camera_namespace")
    arguments = [
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "mapping.yaml"),
                              description="ROS 2 parameter file of the mapping node"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (true when playing bags with --clock)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the mapping node and its outputs (mesh, voxel_map, ...)"),
        DeclareLaunchArgument("camera_namespace", default_value="/camera",
                              description="namespace of the camera topics (prefix of the default input topics)"),
        DeclareLaunchArgument("checkpoint", default_value="default",
                              description="completion network for the node's checkpoint parameter (overrides the "
                                          "params file): 'default' = the installed models/default.pt, empty = "
                                          "fusion only, or a checkpoint file path"),
        DeclareLaunchArgument("rviz", default_value="true", description="start RViz with config/mapping.rviz"),
        DeclareLaunchArgument("rviz_config", default_value=os.path.join(share, "config", "mapping.rviz"),
                              description="RViz configuration file"),
    ]
    remappings = []
    for argument, (node_topic, meaning) in INPUTS.items():
        arguments.append(DeclareLaunchArgument(
            argument, default_value=PathJoinSubstitution([camera_namespace, node_topic]),
            description=f"input topic: {meaning}"))
        remappings.append((node_topic, LaunchConfiguration(argument)))
    use_sim_time = {"use_sim_time": LaunchConfiguration("use_sim_time")}
    mapping_node = Node(
        package=PACKAGE,
        executable="mapping_node",
        name=NODE_NAME,
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), use_sim_time,
                    {"checkpoint": LaunchConfiguration("checkpoint")}],
        remappings=remappings,
        output="screen",
        emulate_tty=True,
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", LaunchConfiguration("rviz_config")],
        parameters=[use_sim_time],
        condition=IfCondition(LaunchConfiguration("rviz")),
        output="screen",
    )
    return LaunchDescription([*arguments, mapping_node, rviz])
