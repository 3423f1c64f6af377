"""The mapping node as a separate process over real DDS, fed by bags played from another process.

One node process (the shipped config/mapping.yaml plus -p overrides: sim time, labels, reliable input
QoS so that a busy machine cannot lose best-effort frames, fast status and mesh rates, a temp
output_dir, save on shutdown) serves the tests of this module in order: parameters, a synthetic room
with exact ground truth (geometry and labels), a late mesh subscriber, the save and reset services, a
7-Scenes bag (same surface as the core fusing offline), bad inputs and a flood (more hostile input in
test_hostile_inputs.py), the save on Ctrl-C (the RGB-only mode: test_mapping_node_rgb_only.py). The test
process receives mesh, voxel_map, class_legend and ~/status and calls the services. ROS_DOMAIN_ID is a free id in 100-199;
FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA. The default best-effort input QoS is exercised by bench/bench_node.py.
"""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import numpy as np
import open3d as o3d
import pytest
import torch

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from rcl_interfaces.srv import DescribeParameters, GetParameters  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from support.semantic_colors import vertex_labels  # noqa: E402
from support.dds_processes import discovered_or_restarted, play_to_subscribers  # noqa: E402
from support.saved_maps import SET, assert_clean, assert_consistent  # noqa: E402
from support.mapping_node_process import CONFIG, FramePublisher, MapListener, node_log, start_node  # noqa: E402
from semantic_recon_ros.cli import main as cli_main  # noqa: E402
from semantic_recon_ros.ros.node_config import SECTIONS, parameter_name  # noqa: E402
from semantic_recon_ros.core.camera import PinholeCamera  # noqa: E402
from semantic_recon_ros.core.classes import load_class_set  # noqa: E402
from semantic_recon_ros.core.config.fields import parameter_rows  # noqa: E402
from semantic_recon_ros.core.datasets import open_sequence  # noqa: E402
from semantic_recon_ros.core.datasets.rosbag_writer import RosbagWriter, RosbagWriterConfig  # noqa: E402
from semantic_recon_ros.core.frame import RGBDFrame  # noqa: E402
from semantic_recon_ros.core.meshing import extract_mesh  # noqa: E402
from semantic_recon_ros.core.ply import read_semantic_ply  # noqa: E402
from semantic_recon_ros.core.synthetic import DEFAULT_CAMERA, load_ground_truth, union_sdf, write_synthetic_scene  # noqa: E402
from semantic_recon_ros.core.map import SemanticTSDFVolume, load_volume  # noqa: E402
from semantic_recon_ros.core.config.volume import VolumeConfig  # noqa: E402
from semantic_recon_ros.ros.camera_info_conversions import camera_to_camera_info_msg  # noqa: E402
from semantic_recon_ros.ros.header_conversions import time_msg  # noqa: E402
from semantic_recon_ros.ros.image_conversions import color_to_image_msg, depth_to_image_msg  # noqa: E402
from semantic_recon_ros.ros.mapping_node import LATCHED_QOS  # noqa: E402
from semantic_recon_ros.ros.pointcloud_conversions import pointcloud2_to_array  # noqa: E402


SEC = 1_000_000_000
SYNTHETIC_START = 1_700_000_000 * SEC  # each data source gets its own stretch of (sim) time
KITCHEN_START = SYNTHETIC_START + 1000 * SEC
BAD_INPUT_START = SYNTHETIC_START + 2000 * SEC
VOXEL = 0.04
CLASSES = load_class_set()
NODE_OVERRIDES = {
    "use_sim_time": "true", "use_labels": "true", "mesh_color_mode": "semantic", "input_qos": "reliable",
    "status_period": "0.5", "mesh_rate": "2.0", "voxel_map_rate": "2.0", "queue_size": "10",
    "save_on_shutdown": "true", "checkpoint": "''",  # fusion only: the completion network has its own tests
    "segmenter": "''",  # labels from the semantic topic: live segmentation has its own test
}


# ------------------------------------------------------------------ node processes
@pytest.fixture(scope="module")
def output_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("maps")


@pytest.fixture(scope="module")
def node_process(dds, output_dir, listener_node, tmp_path_factory):
    """The node with the shipped YAML, once ``listener_node`` receives its status (restarted when it does not)."""
    env, _ = dds
    logs = tmp_path_factory.mktemp("node_logs")
    process = start_node(env, logs, {**NODE_OVERRIDES, "output_dir": str(output_dir)})
    try:
        process = discovered_or_restarted(
            process, lambda: start_node(env, logs, {**NODE_OVERRIDES, "output_dir": str(output_dir)}),
            listener_node.has_status, "the mapping node")
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def listener_node(dds):
    _, context = dds
    listener = MapListener(context)
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def listener(listener_node, node_process):
    """The test process's view of the node, once the node is discovered."""
    return listener_node


