"""The mapping node's shutdown over real processes: Ctrl-C (SIGINT) once, or twice with the second 50-700 ms after
the first, while the node saves a real-size map on shutdown (the 7-Scenes kitchen at 2 cm, loaded as initial_map)
and receives images and TF at 30 Hz from this process. Every time: exit code 0, no traceback, no log line after
the rclpy context is gone ("Failed to publish log message to rosout"), and one consistent set in output_dir.

Node processes run two at a time (their start, loading the map, dominates); all share one ROS domain.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from semantic_recon_ros.core.classes import load_class_set  # noqa: E402
from semantic_recon_ros.core.config import VolumeConfig  # noqa: E402
from semantic_recon_ros.core.mapper import MapFrame, Mapper  # noqa: E402
from semantic_recon_ros.ros.camera_info_conversions import camera_to_camera_info_msg  # noqa: E402
from semantic_recon_ros.ros.image_conversions import color_to_image_msg, depth_to_image_msg  # noqa: E402
from semantic_recon_ros.ros.transform_conversions import matrix_to_transform_stamped  # noqa: E402
from support.frames import downscale  # noqa: E402
from support.mapping_node_process import condensed_log  # noqa: E402
from support.paths import REPO  # noqa: E402
from support.saved_maps import assert_clean, assert_consistent  # noqa: E402

CONFIG = REPO / "config" / "mapping.yaml"
CLASSES = load_class_set()
VOXEL = 0.02
SECOND_SIGNAL_AFTER_S = (0.05, 0.27, 0.48, 0.70)  # one double-Ctrl-C trial each
SINGLE_SIGNALS = ("SIGINT", "SIGINT", "SIGINT", "SIGTERM")  # ros2 launch stops nodes by SIGINT, then SIGTERM
PARALLEL_NODES = 3
EXIT_TIMEOUT_S = 60
LOG_TIME = re.compile(r"\[(\d+\.\d+)\] \[[^]]+\]: (.*)")


@pytest.fixture(scope="module")
def kitchen_map(seven_scenes, tmp_path_factory) -> Path:
    """The 7-Scenes kitchen at 2 cm from 120 full-resolution frames (about 2700 blocks, a 106 MB volume.pt):
    saving it takes about a second, so a second Ctrl-C 50-700 ms after the first lands in the save."""
    mapper = Mapper(VolumeConfig(voxel_size=VOXEL), CLASSES)
    for i in range(0, 600, 5):
        frame = seven_scenes[i]
        mapper.integrate(MapFrame(frame.camera, frame.T_world_cam, frame.color, frame.depth))
    out = tmp_path_factory.mktemp("kitchen") / "map"
    mapper.save(out)
    return out


class CameraTraffic:
    """Publishes kitchen frames (320x240 color, depth, camera_info) and their /tf at 30 Hz from a thread."""

    def __init__(self, context, frames) -> None:
        self.node = rclpy.create_node("camera_traffic", context=context)
        self.frames = frames
        self.publishers = {name: self.node.create_publisher(msg_type, topic, 10) for name, msg_type, topic in (
            ("color", Image, "/color/image_raw"), ("depth", Image, "/depth/image_raw"),
            ("info", CameraInfo, "/color/camera_info"), ("tf", TFMessage, "/tf"))}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._publish, daemon=True)
        self.thread.start()

    def _publish(self) -> None:
        index = 0
        while not self.stop.wait(1 / 30):
            frame = self.frames[index % len(self.frames)]
            index += 1
            stamp = self.node.get_clock().now().nanoseconds
            self.publishers["tf"].publish(TFMessage(transforms=[
                matrix_to_transform_stamped(frame.T_world_cam, stamp, "world", "camera")]))
            self.publishers["info"].publish(camera_to_camera_info_msg(frame.camera, stamp, "camera"))
            self.publishers["color"].publish(color_to_image_msg(frame.color, stamp, "camera"))
            self.publishers["depth"].publish(depth_to_image_msg(frame.depth, stamp, "camera"))

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.node.destroy_node()


@pytest.fixture(scope="module")
def traffic(dds, seven_scenes):
    _, context = dds
    publisher = CameraTraffic(context, [downscale(seven_scenes[i], 2) for i in range(300, 400, 10)])
    yield publisher
    publisher.close()


def log_times(log: str, text: str) -> list[float]:
    """Wall-clock stamps of the log lines whose message contains ``text``."""
    return [float(m[1]) for m in LOG_TIME.finditer(log) if text in m[2]]


def shutdown_trial(env: dict, kitchen: Path, out: Path, first: str, second_after: float | None) -> dict:
    """Start the node from the kitchen map, wait until it fused a frame (or 20 s), send ``first``; for a double
    signal a SIGINT ``second_after`` seconds later. Returns exit code, log and timings; checks the saved set
    (when the node saved one) here, overlapping the other trials."""
    args = [sys.executable, "-X", "faulthandler", "-m", "semantic_recon_ros.ros.mapping_node", "--ros-args",
            "--params-file", str(CONFIG)]
    for name, value in {"initial_map": kitchen, "output_dir": out, "save_on_shutdown": "true", "checkpoint": "''",
                        "segmenter": "''", "volume.voxel_size": VOXEL, "status_period": "0.5",
                        "input_qos": "reliable"}.items():
        args += ["-p", f"{name}:={value}"]
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines, fusing = [], threading.Event()

    def read() -> None:
        for line in process.stdout:
            lines.append(line)
            if re.search(r"integrated [1-9]", line):
                fusing.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        fused = fusing.wait(timeout=20)  # DDS discovery may take long on a loaded machine: then test without
        sent = [time.time()]
        process.send_signal(getattr(signal, first))
        if second_after is not None:
            time.sleep(second_after)
            sent.append(time.time())
            process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = "hung"
            process.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack into the log
            time.sleep(2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=10)
    log = "".join(lines)
    started, saved = log_times(log, ": shutting down"), log_times(log, "saved the map on shutdown")
    consistent = None
    if saved:
        try:
            assert_consistent(out, CLASSES)
            assert_clean(out)
            consistent = True
        except AssertionError as error:
            consistent = error
    return {"code": code, "log": log, "fused": fused, "sent": sent, "consistent": consistent,
            "save": (started[0], saved[0]) if started and saved else None}


def test_ctrl_c_once_or_twice_saves_one_consistent_set_and_exits_0(dds, traffic, kitchen_map, tmp_path):
    env, _ = dds
    trials = [("SIGINT", after) for after in SECOND_SIGNAL_AFTER_S] + [(first, None) for first in SINGLE_SIGNALS]
    with ThreadPoolExecutor(PARALLEL_NODES) as pool:
        results = list(pool.map(lambda trial: shutdown_trial(env, kitchen_map, tmp_path / f"out{trial[0]}",
                                                             *trial[1]), enumerate(trials)))
    report = []
    for (first, second_after), result in zip(trials, results):
        log = condensed_log(result["log"])
        assert result["code"] == 0, log
        assert "Traceback" not in log and "rosout" not in log and "context is invalid" not in log, log
        assert f"{first}: shutting down, saving the map" in log and result["save"] is not None, log
        assert result["consistent"] is True, result["consistent"]
        begin, end = result["save"]
        during = second_after is not None and begin <= result["sent"][1] <= end
        report.append(f"{first}{f' + SIGINT after {second_after:.2f} s' if second_after is not None else ''}: "
                      f"shutdown and save {end - begin:.2f} s{', second signal during it' if during else ''}"
                      f"{'' if result['fused'] else ', no frame fused before the signal'}")
    print("\n" + "\n".join(report))
    doubles = sum("during it" in line for line in report)
    assert doubles >= len(SECOND_SIGNAL_AFTER_S) // 2  # most second signals interrupted a save in progress
