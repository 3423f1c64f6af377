"""Bags with compressed images, bare and damaged bag files, topic detection: bags written independently
(mcap-ros2-support + PIL, :mod:`support.mcap_bags`) and by ``make-bag --compressed``, read back by RosbagSequence."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from semantic_recon_ros.core.datasets import open_sequence
from semantic_recon_ros.core.datasets.rosbag_sequence import RosbagSequence, RosbagTopics
from semantic_recon_ros.core.datasets.rosbag_writer import RosbagWriter, RosbagWriterConfig
from support.frames import through_package_bag
from support.mcap_bags import OPTICAL, SEC, START, McapBag, camera_info, header, png_bytes, tf_message, write_camera_bag


@pytest.fixture(scope="module")
def frames(seven_scenes):
    return list(seven_scenes.subset(stride=9, max_frames=5))


@pytest.fixture(scope="module")
def raw_frames(tmp_path_factory, frames):
    """The frames read back from a raw bag (rgb8 + 16UC1) of the package's writer: the reference."""
    return through_package_bag(frames, tmp_path_factory.mktemp("raw") / "bag")


def assert_same_frames(read, reference, color_tolerance=0):
    assert len(read) == len(reference)
    for frame, expected in zip(read, reference):
        np.testing.assert_array_equal(frame.depth, expected.depth)
        np.testing.assert_allclose(frame.T_world_cam, expected.T_world_cam, atol=1e-6)
        assert frame.camera == expected.camera and frame.timestamp == expected.timestamp
        if color_tolerance == 0:
            np.testing.assert_array_equal(frame.color, expected.color)
        else:
            assert np.abs(frame.color.astype(int) - expected.color).mean() < color_tolerance


def test_independent_compressed_bag_file_reads_like_the_raw_bag(tmp_path, frames, raw_frames):
    png, jpeg = tmp_path / "png.mcap", tmp_path / "jpeg.mcap"
    write_camera_bag(png, frames, "png")
    write_camera_bag(jpeg, frames, "jpeg")
    with RosbagSequence(png) as sequence:  # a bare .mcap file: no metadata.yaml
        assert sequence.topics.color == "/camera/color/image_raw/compressed"
        assert sequence.topics.depth == "/camera/depth/image_raw/compressedDepth"
        assert sequence.damage is None
        assert_same_frames(list(sequence), raw_frames)
    with open_sequence(jpeg) as sequence:
        assert_same_frames(list(sequence), raw_frames, color_tolerance=2.0)
    folder = tmp_path / "recording"  # a folder without metadata.yaml, as a killed recorder leaves it
    folder.mkdir()
    shutil.copy(png, folder / "recording_0.mcap")
    with open_sequence(folder) as sequence:
        assert_same_frames(list(sequence), raw_frames)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_package_writer_compressed_bags_read_like_the_raw_bag(tmp_path, frames, raw_frames, storage):
    for compression, depth_encoding in (("png", "16UC1"), ("jpeg", "32FC1")):
        path = tmp_path / compression
        config = RosbagWriterConfig(storage=storage, compression=compression, depth_encoding=depth_encoding)
        with RosbagWriter(path, config) as writer:
            for frame in frames:
                writer.write(frame)
        with RosbagSequence(path) as sequence:
            read = list(sequence)
        if compression == "png":
            assert_same_frames(read, raw_frames)
        else:  # jpeg color; 32FC1 compressedDepth: inverse depth quantized to about z^2 / 10100 per step
            for frame, expected in zip(read, raw_frames):
                assert np.abs(frame.color.astype(int) - expected.color).mean() < 2.0
                valid = expected.depth > 0
                np.testing.assert_array_equal(frame.depth > 0, valid)
                assert np.all(np.abs(frame.depth - expected.depth)[valid] <= expected.depth[valid] ** 2 / 10100 + 1e-6)