# ------------------------------------------------------------------ data
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A synthetic room (30 frames, 320x240, exact labels) and its bag."""
    root = tmp_path_factory.mktemp("synthetic")
    scene = write_synthetic_scene(root / "room", seed=5, num_frames=30, camera=DEFAULT_CAMERA.scaled(320, 240))
    frames = list(open_sequence(scene))
    with RosbagWriter(root / "bag", RosbagWriterConfig(start_time_ns=SYNTHETIC_START)) as writer:
        for frame in frames:
            writer.write(frame)
    return frames, load_ground_truth(scene), root / "bag"


def unlabeled(frame: RGBDFrame) -> RGBDFrame:
    """The frame with an all-unlabeled label image (the node subscribes to labels; 7-Scenes has none)."""
    labels = np.full(frame.depth.shape, 255, np.int64)
    return RGBDFrame(frame.color, frame.depth, frame.camera, frame.T_world_cam, frame.timestamp, labels, frame.name)


@pytest.fixture(scope="module")
def kitchen(seven_scenes, tmp_path_factory):
    """20 real 7-Scenes frames (640x480, every 10th), their bag, and their mesh fused offline by the core."""
    frames = [unlabeled(frame) for frame in seven_scenes.subset(stride=10, max_frames=20)]
    bag = tmp_path_factory.mktemp("kitchen") / "bag"
    with RosbagWriter(bag, RosbagWriterConfig(start_time_ns=KITCHEN_START, depth_encoding="16UC1")) as writer:
        for frame in frames:
            writer.write(frame)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the node does: far faster on a shared 2-core machine
    try:
        volume = SemanticTSDFVolume(VolumeConfig(), CLASSES.names, "cpu")
        for frame in frames:
            volume.integrate(frame.depth, frame.camera, frame.T_world_cam, color=frame.color, labels=frame.labels)
        offline = extract_mesh(volume)
    finally:
        torch.set_num_threads(threads)
    return frames, bag, offline


# ------------------------------------------------------------------ tests, in order
def test_parameters_are_declared_from_the_table(listener, output_dir):
    names = [parameter_name(section, name) for section, cls in SECTIONS for name, *_ in parameter_rows(cls)]
    described = listener.call("/mapping_node/describe_parameters", DescribeParameters,
                              DescribeParameters.Request(names=names)).descriptors
    rows = [row for _, cls in SECTIONS for row in parameter_rows(cls)]
    for descriptor, (name, default, description, valid) in zip(described, rows):
        assert descriptor.description == description and descriptor.read_only, descriptor.name
        if valid.startswith("["):
            bounds = descriptor.floating_point_range or descriptor.integer_range
            assert f"[{bounds[0].from_value:g}, {bounds[0].to_value:g}]" == valid, descriptor.name
        elif valid:
            assert descriptor.additional_constraints == "one of: " + valid.replace(" | ", ", "), descriptor.name
    values = listener.call("/mapping_node/get_parameters", GetParameters,
                           GetParameters.Request(names=["volume.voxel_size", "use_labels", "output_dir", "queue_size"]))
    assert [v.double_value for v in values.values[:1]] == [VOXEL]  # from the shipped YAML
    assert values.values[1].bool_value and values.values[2].string_value == str(output_dir)  # -p overrides
    assert values.values[3].integer_value == int(NODE_OVERRIDES["queue_size"])


def test_synthetic_bag_gives_the_true_geometry_and_labels(dds, listener, synthetic):
    env, _ = dds
    frames, truth, bag = synthetic
    play_to_subscribers(bag, env, rate=0.5)
    status = listener.wait_until_idle()
    print(f"\nsynthetic bag: {status}")
    assert status["frames_in"] >= 25 and status["integrated"] >= 20, status  # reliable QoS: nearly every frame
    assert SYNTHETIC_START <= status["map_stamp_ns"] < SYNTHETIC_START + SEC

    points, colors, _ = listener.mesh()
    with listener.lock:
        assert {m[0] for m in listener.shown.values()} == {"world"}
        assert len(listener.shown) == status["mesh_regions"] > 1
    distance, nearest = union_sdf(points, truth.scene.box_arrays)
    distance = np.abs(distance)
    labels = vertex_labels(colors)
    labeled = labels >= 0
    accuracy = float((labels[labeled] == truth.scene.class_ids[nearest][labeled]).mean())
    print(f"mesh: {len(points) // 3} triangles, distance to the true surface median {np.median(distance) * 1000:.1f} mm,"
          f" p90 {np.percentile(distance, 90) * 1000:.1f} mm; labeled {labeled.mean():.3f}, accuracy {accuracy:.3f}")
    assert len(points) // 3 > 5000
    assert np.median(distance) < VOXEL / 4 and np.percentile(distance, 90) < VOXEL
    assert labeled.mean() > 0.95 and accuracy > 0.9

    def newest_voxel_map(l):
        stamp = l.voxel_map.header.stamp if l.voxel_map is not None else None
        return stamp is not None and stamp.sec * SEC + stamp.nanosec == status["map_stamp_ns"] and l.voxel_map

    cloud = pointcloud2_to_array(listener.wait_for(newest_voxel_map, 10, "the voxel map of the newest frame"))
    legend = listener.legend
    xyz = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=1).astype(np.float64)
    distance, nearest = union_sdf(xyz, truth.scene.box_arrays)
    labeled = cloud["label"] >= 0
    accuracy = float((cloud["label"][labeled] == truth.scene.class_ids[nearest][labeled]).mean())
    print(f"voxel map: {len(cloud)} voxels, |distance| p95 {np.percentile(np.abs(distance), 95) * 1000:.1f} mm, "
          f"labeled {labeled.mean():.3f}, accuracy {accuracy:.3f}")
    assert len(cloud) > 5000 and (cloud["observed"] == 1).all()
    assert np.percentile(np.abs(distance), 95) < 1.5 * VOXEL  # voxel centres within one voxel of the fused surface
    assert labeled.mean() > 0.9 and accuracy > 0.85
    assert (cloud["rgb"].view(np.uint32) > 0).mean() > 0.99  # fused colors (the rooms have no pure black)

    assert legend is not None
    assert [m.text for m in legend.markers] == [f"{i} {n}" for i, n in enumerate(CLASSES.names)] + ["unlabeled"]

    # the status also goes to /diagnostics, one DiagnosticStatus named after the node with every number as a value
    def diagnostics_of_this_status(l):
        entries = l.diagnostics.status if l.diagnostics is not None else []
        values = {kv.key: kv.value for entry in entries for kv in entry.values}
        return values.get("integrated") == str(status["integrated"]) and (entries[0], values)

    entry, values = listener.wait_for(diagnostics_of_this_status, 10, "the /diagnostics message of the last status")
    assert len(listener.diagnostics.status) == 1
    assert entry.name == "mapping_node: mapping" and entry.hardware_id == "semantic_recon_ros"
    assert values["blocks"] == str(status["blocks"]) and values["completion.active"] == "False"
    assert entry.level == (DiagnosticStatus.WARN if any(status["dropped"].values()) else DiagnosticStatus.OK)


def test_a_late_mesh_subscriber_receives_the_whole_mesh(dds, listener):
    _, context = dds
    late = MapListener(context, "late_listener", mesh_qos=LATCHED_QOS)  # depth 1: skips most of the mesh history
    try:
        expected = listener.mesh()
        late.wait_for(lambda l: len(l.mesh()[0]) == len(expected[0]), 30, "the whole mesh at the late subscriber")
        points, colors, stamp = late.mesh()
        order, expected_order = np.lexsort(points.T), np.lexsort(expected[0].T)
        np.testing.assert_array_equal(points[order], expected[0][expected_order])
        np.testing.assert_array_equal(colors[order], expected[1][expected_order])
        assert stamp == expected[2]
    finally:
        late.close()


def test_save_and_reset_services(listener, output_dir):
    status = listener.wait_until_idle()
    response = listener.call("/mapping_node/save_map")
    assert response.success, response.message
    saved = json.loads(response.message)
    folder = assert_consistent(output_dir, CLASSES)  # one set: the meshes are those of the volume
    assert str(folder) == saved["folder"] and {saved[k] for k in ("mesh_rgb", "mesh_semantic", "volume")} == {
        str(folder / name) for name in SET}
    assert_clean(output_dir)  # current, maps/ and the three names as links into current; no temporaries
    volume = load_volume(saved["volume"], "cpu")
    assert volume.num_blocks == saved["blocks"] == status["blocks"] and volume.class_names == CLASSES.names
    semantic, names = read_semantic_ply(saved["mesh_semantic"])
    rgb, _ = read_semantic_ply(saved["mesh_rgb"])
    assert names == list(CLASSES.names) and semantic.num_triangles == rgb.num_triangles == saved["triangles"]
    assert 3 * saved["triangles"] == len(listener.mesh()[0])  # the published mesh is the saved one
    np.testing.assert_array_equal(semantic.colors, CLASSES.colorize(semantic.labels))
    np.testing.assert_array_equal(rgb.labels, semantic.labels)
    assert saved["map_stamp_ns"] == status["map_stamp_ns"]

    response = listener.call("/mapping_node/reset_map")
    assert response.success and f"{status['blocks']} blocks cleared" in response.message, response.message
    listener.wait_for(lambda l: l.status["blocks"] == 0 and not l.shown and l.voxel_map.width == 0, 10,
                      "an empty map, mesh and voxel map")

    # ~/load_map restores the saved map (every layer) and republishes it in full
    response = listener.call("/mapping_node/load_map")
    assert response.success and json.loads(response.message)["blocks"] == saved["blocks"], response.message
    listener.wait_for(lambda l: l.status["blocks"] == saved["blocks"] and 3 * saved["triangles"] == len(l.mesh()[0]),
                      20, "the loaded map's mesh")
    save_again = json.loads(listener.call("/mapping_node/save_map").message)
    reloaded = load_volume(save_again["volume"], "cpu")
    assert torch.equal(reloaded.grid.block_coords(), volume.grid.block_coords())
    for layer in volume.grid.layer_names:
        assert torch.equal(reloaded.grid.values(layer), volume.grid.values(layer)), layer
    listener.call("/mapping_node/reset_map")
    listener.wait_for(lambda l: l.status["blocks"] == 0 and not l.shown, 10, "an empty map again")


def test_the_node_and_semantic_recon_map_build_identical_volumes(dds, listener, synthetic, tmp_path):
    """The same frames mapped live over DDS by the node and offline by `semantic-recon map --bag` (read directly)
    give the same volume, block for block and bit for bit: both map through the core's one Mapper."""
    env, _ = dds
    frames, _, _ = synthetic
    bag = tmp_path / "bag"
    with RosbagWriter(bag, RosbagWriterConfig(start_time_ns=SYNTHETIC_START + 100 * SEC)) as writer:
        for frame in frames[:10]:
            writer.write(frame)
    listener.call("/mapping_node/reset_map")
    before = listener.wait_until_idle()
    play_to_subscribers(bag, env, rate=0.25)
    status = listener.wait_until_idle()
    assert status["integrated"] - before["integrated"] == 10 and status["dropped"] == before["dropped"], status
    live = load_volume(json.loads(listener.call("/mapping_node/save_map").message)["volume"], "cpu")

    out = tmp_path / "offline"
    assert cli_main(["map", "--bag", str(bag), "--out", str(out), "--checkpoint", "", "--params-file", str(CONFIG)]) == 0
    offline = load_volume(out / "volume.pt", "cpu")
    assert live.num_blocks == offline.num_blocks > 0
    assert torch.equal(live.grid.block_coords(), offline.grid.block_coords())
    assert set(live.grid.layer_names) == set(offline.grid.layer_names)
    for layer in offline.grid.layer_names:
        assert torch.equal(live.grid.values(layer), offline.grid.values(layer)), layer
    assert float(offline.grid.values("semantic").sum()) > 0  # the labels were fused by both
    listener.call("/mapping_node/reset_map")


