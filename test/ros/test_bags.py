"""ROS 2 bags: frames -> bag (rosbags) -> frames, bag contents as rclpy sees them, and playback over real DDS (of ROS 1
bags too); play-bag's camera topics."""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import closing

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from support.dds_processes import DISCOVERY_TIMEOUT_S, dds_environment, free_domain_id, player_command
from support.mcap_bags import McapBag, camera_info, compressed_depth_16uc1, header, png_bytes, write_camera_bag
from support.ros1_bags import write_ros1_camera_bag
from semantic_recon_ros.commands import make_bag, play_bag
from semantic_recon_ros.commands.play_bag import EXIT_NO_SUBSCRIBERS
from semantic_recon_ros.core.datasets.bag_files import open_bag
from semantic_recon_ros.core.datasets.rosbag_sequence import RosbagSequence, RosbagTopics
from semantic_recon_ros.core.datasets.rosbag_writer import (
    R_LINK_OPTICAL,
    RosbagFrames,
    RosbagWriter,
    RosbagWriterConfig,
)
from semantic_recon_ros.core.frame import RGBDFrame


SEC = 1_000_000_000
START = 1_700_000_000 * SEC


def with_labels(frame: RGBDFrame) -> RGBDFrame:
    """The frame plus class ids derived from its depth (0..12 by 0.4 m bins, 255 where depth is invalid)."""
    labels = np.where(frame.depth > 0, np.minimum(frame.depth / 0.4, 12), 255).astype(np.int64)
    return RGBDFrame(frame.color, frame.depth, frame.camera, frame.T_world_cam, frame.timestamp, labels, frame.name)


@pytest.fixture(scope="module")
def source_frames(seven_scenes):
    return [with_labels(frame) for frame in seven_scenes.subset(stride=7, max_frames=6)]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("depth_encoding", ["32FC1", "16UC1"])
def test_write_then_read_back_equals_source(tmp_path, source_frames, storage, depth_encoding):
    path = tmp_path / "bag"
    config = RosbagWriterConfig(storage=storage, depth_encoding=depth_encoding)
    with RosbagWriter(path, config) as writer:
        stamps = [writer.write(frame) for frame in source_frames]
    assert stamps == [START + round(i * SEC / 30) for i in range(len(source_frames))]
    with RosbagSequence(path) as sequence:
        assert len(sequence) == len(source_frames) and sequence.num_skipped == 0
        assert sequence.camera == source_frames[0].camera
        for source, frame, stamp in zip(source_frames, sequence, stamps):
            np.testing.assert_array_equal(frame.color, source.color)
            tolerance = 1e-6 if depth_encoding == "32FC1" else 0.001
            assert np.abs(frame.depth - source.depth).max() <= tolerance
            np.testing.assert_array_equal(frame.depth > 0, source.depth > 0)
            np.testing.assert_allclose(frame.T_world_cam, source.T_world_cam, atol=1e-6)
            np.testing.assert_array_equal(frame.labels, source.labels)
            assert frame.timestamp == stamp / SEC
        frame = sequence[-1]  # random access
        np.testing.assert_array_equal(frame.color, source_frames[-1].color)