def test_mcap_cut_in_half_is_read_up_to_the_damage(tmp_path, frames):
    whole = tmp_path / "whole.mcap"
    write_camera_bag(whole, frames, "png", chunk_size=100_000)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: len(data) // 2])
    with RosbagSequence(cut) as sequence:
        assert 1 <= len(sequence) < len(frames)
        assert sequence.damage.startswith(f"bag file {cut} is damaged")
        messages = int(sequence.damage.split("read the ")[1].split()[0])
        assert 4 * len(sequence) <= messages < 4 * len(frames)  # tf, camera_info, color, depth per frame
        assert sequence.damage.endswith(f"giving {len(sequence)} frames")
        for frame, expected in zip(sequence, frames):
            np.testing.assert_array_equal(frame.color, expected.color)
    head = tmp_path / "head.mcap"  # cut before the first message: nothing to map, said with the damage
    head.write_bytes(data[:1000])
    with pytest.raises(ValueError, match=re.escape(f"bag file {head} is damaged (") + r".*read the 0 messages before "
                                         r"the damage; bag .* has no color topic /camera/color/image_raw"):
        RosbagSequence(head)


def test_unsupported_types_and_encodings_are_one_line_errors(tmp_path, frames):
    bag = McapBag(tmp_path / "types.mcap")
    bag.write("/camera/color/image_raw", "std_msgs/msg/String", {"data": "not an image"}, START)
    bag.close()
    with pytest.raises(ValueError, match=r"topic /camera/color/image_raw has type std_msgs/msg/String, which cannot be "
                                         r"read as color images; supported: sensor_msgs/msg/Image \(rgb8.*\) or "
                                         r"sensor_msgs/msg/CompressedImage \(jpeg, png\)"):
        RosbagSequence(tmp_path / "types.mcap")
    bag = McapBag(tmp_path / "encodings.mcap")
    for i, frame in enumerate(frames[:2]):
        stamp = START + i * SEC // 30
        bag.write("/tf", "tf2_msgs/msg/TFMessage", tf_message(frame.T_world_cam, stamp, "world", OPTICAL), stamp)
        bag.write("/camera/color/camera_info", "sensor_msgs/msg/CameraInfo", camera_info(frame, stamp), stamp)
        bag.write("/camera/color/image_raw/compressed", "sensor_msgs/msg/CompressedImage",
                  {"header": header(stamp), "format": "rgb8; tiff compressed bgr8", "data": b"x"}, stamp)
        bag.write("/camera/depth/image_raw/compressedDepth", "sensor_msgs/msg/CompressedImage",
                  {"header": header(stamp), "format": "16UC1; compressedDepth rvl", "data": b"x" * 20}, stamp)
    bag.close()
    with pytest.raises(ValueError, match=r"topic /camera/color/image_raw/compressed \(sensor_msgs/msg/CompressedImage\)"
                                         r": compressed image .*format 'rgb8; tiff compressed bgr8'.* supported: jpeg"):
        RosbagSequence(tmp_path / "encodings.mcap")


def test_topics_found_by_message_type_and_fixed_topics(tmp_path, frames, raw_frames):
    path = tmp_path / "renamed.mcap"
    write_camera_bag(path, frames, "png", color_topic="/rgb/image/compressed", depth_topic="/d/compressedDepth",
                     info_topic="/rgb/info")
    with RosbagSequence(path) as sequence:
        assert (sequence.topics.color, sequence.topics.depth, sequence.topics.camera_info) == (
            "/rgb/image/compressed", "/d/compressedDepth", "/rgb/info")
        assert_same_frames(list(sequence), raw_frames)
    topics = RosbagTopics(color="/rgb/image", depth="/d", camera_info="/rgb/info")  # compressed variants of these
    with RosbagSequence(path, topics=topics, fixed_topics=["color", "depth", "camera_info"]) as sequence:
        assert len(sequence) == len(frames)
    with pytest.raises(ValueError, match=r"no color topic /camera/color/image_raw \(nor /camera/color/image_raw/"
                                         r"compressed\); topics in the bag: /d/compressedDepth"):
        RosbagSequence(path, fixed_topics=["color"])
    bag = McapBag(tmp_path / "ambiguous.mcap")  # two color topics: no choice by message type
    for topic in ("/left/compressed", "/right/compressed"):
        bag.write(topic, "sensor_msgs/msg/CompressedImage",
                  {"header": header(START), "format": "png", "data": png_bytes(frames[0].color)}, START)
    bag.close()
    with pytest.raises(ValueError, match=r"color image topics found by message type: several \(/left/compressed, "
                                         r"/right/compressed\); name it \(--color-topic\)"):
        RosbagSequence(tmp_path / "ambiguous.mcap")
