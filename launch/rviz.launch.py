"""Start RViz with the package's view of the mapping node's outputs (mesh, voxel map, class legend, TF).

    ros2 launch semantic_recon_ros rviz.launch.py                       # next to a running mapping node
    ros2 launch semantic_recon_ros rviz.launch.py use_sim_time:=true    # when the node runs on a bag's /clock

mapping.launch.py includes this file when its ``rviz`` argument is true, passing its own ``rviz_config``
and ``use_sim_time``. Every argument is described (``--show-args``).

RViz starts only where it is installed: without the ``rviz2`` package (a headless robot, a venv) this file logs
a warning and starts nothing, so that the launch that includes it goes on with the mapping node instead of
failing with ``package 'rviz2' not found`` after the node has started.
"""

import os

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.logging import get_logger
from launch.substitutions import LaunchConfiguration
from launch.substitutions.substitution_failure import SubstitutionFailure
from launch_ros.actions import Node
from launch_ros.substitutions import ExecutableInPackage

PACKAGE = "semantic_recon_ros"
RVIZ_PACKAGE = "rviz2"
RVIZ_EXECUTABLE = "rviz2"


def rviz_node(context: LaunchContext) -> list[Node]:
    """RViz when its executable is installed (found as the Node would find it), else nothing and a warning."""
    try:
        ExecutableInPackage(RVIZ_EXECUTABLE, RVIZ_PACKAGE).perform(context)
    except (PackageNotFoundError, SubstitutionFailure, OSError) as error:  # OSError: AMENT_PREFIX_PATH unset
        get_logger("rviz.launch.py").warning(
            f"RViz is not started: {error} (install {RVIZ_PACKAGE} to view the map, or pass rviz:=false)")
        return []
    return [Node(
        package=RVIZ_PACKAGE,
        executable=RVIZ_EXECUTABLE,
        name="rviz2",
        arguments=["-d", LaunchConfiguration("rviz_config")],
        parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
        output="screen",
    )]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    arguments = [
        DeclareLaunchArgument("rviz_config", default_value=os.path.join(share, "config", "mapping.rviz"),
                              description="RViz configuration file"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (true when the mapping node runs on a bag played with --clock)"),
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=rviz_node)])