def test_bag_contents_as_rclpy_deserializes_them(tmp_path, source_frames):
    rclpy_serialization = pytest.importorskip("rclpy.serialization")
    from sensor_msgs.msg import CameraInfo, Image
    from tf2_msgs.msg import TFMessage

    from semantic_recon_ros.ros.transform_conversions import transform_to_matrix

    path = tmp_path / "bag"
    frames = RosbagFrames(world="map", camera_link="cam_base", optical="cam_optical")
    with RosbagWriter(path, RosbagWriterConfig(frame_rate=10.0, start_time_ns=5 * SEC, frames=frames)) as writer:
        for frame in source_frames[:3]:
            writer.write(frame)
    types = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CameraInfo": CameraInfo, "tf2_msgs/msg/TFMessage": TFMessage}
    messages: dict[str, list] = {}
    with Reader(path) as reader:
        qos = {c.topic: c.ext.offered_qos_profiles[0].durability.name for c in reader.connections}
        for connection, log_time, raw in reader.messages():
            msg = rclpy_serialization.deserialize_message(raw, types[connection.msgtype])
            messages.setdefault(connection.topic, []).append((log_time, msg))
    assert sorted(messages) == ["/camera/color/camera_info", "/camera/color/image_raw", "/camera/depth/image_raw",
                                "/camera/semantic/image_raw", "/tf", "/tf_static"]
    assert qos["/tf_static"] == "TRANSIENT_LOCAL" and qos["/tf"] == "VOLATILE"
    assert [len(messages[topic]) for topic in ("/camera/color/image_raw", "/tf", "/tf_static")] == [3, 3, 1]
    for topic in ("/camera/color/image_raw", "/camera/depth/image_raw", "/camera/color/camera_info"):
        for i, (log_time, msg) in enumerate(messages[topic]):
            assert log_time == 5 * SEC + i * SEC // 10
            assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == divmod(log_time, SEC)
            assert msg.header.frame_id == "cam_optical"
    assert messages["/camera/color/image_raw"][0][1].encoding == "rgb8"
    assert messages["/camera/depth/image_raw"][0][1].encoding == "32FC1"
    assert messages["/camera/semantic/image_raw"][0][1].encoding == "mono8"
    (static,) = messages["/tf_static"][0][1].transforms
    assert (static.header.frame_id, static.child_frame_id) == ("cam_base", "cam_optical")
    np.testing.assert_allclose([static.transform.rotation.x, static.transform.rotation.y, static.transform.rotation.z,
                                static.transform.rotation.w], [-0.5, 0.5, -0.5, 0.5], atol=1e-12)
    T_link_optical = transform_to_matrix(static)
    np.testing.assert_allclose(T_link_optical[:3, :3], R_LINK_OPTICAL, atol=1e-12)
    np.testing.assert_allclose(T_link_optical[:3, :3] @ [0, 0, 1], [1, 0, 0], atol=1e-12)  # optical z = forward = link x
    for (_, tf), source in zip(messages["/tf"], source_frames):
        (dynamic,) = tf.transforms
        assert (dynamic.header.frame_id, dynamic.child_frame_id) == ("map", "cam_base")
        np.testing.assert_allclose(transform_to_matrix(dynamic) @ T_link_optical, source.T_world_cam, atol=1e-9)


def test_frame_timestamps_mode_and_skipped_frames(tmp_path, source_frames):
    times = [100.0, 100.05, 100.2, 100.21]
    frames = []
    for i, t in enumerate(times):
        f = source_frames[i]
        depth = None if i == 2 else f.depth  # no depth message for frame 2
        frames.append(RGBDFrame(f.color, depth, f.camera, f.T_world_cam, t, None, f.name))
    path = tmp_path / "bag"
    config = RosbagWriterConfig(storage="sqlite3", frame_rate=None, start_time_ns=START)
    with RosbagWriter(path, config) as writer:
        stamps = [writer.write(frame) for frame in frames]
    assert stamps == [START + round((t - 100.0) * SEC) for t in times]
    with RosbagSequence(path, max_time_difference=0.005) as sequence:
        assert len(sequence) == 3 and sequence.num_skipped == 1  # frame 2 has no depth within 5 ms
        assert [frame.timestamp for frame in sequence] == [stamps[i] / SEC for i in (0, 1, 3)]
        assert all(frame.labels is None for frame in sequence)
        np.testing.assert_allclose(sequence[2].T_world_cam, frames[3].T_world_cam, atol=1e-6)
    with RosbagSequence(path, max_time_difference=0.2) as sequence:  # frame 2 now borrows a neighbour's depth
        assert len(sequence) == 4 and sequence.num_skipped == 0

    with pytest.raises(ValueError, match="not after the previous frame"):
        with RosbagWriter(tmp_path / "bad", config) as writer:
            writer.write(frames[1])
            writer.write(frames[0])


