"""The mapping node as a child process over real DDS, and this process's side of it: a camera-driver-like
publisher of frames (:class:`FramePublisher`) and a viewer of the node's outputs (:class:`MapListener`).

:func:`start_node` starts the node with the shipped ``config/mapping.yaml`` plus ``-p`` overrides and the
camera topics remapped to ``CAMERA_TOPICS``; the tests give it a domain from ``support.dds_processes``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from support.paths import REPO
from support.rviz_marker_view import apply_marker_array, shown_mesh
from support.spinning_test_node import SpinningTestNode
from semantic_recon_ros.core.camera import PinholeCamera
from semantic_recon_ros.core.frame import RGBDFrame
from semantic_recon_ros.ros.camera_info_conversions import camera_to_camera_info_msg
from semantic_recon_ros.ros.header_conversions import time_msg
from semantic_recon_ros.ros.image_conversions import color_to_image_msg, depth_to_image_msg, labels_to_image_msg
from semantic_recon_ros.ros.mapping_node import LATCHED_QOS, MESH_QOS
from semantic_recon_ros.ros.transform_conversions import matrix_to_transform_stamped

CONFIG = REPO / "config" / "mapping.yaml"
CAMERA_TOPICS = {"color": "/camera/color/image_raw", "depth": "/camera/depth/image_raw",
                 "info": "/camera/color/camera_info", "labels": "/camera/semantic/image_raw"}
NODE_TOPICS = {"color": "color/image_raw", "depth": "depth/image_raw", "info": "color/camera_info",
               "labels": "semantic/image_raw"}  # the node's relative input names


def start_node(env: dict, logs: Path, overrides: dict[str, str],
               extra_params_files: Sequence[Path] = ()) -> subprocess.Popen:
    """The mapping node, started like `mapping_node --ros-args --params-file config/mapping.yaml [--params-file
    EXTRA ...] -p ... -r ...`."""
    args = [sys.executable, "-m", "semantic_recon_ros.ros.mapping_node", "--ros-args", "--params-file", str(CONFIG)]
    for path in extra_params_files:
        args += ["--params-file", str(path)]
    for name, value in overrides.items():
        args += ["-p", f"{name}:={value}"]
    for key, topic in CAMERA_TOPICS.items():
        args += ["-r", f"{NODE_TOPICS[key]}:={topic}"]
    with open(logs / "stdout.txt", "a") as stdout, open(logs / "stderr.txt", "a") as stderr:  # restarts append
        process = subprocess.Popen(args, env=env, stdout=stdout, stderr=stderr, text=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    process.logs = logs
    return process


def node_log(process) -> str:
    return (process.logs / "stdout.txt").read_text() + (process.logs / "stderr.txt").read_text()


def condensed_log(log: str) -> str:
    """``log`` with each run of periodic status lines ("frames in ...") cut to its first and last line, so that a
    failure message shows what happened around them (CI shows only so much of it)."""
    lines, run = [], []
    for line in log.splitlines() + [""]:
        if "frames in " in line:
            run.append(line)
            continue
        if run:
            lines += run if len(run) <= 2 else [run[0], f"    ... {len(run) - 2} status lines ...", run[-1]]
            run = []
        lines.append(line)
    return "\n".join(lines[:-1])


class MapListener(SpinningTestNode):
    """Subscribes to the node's outputs in this process and keeps what a viewer would show.

    ``shown`` maps (ns, id) -> (frame_id, stamp ns, (3T, 3) points, (3T, 3) uint8 colors) after applying
    ADD / DELETE / DELETEALL like RViz.
    """

    def __init__(self, context, name: str = "map_listener", mesh_qos: QoSProfile = MESH_QOS) -> None:
        super().__init__(context, name)
        self.shown: dict = {}
        self.mesh_messages = 0
        self.voxel_map: PointCloud2 | None = None
        self.legend: MarkerArray | None = None
        self.status: dict | None = None
        self.status_count = 0
        self.diagnostics: DiagnosticArray | None = None
        self.node.create_subscription(MarkerArray, "/mesh", self._on_mesh, mesh_qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.node.create_subscription(PointCloud2, "/voxel_map", self._on_voxel_map, LATCHED_QOS)
        self.node.create_subscription(MarkerArray, "/class_legend", self._on_legend, LATCHED_QOS)
        self.node.create_subscription(String, "/mapping_node/status", self._on_status, 10)
        self.start_spinning()

    def _on_mesh(self, msg: MarkerArray) -> None:
        with self.lock:
            self.mesh_messages += 1
            apply_marker_array(self.shown, msg)

    def _on_voxel_map(self, msg: PointCloud2) -> None:
        with self.lock:
            self.voxel_map = msg

    def _on_legend(self, msg: MarkerArray) -> None:
        with self.lock:
            self.legend = msg

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self.lock:
            self.diagnostics = msg

    def _on_status(self, msg: String) -> None:
        with self.lock:
            self.status = json.loads(msg.data)
            self.status_count += 1

    def mesh(self) -> tuple[np.ndarray, np.ndarray, int]:
        """(3T, 3) triangle corners, (3T, 3) uint8 colors and the newest marker stamp (ns) of the shown mesh."""
        with self.lock:
            return shown_mesh(self.shown)

    def has_status(self) -> bool:
        with self.lock:
            return self.status is not None

    def wait_for(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:  # reentrant: predicates may call mesh()
                value = predicate(self)
            if value:
                return value
            time.sleep(0.05)
        pytest.fail(f"timed out after {timeout} s waiting for {what}; last status: {self.status}")

    def fresh_status(self, timeout: float) -> dict:
        """A status message the node produced after this call started."""
        seen = self.status_count
        self.wait_for(lambda listener: listener.status_count >= seen + 2, timeout, "a fresh status message")
        with self.lock:
            return self.status

    def wait_until_idle(self, timeout: float = 60.0, mesh: bool = True) -> dict:
        """Wait until every received frame is processed, twice in a row, and (``mesh``) the mesh shows the newest map."""
        def idle(s: dict) -> bool:
            done = s["frames_in"] == s["integrated"] + sum(s["dropped"].values())
            return done and not s["queue"] and s["mesh_stamp_ns"] == s["map_stamp_ns"]

        deadline = time.monotonic() + timeout
        previous = None
        while True:
            status = self.fresh_status(timeout)
            if idle(status) and previous is not None and status["frames_in"] == previous["frames_in"]:
                break
            previous = status if idle(status) else None
            if time.monotonic() > deadline:
                pytest.fail(f"the node did not become idle within {timeout} s; last status: {status}")
        if mesh and status["map_stamp_ns"]:
            self.wait_for(lambda listener: listener.mesh()[2] == status["map_stamp_ns"], timeout, "the newest mesh")
        return status


class FramePublisher:
    """Publishes frames (images, camera_info, /tf, /clock) from this process the way a camera driver would."""

    def __init__(self, node) -> None:
        self.node = node
        qos = QoSProfile(depth=100)
        self.publishers = {key: node.create_publisher(CameraInfo if key == "info" else Image, topic, qos)
                           for key, topic in CAMERA_TOPICS.items()}
        self.tf = node.create_publisher(TFMessage, "/tf", qos)
        self.clock = node.create_publisher(Clock, "/clock", qos)

    def wait_for_node(self, inputs=tuple(CAMERA_TOPICS), timeout: float = 20.0) -> None:
        """Wait until the node subscribes to the ``inputs`` (keys of CAMERA_TOPICS), /tf and /clock."""
        deadline = time.monotonic() + timeout
        publishers = [*(self.publishers[key] for key in inputs), self.tf, self.clock]
        while any(p.get_subscription_count() == 0 for p in publishers):
            assert time.monotonic() < deadline, "the mapping node did not subscribe in time"
            time.sleep(0.05)

    def publish_pose(self, T_world_cam: np.ndarray, stamp_ns: int, frame_id: str = "test_camera") -> None:
        """One /tf message: the (4, 4) camera pose ``world <- frame_id`` at ``stamp_ns``."""
        self.tf.publish(TFMessage(transforms=[matrix_to_transform_stamped(T_world_cam, stamp_ns, "world", frame_id)]))

    def publish(self, frame: RGBDFrame, stamp_ns: int, *, clock_ns: int | None = None, frame_id: str = "test_camera",
                pose: bool = True, color: Image | None = None, depth: Image | None = None,
                info_camera: PinholeCamera | None = None, info: CameraInfo | None = None,
                skip: tuple[str, ...] = (), clock_settle: float = 0.0) -> None:
        """One frame; ``color`` / ``depth`` / ``info`` replace the messages, ``info_camera`` the intrinsics, ``skip``
        leaves inputs out (keys of CAMERA_TOPICS); ``clock_settle`` seconds pass between /clock and the frame (for
        a clock jump that must reach the node first: topics are not ordered with each other)."""
        self.clock.publish(Clock(clock=time_msg(clock_ns or stamp_ns)))
        time.sleep(clock_settle)
        if pose:
            self.publish_pose(frame.T_world_cam, stamp_ns, frame_id)
        messages = {
            "info": lambda: info or camera_to_camera_info_msg(info_camera or frame.camera, stamp_ns, frame_id),
            "color": lambda: color or color_to_image_msg(frame.color, stamp_ns, frame_id),
            "depth": lambda: depth or depth_to_image_msg(frame.depth, stamp_ns, frame_id),
            "labels": lambda: labels_to_image_msg(frame.labels, stamp_ns, frame_id),
        }
        for key, message in messages.items():
            if key not in skip:
                self.publishers[key].publish(message())
