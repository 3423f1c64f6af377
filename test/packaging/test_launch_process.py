"""mapping.launch.py run as `ros2 launch semantic_recon_ros mapping.launch.py ...` runs it, over real DDS.

The repository is built with colcon into a temporary workspace; in that sourced workspace a process runs the
installed launch file through ros2launch.api (get_share_file_path_from_package, launch_a_launch_file: what
`ros2 launch` runs, here by `semantic-recon launch`) with the defaults of a headless robot (rviz:=true, no rviz2),
a camera_namespace and a user's parameter file, started the way a background job of a non-interactive shell is
(SIGINT ignored). This process is the camera: it checks the node's command line and parameters, feeds it real
7-Scenes frames on the remapped topics, then stops the launch with SIGINT and checks the saved map.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

rclpy = pytest.importorskip("rclpy")

from rcl_interfaces.srv import GetParameters  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from support.dds_processes import discovered_or_restarted, stop_process  # noqa: E402
from support.frames import downscale  # noqa: E402
from support.launch_system import (  # noqa: E402
    colcon_build, node_subscriptions, require_launch_system, sourced_environment)
from support.mapping_node_process import MapListener  # noqa: E402
from support.saved_maps import assert_consistent  # noqa: E402
from semantic_recon_ros.core.classes import load_class_set  # noqa: E402
from semantic_recon_ros.core.map import load_volume  # noqa: E402
from semantic_recon_ros.ros.camera_info_conversions import camera_to_camera_info_msg  # noqa: E402
from semantic_recon_ros.ros.image_conversions import color_to_image_msg, depth_to_image_msg  # noqa: E402
from semantic_recon_ros.ros.transform_conversions import matrix_to_transform_stamped  # noqa: E402

CAMERA_NAMESPACE = "/front_rgbd"
INPUTS = {"color": ("color/image_raw", Image), "depth": ("depth/image_raw", Image),
          "info": ("color/camera_info", CameraInfo)}  # the node's relative input names
FRAMES = 6
EXIT_TIMEOUT_S = 60


def user_parameters(output_dir: Path) -> dict:
    """A user's parameter file over the shipped one: where to save, save on Ctrl-C, reliable inputs, 5 cm voxels,
    fast status, a TF wait that a loaded machine cannot miss, no live segmenter (its own process) for a quicker
    start."""
    return {"/**/mapping_node": {"ros__parameters": {
        "output_dir": str(output_dir), "save_on_shutdown": True, "input_qos": "reliable", "queue_size": 10,
        "status_period": 0.5, "tf_timeout": 2.0, "segmenter": "", "volume": {"voxel_size": 0.05}}}}


@pytest.fixture(scope="module")
def install(tmp_path_factory) -> Path:
    require_launch_system()
    return colcon_build(tmp_path_factory.mktemp("launch_ws"))


def launched_node(launch: subprocess.Popen) -> psutil.Process:
    """The mapping node process the launch process started (its only child running mapping_node)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for child in psutil.Process(launch.pid).children():
            try:
                if any(part.endswith("mapping_node") for part in child.cmdline()[:2]):
                    return child
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.1)
    pytest.fail("the launch process started no mapping_node")