def test_pose_lookup_interpolates_between_tf_samples(tmp_path, source_frames):
    """A color image stamped between two /tf samples gets the tf2-interpolated pose."""
    from semantic_recon_ros.core.transform_tree import TransformTree

    path = tmp_path / "bag"
    with RosbagWriter(path, RosbagWriterConfig()) as writer:
        for frame in source_frames[:2]:
            writer.write(frame)
    with RosbagSequence(path, world_frame="world") as sequence:
        tree = sequence._tree
        middle = START + SEC // 60
        T = tree.lookup("world", "camera_color_optical_frame", middle)
        expected = TransformTree()
        for i, frame in enumerate(source_frames[:2]):
            expected.set_transform_matrix("world", "cam", START + round(i * SEC / 30), frame.T_world_cam)
        np.testing.assert_allclose(T, expected.lookup("world", "cam", middle), atol=1e-9)


def test_bad_inputs_raise_clear_errors(tmp_path, source_frames):
    path = tmp_path / "bag"
    with RosbagWriter(path) as writer:
        writer.write(source_frames[0])
    with pytest.raises(ValueError, match="already exists"):
        RosbagWriter(path)
    with pytest.raises(ValueError, match=r"no color topic /nope \(nor /nope/compressed\); topics in the bag: "
                                         r"/camera/color/camera_info \(sensor_msgs/msg/CameraInfo\)"):
        RosbagSequence(path, topics=RosbagTopics(color="/nope"), fixed_topics=["color"])
    with pytest.raises(ValueError, match='first problem: "nowhere" passed to lookup as target frame does not exist'):
        RosbagSequence(path, world_frame="nowhere")
    with pytest.raises(FileNotFoundError, match="bag not found"):
        RosbagSequence(tmp_path / "missing")
    with pytest.raises(ValueError, match="is not a ROS 2 bag: no metadata.yaml, and it must then hold exactly one "
                                         r".mcap or .db3 file \(found: none\)"):
        RosbagSequence(tmp_path)
    with pytest.raises(ValueError, match="unknown bag storage 'rosbag1'"):
        RosbagWriterConfig(storage="rosbag1")
    with pytest.raises(ValueError, match="start_time_ns must be > 0"):
        RosbagWriterConfig(start_time_ns=0)


def test_make_bag_command(tmp_path, seven_scenes):
    parser = argparse.ArgumentParser()
    make_bag.add_arguments(parser)
    out = tmp_path / "kitchen"
    args = parser.parse_args([str(seven_scenes.root), str(out), "--storage", "sqlite3", "--stride", "2",
                              "--max-frames", "3", "--depth-encoding", "16UC1", "--frame-rate", "15"])
    assert make_bag.run(args) == 0
    source = seven_scenes.subset(stride=2, max_frames=3)
    with RosbagSequence(out) as sequence:
        assert len(sequence) == 3
        for expected, frame, i in zip(source, sequence, range(3)):
            np.testing.assert_array_equal(frame.color, expected.color)
            np.testing.assert_array_equal(frame.depth, expected.depth)  # 7-Scenes depth is whole millimetres
            np.testing.assert_allclose(frame.T_world_cam, expected.T_world_cam, atol=1e-6)
            assert frame.timestamp == (START + round(i * SEC / 15)) / SEC
    assert any(out.glob("*.db3"))


# --- playback over real DDS -------------------------------------------------------------------


def test_player_rate_prefix_and_stop_in_process(tmp_path, source_frames):
    rclpy = pytest.importorskip("rclpy")
    import threading

    from semantic_recon_ros.ros.bag_player import BagPlayer, BagPlayerConfig, message_class

    bag = tmp_path / "bag"
    with RosbagWriter(bag, RosbagWriterConfig(frame_rate=1.0)) as writer:  # 3 frames, 2 s of bag time
        for frame in source_frames[:3]:
            writer.write(frame)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(np.random.default_rng().integers(100, 200)))
    try:
        node = rclpy.create_node("player_test", context=context)
        player = BagPlayer(node, bag, BagPlayerConfig(rate=4.0, topic_prefix="/replay"))
        assert player.topics == ["/replay/camera/color/camera_info", "/replay/camera/color/image_raw",
                                 "/replay/camera/depth/image_raw", "/replay/camera/semantic/image_raw", "/tf", "/tf_static"]
        assert player.message_count == 16 and player.duration_s == pytest.approx(2.0)
        start = time.monotonic()
        assert player.play() == 16
        assert 0.45 < time.monotonic() - start < 1.0  # 2 s of bag time at rate 4
        assert player.published["/replay/camera/color/image_raw"] == 3 and player.published["/tf_static"] == 1
        stop = threading.Event()
        threading.Timer(0.2, stop.set).start()
        assert 1 <= player.play(stop) < 16  # the first frame is published at once, then stopped
        player.close()
    finally:
        rclpy.try_shutdown(context=context)
    with pytest.raises(ValueError, match="not installed for rclpy"):
        message_class("no_such_msgs/msg/Thing")
    with pytest.raises(ValueError, match="no metadata.yaml, and it must then hold exactly one .mcap or .db3 file"):
        BagPlayer(None, tmp_path)
    with pytest.raises(ValueError, match="rate must be positive"):
        BagPlayerConfig(rate=0)