def test_seven_scenes_bag_gives_the_offline_surface(dds, listener, kitchen):
    env, _ = dds
    frames, bag, offline = kitchen
    before = listener.status["integrated"]
    play_to_subscribers(bag, env, rate=0.5)
    status = listener.wait_until_idle()
    print(f"\n7-Scenes bag: {status}")
    assert status["integrated"] - before >= 15  # of 20
    assert KITCHEN_START <= status["map_stamp_ns"] < KITCHEN_START + SEC

    points, colors, _ = listener.mesh()
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(offline.vertices.astype(np.float32), offline.triangles.astype(np.uint32))
    to_offline = scene.compute_distance(o3d.core.Tensor(points.astype(np.float32))).numpy()
    to_node, _ = cKDTree(points).query(offline.vertices)
    print(f"mesh: {len(points) // 3} triangles (offline {offline.num_triangles}); distance to the offline mesh "
          f"median {np.median(to_offline) * 1000:.2f} mm, p90 {np.percentile(to_offline, 90) * 1000:.1f} mm; "
          f"offline vertices within 1 voxel {(to_node < VOXEL).mean():.3f}")
    assert len(points) // 3 > 0.7 * offline.num_triangles
    assert np.median(to_offline) < 0.002 and np.percentile(to_offline, 90) < VOXEL / 2
    assert (to_node < VOXEL).mean() > 0.9
    assert (vertex_labels(colors) == -1).all()  # the 7-Scenes label images are all "unlabeled"