def test_ros2_launch_runs_the_node_with_the_params_files_and_remappings_and_saves_on_sigint(
        dds, install, seven_scenes, tmp_path):
    env, context = dds
    env = sourced_environment(install, env)
    share = install / "semantic_recon_ros" / "share" / "semantic_recon_ros"
    output_dir = tmp_path / "maps"
    user_file = tmp_path / "my_robot.yaml"
    user_file.write_text(yaml.safe_dump(user_parameters(output_dir)))
    log = tmp_path / "launch.log"
    command = [sys.executable, "-m", "semantic_recon_ros.cli", "launch", "mapping.launch.py",
               f"camera_namespace:={CAMERA_NAMESPACE}", f"camera_params_file:={user_file}", "checkpoint:=''"]

    started = []

    def start() -> subprocess.Popen:
        with open(log, "a") as out:  # a restart appends
            started.append(subprocess.Popen(command, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)))
        return started[-1]

    listener = MapListener(context, "launch_listener")
    launch = start()
    try:
        launch = discovered_or_restarted(launch, start, listener.has_status, "the launched mapping node")
        node = launched_node(launch)

        # the installed executable, the shipped params file, then the user's: ROS 2 applies later files over earlier
        node_command = node.cmdline()
        assert node_command[1] == str(install / "semantic_recon_ros" / "lib" / "semantic_recon_ros" / "mapping_node")
        params_files = [node_command[i + 1] for i, part in enumerate(node_command) if part == "--params-file"]
        assert params_files[:2] == [str(share / "config" / "mapping.yaml"), str(user_file)], node_command
        names = ["output_dir", "save_on_shutdown", "volume.voxel_size", "input_qos", "checkpoint", "world_frame",
                 "volume.block_size"]
        values = listener.call("/mapping_node/get_parameters", GetParameters,
                               GetParameters.Request(names=names)).values
        assert values[0].string_value == str(output_dir) and values[1].bool_value  # the user's file
        assert values[2].double_value == 0.05 and values[3].string_value == "reliable"
        assert values[4].string_value == ""  # the launch argument checkpoint:=''
        assert values[5].string_value == "world" and values[6].integer_value == 8  # the shipped file

        # the camera topics below camera_namespace, nothing else
        subscribed = node_subscriptions(listener, [f"{CAMERA_NAMESPACE}/{topic}" for topic, _ in INPUTS.values()])
        for topic, _ in INPUTS.values():
            assert f"/camera/{topic}" not in subscribed and f"/{topic}" not in subscribed, sorted(subscribed)

        qos = QoSProfile(depth=FRAMES * 2)
        publishers = {key: listener.node.create_publisher(msg_type, f"{CAMERA_NAMESPACE}/{topic}", qos)
                      for key, (topic, msg_type) in INPUTS.items()}
        tf = listener.node.create_publisher(TFMessage, "/tf", qos)
        deadline = time.monotonic() + 30
        while any(p.get_subscription_count() == 0 for p in [*publishers.values(), tf]):
            assert time.monotonic() < deadline, "the launched node did not match the camera publishers"
            time.sleep(0.05)
        for index in range(0, 10 * FRAMES, 10):
            frame = downscale(seven_scenes[index], 2)
            stamp = listener.node.get_clock().now().nanoseconds
            tf.publish(TFMessage(transforms=[matrix_to_transform_stamped(frame.T_world_cam, stamp, "world", "cam")]))
            publishers["info"].publish(camera_to_camera_info_msg(frame.camera, stamp, "cam"))
            publishers["color"].publish(color_to_image_msg(frame.color, stamp, "cam"))
            publishers["depth"].publish(depth_to_image_msg(frame.depth, stamp, "cam"))
            time.sleep(0.1)
        status = listener.wait_for(lambda l: l.status if l.status["integrated"] == FRAMES else None, 60,
                                   f"{FRAMES} integrated frames")
        assert status["blocks"] > 0, status

        interrupted = time.time()
        launch.send_signal(signal.SIGINT)  # Ctrl-C: launch stops the node with SIGINT and waits for it
        assert launch.wait(timeout=EXIT_TIMEOUT_S) == 0, log.read_text()
        assert not node.is_running(), "the launch exited and left the node running"
    except BaseException:
        print(f"launch output:\n{log.read_text()}")
        raise
    finally:
        listener.close()
        stop_process(launch)
        for process in started:  # whatever a failed launch left running in its session (an orphaned node)
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    text = log.read_text()
    assert "RViz is not started" in text and "package 'rviz2' not found" in text  # a warning, not a failure
    assert "[ERROR] [launch" not in text and "Caught exception" not in text and "Traceback" not in text, text
    assert "process has finished cleanly" in text and "saved the map on shutdown" in text, text
    folder = assert_consistent(output_dir, load_class_set())
    assert (folder / "volume.pt").stat().st_mtime >= interrupted
    assert load_volume(output_dir / "volume.pt", "cpu").num_blocks == status["blocks"]