def test_player_publishes_a_bag_files_camera_topics_under_the_default_names(tmp_path, source_frames):
    """play-bag --color-topic/--depth-topic/--camera-info-topic on a bare .mcap file with other topic names, and the
    same topics found by message type without the options."""
    rclpy = pytest.importorskip("rclpy")
    from semantic_recon_ros.ros.bag_player import BagPlayer, BagPlayerConfig

    bag = tmp_path / "robot.mcap"
    write_camera_bag(bag, source_frames[:2], "png", color_topic="/head/rgb/compressed",
                     depth_topic="/head/depth/compressedDepth", info_topic="/head/rgb/info")
    parser = argparse.ArgumentParser()
    play_bag.add_arguments(parser)
    args = parser.parse_args([str(bag), "--color-topic", "/head/rgb", "--depth-topic", "head/depth/compressedDepth",
                              "--camera-info-topic", "/head/rgb/info"])
    expected = (("/head/rgb/compressed", "/camera/color/image_raw/compressed"),
                ("/head/depth/compressedDepth", "/camera/depth/image_raw/compressedDepth"),
                ("/head/rgb/info", "/camera/color/camera_info"))
    with closing(open_bag(bag)) as reader:
        remaps, notes = play_bag.camera_remaps(args, reader)
        assert remaps == expected and notes == []
        detected, notes = play_bag.camera_remaps(parser.parse_args([str(bag)]), reader)  # found by message type
        assert detected == expected
        assert notes == ["publishing /head/rgb/compressed as /camera/color/image_raw/compressed (its color topic, "
                         "found by message type)",
                         "publishing /head/depth/compressedDepth as /camera/depth/image_raw/compressedDepth (its depth "
                         "topic, found by message type)",
                         "publishing /head/rgb/info as /camera/color/camera_info (its camera_info topic, found by "
                         "message type)"]
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(np.random.default_rng().integers(100, 200)))
    try:
        node = rclpy.create_node("remap_test", context=context)
        player = BagPlayer(node, bag, BagPlayerConfig(topic_remaps=remaps))
        assert player.topics == ["/camera/color/camera_info", "/camera/color/image_raw/compressed",
                                 "/camera/depth/image_raw/compressedDepth", "/tf"]
        player.close()
        with pytest.raises(ValueError, match=r"has no topic /head/ir; topics in the bag: /head/depth/compressedDepth"):
            BagPlayer(node, bag, BagPlayerConfig(topic_remaps=(("/head/ir", "/camera/color/image_raw"),)))
    finally:
        rclpy.try_shutdown(context=context)