def uncalibrated(camera: PinholeCamera, stamp_ns: int) -> CameraInfo:
    """The CameraInfo of an uncalibrated camera driver: right size, all-zero K."""
    info = camera_to_camera_info_msg(camera, stamp_ns, "test_camera")
    info.k = [0.0] * 9
    return info


def test_bad_inputs_are_counted_and_mapping_goes_on(listener, synthetic, node_process):
    frames, _, _ = synthetic
    listener.call("/mapping_node/reset_map")
    before = listener.wait_until_idle()
    publisher = FramePublisher(listener.node)
    publisher.wait_for_node()
    stamp = BAD_INPUT_START
    publisher.clock.publish(Clock(clock=time_msg(stamp)))  # the node's sim time jumps to the new stretch first
    time.sleep(0.5)
    good, half = frames[0], frames[1]

    def next_stamp() -> int:
        nonlocal stamp
        stamp += SEC // 10
        return stamp

    small = good.camera.scaled(160, 120)
    nan_depth = np.full_like(good.depth, np.nan)
    half_nan = half.depth.copy()
    half_nan[:, : half.camera.width // 2] = np.nan
    s = next_stamp()
    yuv = color_to_image_msg(good.color, s, "test_camera")
    yuv.encoding = "yuv422"
    bad = [  # (expected reason, publish arguments)
        ("encoding", dict(stamp_ns=s, color=yuv)),
        ("encoding", dict(stamp_ns=next_stamp(), depth=color_to_image_msg(good.color, stamp, "test_camera"))),
        ("malformed", dict(stamp_ns=next_stamp(), color=Image(header=color_to_image_msg(good.color, stamp, "test_camera").header,
                                                                height=240, width=320, encoding="rgb8", step=960,
                                                                data=bytes(1000)))),
        ("size_mismatch", dict(stamp_ns=next_stamp(), depth=depth_to_image_msg(good.depth[::2, ::2], stamp, "test_camera"))),
        ("size_mismatch", dict(stamp_ns=next_stamp(), info_camera=small)),
        ("camera_info", dict(stamp_ns=next_stamp(), info=uncalibrated(good.camera, stamp))),
        ("no_valid_depth", dict(stamp_ns=next_stamp(), depth=depth_to_image_msg(nan_depth, stamp, "test_camera"))),
        ("no_valid_depth", dict(stamp_ns=next_stamp(),  # 16UC1 zeros: no reading anywhere
                                depth=depth_to_image_msg(np.zeros_like(good.depth), stamp, "test_camera", "16UC1"))),
        ("tf", dict(stamp_ns=next_stamp(), frame_id="camera_without_tf", pose=False)),
    ]
    bad_stamps = [  # each of the 4 messages is dropped on arrival, before the synchronizer, and counted
        ("stale", dict(stamp_ns=next_stamp(), clock_ns=stamp + 60 * SEC, clock_settle=0.3)),  # the clock ran ahead
        ("future", dict(stamp_ns=next_stamp() + 60 * SEC, clock_ns=stamp, clock_settle=0.3)),
    ]
    for _, arguments in bad + bad_stamps:
        publisher.publish(good, **arguments)
        time.sleep(0.05)
    publisher.publish(RGBDFrame(half.color, half_nan, half.camera, half.T_world_cam, 0.0, half.labels), next_stamp())
    for frame in frames[2:6]:
        publisher.publish(frame, next_stamp())
        time.sleep(0.05)
    status = listener.wait_until_idle()
    expected: dict[str, int] = {}
    for reason, _ in bad:
        expected[reason] = expected.get(reason, 0) + 1
    dropped = {reason: status["dropped"].get(reason, 0) - before["dropped"].get(reason, 0)
               for reason in {*status["dropped"], *before["dropped"]}}
    messages = {reason: status["dropped_messages"].get(reason, 0) - before["dropped_messages"].get(reason, 0)
                for reason in {*status["dropped_messages"], *before["dropped_messages"]}}
    print(f"\nbad inputs: dropped {dropped}, messages {messages}; {status}")
    assert {reason: count for reason, count in dropped.items() if count} == expected
    assert {reason: count for reason, count in messages.items() if count} == {"stale": 4, "future": 4}
    assert status["integrated"] - before["integrated"] == 5  # the half-NaN frame and the 4 good ones
    assert node_process.poll() is None
    log = node_log(node_process)
    for reason in [*expected, "stale", "future"]:
        assert f"[{reason}; counted" in log, f"no warning for {reason}"
    assert re.search(r"dropping \S+/\S+ message: stamp", log) and "Traceback" not in log

    # a stalled localization: the camera's TF stops just before a burst of frames, faster than processing. Each
    # frame waits for its pose at most until tf_timeout after its arrival (the burst costs one wait, not one per
    # frame); meanwhile the bounded queue drops its oldest frames, and everything is accounted for
    stalled = next_stamp()
    publisher.publish_pose(good.T_world_cam, stalled, "stalled_camera")
    flood = 4 * status["queue_size"]
    for i in range(flood):
        publisher.publish(frames[i % len(frames)], stalled + (i + 1) * SEC // 1000, frame_id="stalled_camera",
                          pose=False)
    flooded = listener.wait_until_idle()
    new = {reason: flooded["dropped"].get(reason, 0) - status["dropped"].get(reason, 0) for reason in ("queue_full", "tf")}
    print(f"flood of {flood} frames: {flooded['frames_in'] - status['frames_in']} in, dropped {new}")
    # sensor-data QoS may lose some of the burst in transport on a loaded machine; what arrives is all accounted for
    assert flooded["frames_in"] - status["frames_in"] == new["queue_full"] + new["tf"] > status["queue_size"]
    assert new["queue_full"] >= 1 and new["tf"] >= 1
    assert "[queue_full; counted" in node_log(node_process) and node_process.poll() is None

    for frame in frames[6:9]:  # still mapping afterwards
        publisher.publish(frame, next_stamp())
        time.sleep(0.05)
    after = listener.wait_until_idle()
    assert after["integrated"] == flooded["integrated"] + 3
    assert after["map_stamp_ns"] == stamp and listener.mesh()[2] == stamp


def test_ctrl_c_saves_the_map_and_exits_cleanly(listener, node_process, output_dir):
    status = listener.wait_until_idle()
    interrupted = time.time()
    node_process.send_signal(signal.SIGINT)
    assert node_process.wait(timeout=60) == 0, node_log(node_process)
    log = node_log(node_process)
    assert "Traceback" not in log and "saved the map on shutdown" in log
    assert "rosout" not in log  # nothing was logged after the rclpy context was shut down
    folder = assert_consistent(output_dir, CLASSES)
    assert (folder / "volume.pt").stat().st_mtime >= interrupted
    assert load_volume(output_dir / "volume.pt", "cpu").num_blocks == status["blocks"]
    assert_clean(output_dir)


def test_a_node_starts_from_a_saved_map(dds, output_dir, tmp_path):
    """initial_map restores every layer saved at shutdown (by test_ctrl_c_...); one that does not fit the node's
    volume settings stops the node with exit code 2 and a message naming the parameter."""
    env, context = dds
    saved = load_volume(output_dir / "volume.pt", "cpu")
    overrides = {**NODE_OVERRIDES, "save_on_shutdown": "false", "initial_map": str(output_dir),
                 "output_dir": str(tmp_path / "maps")}
    listener = MapListener(context, "initial_map_listener")
    process = start_node(env, tmp_path, overrides)
    try:
        process = discovered_or_restarted(process, lambda: start_node(env, tmp_path, overrides),
                                          listener.has_status, "the node started from a saved map")
        status = listener.fresh_status(20)
        assert status["blocks"] == saved.num_blocks > 0 and status["integrated"] == 0, status
        listener.wait_for(lambda l: len(l.mesh()[0]) > 0, 20, "the mesh of the loaded map")
        restored = load_volume(json.loads(listener.call("/mapping_node/save_map").message)["volume"], "cpu")
        for layer in saved.grid.layer_names:
            assert torch.equal(restored.grid.values(layer), saved.grid.values(layer)), layer
    finally:
        listener.close()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, node_log(process)

    misfit_logs = tmp_path / "misfit"
    misfit_logs.mkdir()
    misfit = start_node(env, misfit_logs, {**overrides, "volume.voxel_size": "0.05"})
    assert misfit.wait(timeout=60) == 2
    assert "initial_map" in node_log(misfit) and "voxel_size 0.04 (this map: 0.05)" in node_log(misfit)
