"""The mapping node's live single-view prediction as a separate process over real DDS, fed a bag of a synthetic room.

A synthetic room (seed 31, a validation room of the single-view model, not one of the held-out rooms 900-909) is
rendered at 160x120 (the camera the shipped single-view model was trained for) and written as an RGB-D bag with its
labels by the package's writer. Another process plays it with /clock to a node started with the shipped config/mapping.yaml plus
``single_view.rate`` (the shipped single-view model), ``single_view.fill_unobserved`` with a fill weight the default
``completion.min_confidence`` trusts, and no completion network: ``single_view/mesh`` receives the newest frame's
predicted scene as one marker in the camera's optical frame, inside that camera's frustum; every frame is fused; the
status counts the predictions; the voxel map holds the filled voxels as network additions (observed 0) beside the
observed ones.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from visualization_msgs.msg import MarkerArray  # noqa: E402

from support.dds_processes import discovered_or_restarted, play_to_subscribers, stop_process  # noqa: E402
from support.mapping_node_process import MapListener, node_log, start_node  # noqa: E402
from support.rviz_marker_view import apply_marker_array  # noqa: E402
from support.spinning_test_node import SpinningTestNode  # noqa: E402
from semantic_recon_ros.core.datasets import open_sequence  # noqa: E402
from semantic_recon_ros.core.datasets.rosbag_writer import RosbagFrames, RosbagWriter, RosbagWriterConfig  # noqa: E402
from semantic_recon_ros.core.synthetic import DEFAULT_CAMERA, write_synthetic_scene  # noqa: E402
from semantic_recon_ros.ros.mapping_node import LATCHED_QOS, SINGLE_VIEW_MESH_TOPIC, SINGLE_VIEW_NAMESPACE  # noqa: E402
from semantic_recon_ros.ros.pointcloud_conversions import pointcloud2_to_array  # noqa: E402

SEC = 1_000_000_000
START_NS = 1_750_000_000 * SEC
CAMERA = DEFAULT_CAMERA.scaled(160, 120)
ROOM_SEED = 31
NUM_FRAMES = 6
NEAR, FAR = 0.3, 5.0  # the shipped model's frustum grid
OVERRIDES = {"use_sim_time": "true", "use_labels": "true", "input_qos": "reliable", "status_period": "0.5", "mesh_rate": "2.0",
             "voxel_map_rate": "2.0", "queue_size": "30", "checkpoint": "''", "segmenter": "''",
             "single_view.rate": "5.0", "single_view.fill_unobserved": "true",
             "single_view.fill_weight": "0.7"}  # above completion.min_confidence (0.6): fills show as additions


class SingleViewListener(SpinningTestNode):
    """What a viewer shows of single_view/mesh: (ns, id) -> (frame_id, stamp ns, (3T, 3) corners, (3T, 3) colors)."""

    def __init__(self, context) -> None:
        super().__init__(context, "single_view_listener")
        self.shown: dict = {}
        self.node.create_subscription(MarkerArray, "/" + SINGLE_VIEW_MESH_TOPIC, self._on_mesh, LATCHED_QOS)
        self.start_spinning()

    def _on_mesh(self, msg: MarkerArray) -> None:
        with self.lock:
            apply_marker_array(self.shown, msg)

    def marker(self, timeout: float) -> tuple:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                shown = dict(self.shown)
            if shown:
                assert list(shown) == [(SINGLE_VIEW_NAMESPACE, 0)], list(shown)
                return shown[(SINGLE_VIEW_NAMESPACE, 0)]
            time.sleep(0.05)
        pytest.fail(f"no marker on {SINGLE_VIEW_MESH_TOPIC} within {timeout} s")


def filled_voxel_map(listener: MapListener) -> tuple[np.ndarray] | None:
    """(the voxel map's points,) once it holds voxels the network added (observed 0), else None."""
    if listener.voxel_map is None:
        return None
    points = pointcloud2_to_array(listener.voxel_map)
    return (points,) if (points["observed"] == 0).any() else None


@pytest.fixture(scope="module")
def room_bag(tmp_path_factory):
    root = tmp_path_factory.mktemp("single_view_room")
    frames = list(open_sequence(write_synthetic_scene(root / "room", seed=ROOM_SEED, num_frames=NUM_FRAMES,
                                                      camera=CAMERA)))
    config = RosbagWriterConfig(start_time_ns=START_NS, frame_rate=10.0)
    with RosbagWriter(root / "bag", config) as writer:
        for frame in frames:
            writer.write(frame)
    return root / "bag", [START_NS + round(i * SEC / 10) for i in range(NUM_FRAMES)]


def test_the_node_publishes_the_newest_frames_predicted_scene_and_fills_the_map(dds, room_bag, tmp_path):
    env, context = dds
    bag, stamps = room_bag
    overrides = {**OVERRIDES, "output_dir": str(tmp_path / "maps")}
    listener, meshes = MapListener(context, "single_view_map_listener"), SingleViewListener(context)
    process = start_node(env, tmp_path, overrides)
    try:
        process = discovered_or_restarted(process, lambda: start_node(env, tmp_path, overrides), listener.has_status,
                                          "the mapping node")
        play_to_subscribers(bag, env, rate=0.5)  # 5 frames/s
        status = listener.wait_until_idle(timeout=120, mesh=False)
        frame_id, stamp, corners, _ = meshes.marker(timeout=60)
        single_view = listener.wait_for(lambda view: view.status["single_view"]["runs"] > 0 and view.status, 60,
                                        "a single-view run in the status")["single_view"]
        cloud, = listener.wait_for(filled_voxel_map, 60, "filled voxels in the voxel map")
    finally:
        meshes.close()
        listener.close()
        stop_process(process)
    print(f"\nsingle view in the node: {single_view}; marker of {len(corners) // 3} triangles at {stamp}; voxel map "
          f"{int((cloud['observed'] == 0).sum())} filled of {len(cloud)} points")
    assert "Traceback" not in node_log(process)
    assert status["integrated"] == NUM_FRAMES and not status["dropped"], status  # integration never waited
    assert single_view["active"] and single_view["error"] is None and single_view["errors"] == 0, single_view
    assert single_view["voxels_filled"] > 0
    assert frame_id == RosbagFrames().optical and stamp in stamps
    assert len(corners) >= 3 * 100
    x, y, z = corners.T
    assert (z >= NEAR - 1e-3).all() and (z <= FAR + 1e-3).all()
    u, v = x / z * CAMERA.fx + CAMERA.cx, y / z * CAMERA.fy + CAMERA.cy
    assert (np.abs(u - (CAMERA.width - 1) / 2) <= CAMERA.width / 2 + 1e-3).all()
    assert (np.abs(v - (CAMERA.height - 1) / 2) <= CAMERA.height / 2 + 1e-3).all()
    assert (cloud["observed"] == 1).any()  # the observations are there too, flagged apart
