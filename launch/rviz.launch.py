"""Start RViz with the package's view of the mapping node's outputs (mesh, voxel map, class legend, TF).

    ros2 launch semantic_recon_ros rviz.launch.py                       # next to a running mapping node
    ros2 launch semantic_recon_ros rviz.launch.py use_sim_time:=true    # when the node runs on a bag's /clock

mapping.launch.py includes this file when its ``rviz`` argument is true, passing its own ``rviz_config``
and ``use_sim_time``. Every argument is described (``--show-args``).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "semantic_recon_ros"


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    arguments = [
        DeclareLaunchArgument("rviz_config", default_value=os.path.join(share, "config", "mapping.rviz"),
                              description="RViz configuration file"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (true when the mapping node runs on a bag played with --clock)"),
    ]
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", LaunchConfiguration("rviz_config")],
        parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
        output="screen",
    )
    return LaunchDescription([*arguments, rviz])