def test_player_keeps_the_names_when_no_single_topic_fits(tmp_path, source_frames):
    """play-bag without topic options: a bag with the default names is played as it is; of two color topics neither
    is chosen (a note says so), while the one depth and camera_info topics are."""
    parser = argparse.ArgumentParser()
    play_bag.add_arguments(parser)
    default = tmp_path / "default.mcap"  # the compressed variants of the default names
    write_camera_bag(default, source_frames[:1], "png")
    with closing(open_bag(default)) as reader:
        assert play_bag.camera_remaps(parser.parse_args([str(default)]), reader) == ((), [])
    frame = source_frames[0]
    stereo = tmp_path / "stereo.mcap"
    bag = McapBag(stereo)
    for topic in ("/left/compressed", "/right/compressed"):
        bag.write(topic, "sensor_msgs/msg/CompressedImage",
                  {"header": header(START), "format": "png", "data": png_bytes(frame.color)}, START)
    bag.write("/left/depth/compressedDepth", "sensor_msgs/msg/CompressedImage",
              {"header": header(START), **compressed_depth_16uc1(frame.depth)}, START)
    bag.write("/left/info", "sensor_msgs/msg/CameraInfo", camera_info(frame, START), START)
    bag.close()
    with closing(open_bag(stereo)) as reader:
        remaps, notes = play_bag.camera_remaps(parser.parse_args([str(stereo)]), reader)
    assert remaps == (("/left/depth/compressedDepth", "/camera/depth/image_raw/compressedDepth"),
                      ("/left/info", "/camera/color/camera_info"))
    assert notes[0] == ("several color topics (/left/compressed, /right/compressed): published under their own names; "
                        "name one with --color-topic")


