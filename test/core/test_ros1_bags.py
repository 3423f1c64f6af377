"""ROS 1 .bag files (written independently, :mod:`support.ros1_bags`) read as ROS 2 bags: the frames equal those of the
same frames written as a ROS 2 bag by the package's writer; topics without a ROS 2 equivalent are left out."""

from __future__ import annotations

from contextlib import closing

import numpy as np
import pytest
from rosbags.interfaces import QosDurability
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from semantic_recon_ros.core.datasets import detect_format, open_sequence
from semantic_recon_ros.core.datasets.bag_files import open_bag
from semantic_recon_ros.core.datasets.bag_topics import TYPESTORE
from semantic_recon_ros.core.datasets.ros1_bags import Ros1Bag, same_layout
from semantic_recon_ros.core.datasets.rosbag_sequence import RosbagSequence, RosbagTopics
from support.frames import through_package_bag
from support.ros1_bags import write_ros1_camera_bag


@pytest.fixture(scope="module")
def frames(seven_scenes):
    return list(seven_scenes.subset(stride=9, max_frames=4))


@pytest.fixture(scope="module")
def ros2_frames(tmp_path_factory, frames):
    """The frames read back from a ROS 2 bag of the package's writer (rgb8 + 16UC1): the reference."""
    return through_package_bag(frames, tmp_path_factory.mktemp("ros2") / "bag")


@pytest.mark.parametrize("compressed", [False, True])
def test_ros1_bag_frames_equal_the_ros2_bag_frames(tmp_path, frames, ros2_frames, compressed):
    path = tmp_path / "camera.bag"
    write_ros1_camera_bag(path, frames, compressed=compressed)
    assert detect_format(path) == "rosbag"
    with open_sequence(path) as sequence:
        suffixes = ("/compressed", "/compressedDepth") if compressed else ("", "")
        assert (sequence.topics.color, sequence.topics.depth) == (
            "/camera/color/image_raw" + suffixes[0], "/camera/depth/image_raw" + suffixes[1])
        assert sequence.num_skipped == 0 and sequence.damage is None
        read = list(sequence)
    assert len(read) == len(ros2_frames)
    for frame, expected in zip(read, ros2_frames):
        np.testing.assert_array_equal(frame.color, expected.color)
        np.testing.assert_array_equal(frame.depth, expected.depth)
        np.testing.assert_allclose(frame.T_world_cam, expected.T_world_cam, atol=1e-6)
        assert frame.camera == expected.camera and frame.timestamp == expected.timestamp


def test_ros1_bag_topics_as_ros2_topics(tmp_path, frames):
    path = tmp_path / "camera.bag"
    stamps = write_ros1_camera_bag(path, frames, compressed=False, color_topic="/head/rgb", depth_topic="/head/depth")
    with closing(open_bag(path)) as bag:
        assert isinstance(bag, Ros1Bag)
        types = {connection.topic: connection.msgtype for connection in bag.connections}
        assert types == {"/head/rgb": "sensor_msgs/msg/Image", "/head/depth": "sensor_msgs/msg/Image",
                         "/camera/color/camera_info": "sensor_msgs/msg/CameraInfo",
                         "/tf": "tf2_msgs/msg/TFMessage",  # tf/tfMessage in the bag
                         "/tf_static": "tf2_msgs/msg/TFMessage"}
        assert bag.unreadable == {"/rosout": "rosgraph_msgs/msg/Log"}  # ROS 2 logs are rcl_interfaces/Log
        assert bag.message_count == 4 * len(frames) + 1
        latched = {connection.topic for connection in bag.connections if any(
            qos.durability == QosDurability.TRANSIENT_LOCAL for qos in connection.ext.offered_qos_profiles)}
        assert latched == {"/tf_static"}
        infos = [connection for connection in bag.connections if connection.topic == "/camera/color/camera_info"]
        messages = list(bag.messages(connections=infos, start=stamps[1]))
        assert [log_time for _, log_time, _ in messages] == stamps[1:]
        info = TYPESTORE.deserialize_cdr(messages[0][2], "sensor_msgs/msg/CameraInfo")  # CDR, ROS 2 field names
        np.testing.assert_array_equal(info.k, frames[1].camera.K.reshape(-1))
        assert (info.header.stamp.sec, info.header.stamp.nanosec) == divmod(stamps[1], 10**9)
    with RosbagSequence(path) as sequence:  # renamed image topics found by message type, as in ROS 2 bags
        assert (sequence.topics.color, sequence.topics.depth) == ("/head/rgb", "/head/depth")
        assert len(sequence) == len(frames)
    with pytest.raises(ValueError, match=r"no color topic /nope \(nor /nope/compressed\); topics in the bag: .*; left "
                                         r"out: /rosout \(rosgraph_msgs/msg/Log\) \(no ROS 2 message type of the same "
                                         r"layout\)"):
        RosbagSequence(path, topics=RosbagTopics(color="/nope"), fixed_topics=["color"])


def test_message_layouts_and_unreadable_files(tmp_path):
    ros1 = get_typestore(Stores.ROS1_NOETIC)
    assert same_layout(ros1, "sensor_msgs/msg/CameraInfo", "sensor_msgs/msg/CameraInfo")  # D K R P vs d k r p
    assert same_layout(ros1, "geometry_msgs/msg/TransformStamped", "geometry_msgs/msg/TransformStamped")
    older = get_typestore(Stores.EMPTY)  # an Image without is_bigendian: no byte-for-byte conversion
    older.register(get_types_from_msg("std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\n"
                                      "uint32 step\nuint8[] data\n" + "=" * 80 + "\nMSG: std_msgs/Header\n"
                                      "uint32 seq\ntime stamp\nstring frame_id\n", "sensor_msgs/msg/Image"))
    assert not same_layout(older, "sensor_msgs/msg/Image", "sensor_msgs/msg/Image")
    assert not same_layout(ros1, "rosgraph_msgs/msg/Log", "rosgraph_msgs/msg/Log")  # no such ROS 2 type
    garbage = tmp_path / "garbage.bag"
    garbage.write_bytes(b"#ROSBAG V2.0\n" + bytes(64))
    with pytest.raises(ValueError, match=f"cannot read the ROS 1 bag {garbage}: "):
        RosbagSequence(garbage)