SUBSCRIBER = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import rclpy
    from rclpy.qos import QoSProfile
    from rclpy.time import Time
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, Image
    from semantic_recon_ros.ros.image_conversions import decode_color_image, decode_depth_image
    from semantic_recon_ros.ros.tf_buffer import Buffer, TransformListener
    from semantic_recon_ros.ros.time_sync import ApproximateTimeSynchronizer, Subscriber
    from semantic_recon_ros.ros.transform_conversions import transform_to_matrix

    expected = json.loads(sys.argv[1])
    rclpy.init()
    node = rclpy.create_node("bag_test_subscriber")
    counts = {topic: 0 for topic in expected}
    stamps, checksums, synced, clock = [], [], [], []

    def counter(topic):
        def callback(msg):
            counts[topic] += 1
            if topic == "/camera/color/image_raw":
                stamps.append(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
                checksums.append(int(decode_color_image(msg).sum(dtype=np.int64)))
        return callback

    qos = QoSProfile(depth=100)
    node.create_subscription(CameraInfo, "/camera/color/camera_info", counter("/camera/color/camera_info"), qos)
    color = Subscriber(node, Image, "/camera/color/image_raw", qos_profile=qos)
    depth = Subscriber(node, Image, "/camera/depth/image_raw", qos_profile=qos)
    color.registerCallback(counter("/camera/color/image_raw"))
    depth.registerCallback(counter("/camera/depth/image_raw"))
    sync = ApproximateTimeSynchronizer([color, depth], queue_size=20, slop=0.005)
    sync.registerCallback(lambda c, d: synced.append(float(np.nansum(decode_depth_image(d)))))
    node.create_subscription(Clock, "/clock", lambda msg: clock.append(msg.clock.sec * 10**9 + msg.clock.nanosec), qos)
    class CountingListener(TransformListener):  # the only /tf and /tf_static subscriptions: the player waits for one
        def callback(self, msg):
            counts["/tf"] += 1
            super().callback(msg)

        def static_callback(self, msg):
            static_count[0] += 1
            super().static_callback(msg)

    buffer = Buffer()
    static_count = [0]
    listener = CountingListener(buffer, node)
    print("READY", flush=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
        counts["/tf_static"] = static_count[0]
        complete = all(counts[topic] >= n for topic, n in expected.items())
        if complete and len(synced) >= len(stamps) and clock and clock[-1] >= stamps[-1]:
            break
    try:
        poses = [transform_to_matrix(buffer.lookup_transform("world", "camera_color_optical_frame",
                                                             Time(nanoseconds=s))).tolist() for s in stamps]
    except Exception as error:  # still report what arrived: the test's assertion then says what was missing
        poses = repr(error)
    print(json.dumps({"counts": counts, "stamps": stamps, "checksums": checksums, "synced": synced, "poses": poses,
                      "clock": clock}))
    rclpy.try_shutdown()
    """
)

@pytest.mark.parametrize("bag_format", ["ros2", "ros1"])
def test_player_delivers_every_message_to_another_process(tmp_path, seven_scenes, bag_format):
    """Every message of a ROS 2 bag, and of a ROS 1 bag (16UC1 depth, tf/tfMessage on /tf, a latched /tf_static,
    a /rosout that ROS 2 has no type for) as ROS 2 messages, arrives in another process."""
    pytest.importorskip("rclpy")
    source = list(seven_scenes.subset(stride=10, max_frames=10))
    if bag_format == "ros2":
        bag = tmp_path / "bag"
        with RosbagWriter(bag) as writer:
            for frame in source:
                writer.write(frame)
    else:
        bag = tmp_path / "camera.bag"
        write_ros1_camera_bag(bag, source, compressed=False)
    env = dds_environment(free_domain_id())
    expected = {"/camera/color/image_raw": 10, "/camera/depth/image_raw": 10, "/camera/color/camera_info": 10,
                "/tf": 10, "/tf_static": 1}
    subscriber = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, json.dumps(expected)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert subscriber.stdout.readline().strip() == "READY"
        start = time.monotonic()
        player = subprocess.run(player_command(bag, "--wait-for-subscribers", str(DISCOVERY_TIMEOUT_S), "--clock"),
                                env=env, capture_output=True, text=True, timeout=DISCOVERY_TIMEOUT_S + 60)
        play_seconds = time.monotonic() - start
        assert player.returncode == 0, player.stderr
        assert "published 41 messages on 5 topics" in player.stdout
        assert ("not playing /rosout (rosgraph_msgs/msg/Log)" in player.stderr) == (bag_format == "ros1")
        output, errors = subscriber.communicate(timeout=60)
    finally:
        subscriber.kill()
    assert output.strip(), f"the subscriber printed nothing: {errors}"
    result = json.loads(output.strip().splitlines()[-1])
    assert result["counts"] == expected, errors
    assert result["stamps"] == [START + round(i * SEC / 30) for i in range(10)]
    assert result["checksums"] == [int(frame.color.sum(dtype=np.int64)) for frame in source]
    np.testing.assert_allclose(result["synced"], [float(frame.depth.sum(dtype=np.float64)) for frame in source], rtol=1e-6)
    for pose, frame in zip(result["poses"], source):
        np.testing.assert_allclose(pose, frame.T_world_cam, atol=1e-6)
    clock = result["clock"]
    assert len(clock) >= 41 and clock == sorted(clock)  # one before every message, more in between
    assert clock[0] == START and clock[-1] == result["stamps"][-1]
    print(f"player process: {play_seconds:.2f} s including start-up and discovery")


def test_player_stops_cleanly_on_ctrl_c(tmp_path, source_frames):
    pytest.importorskip("rclpy")
    bag = tmp_path / "bag"
    with RosbagWriter(bag, RosbagWriterConfig(frame_rate=1.0)) as writer:  # 6 s of data
        for frame in source_frames:
            writer.write(frame)
    env = dds_environment(free_domain_id())
    # SIGINT as in a terminal (a background parent may have set it to "ignore", which children inherit).
    player = subprocess.Popen(player_command(bag, "--clock"), env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert player.stdout.readline().startswith("playing 31 messages (5.0 s at rate 1.0)")
    time.sleep(1.0)
    player.send_signal(signal.SIGINT)
    try:
        output, errors = player.communicate(timeout=10)
    finally:
        player.kill()
    assert player.returncode == 130, errors
    published = int(re.search(r"playback stopped \(Ctrl-C\) after (\d+) messages", output).group(1))
    assert 1 <= published < 31  # stopped mid-bag (1 Hz frames, interrupted after about 1 s)
    assert "Traceback" not in errors


def test_player_requiring_subscribers_publishes_nothing_without_them(tmp_path, source_frames):
    pytest.importorskip("rclpy")
    bag = tmp_path / "bag"
    with RosbagWriter(bag) as writer:
        writer.write(source_frames[0])
    player = subprocess.run(player_command(bag, "--wait-for-subscribers", "1", "--require-subscribers"),
                            env=dds_environment(free_domain_id()), capture_output=True, text=True, timeout=60)
    assert player.returncode == EXIT_NO_SUBSCRIBERS, player.stderr
    assert "no subscriber after 1 s on: /camera/color/camera_info" in player.stderr
    assert "published nothing" in player.stderr and "published 0" not in player.stdout
