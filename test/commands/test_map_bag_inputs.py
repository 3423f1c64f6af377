"""`semantic-recon map` on bags as they come from robots: compressed images, renamed topics (--color-topic...),
bare .mcap files, a recording cut short and ROS 1 .bag files; `make-bag --compressed`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from semantic_recon_ros.core.datasets import open_sequence
from semantic_recon_ros.core.datasets.rosbag_sequence import RosbagSequence
from support.mcap_bags import write_camera_bag
from support.paths import SEVEN_SCENES
from support.ros1_bags import write_ros1_camera_bag

MAP_OPTIONS = ("--checkpoint", "", "--voxel-size", "0.05")


def semantic_recon(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "semantic_recon_ros.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def frames():
    return list(open_sequence(SEVEN_SCENES).subset(stride=40, max_frames=4))


def test_topic_options_and_detection_on_a_renamed_compressed_bag(tmp_path, frames):
    bag = tmp_path / "robot.mcap"
    write_camera_bag(bag, frames, "jpeg", color_topic="/head/rgb/compressed", depth_topic="/head/depth/compressedDepth",
                     info_topic="/head/rgb/info")
    given = semantic_recon("map", bag, "--out", tmp_path / "given", *MAP_OPTIONS, "--color-topic", "/head/rgb",
                           "--depth-topic", "/head/depth/compressedDepth", "--camera-info-topic", "/head/rgb/info")
    assert given.returncode == 0, given.stderr
    detected = semantic_recon("map", bag, "--out", tmp_path / "detected", *MAP_OPTIONS)  # found by message type
    assert detected.returncode == 0, detected.stderr
    for out in ("given", "detected"):
        summary = json.loads((tmp_path / out / "summary.json").read_text())
        assert summary["frames_integrated"] == len(frames) and summary["blocks"] > 50
    wrong = semantic_recon("map", bag, "--out", tmp_path / "wrong", *MAP_OPTIONS, "--color-topic", "/head/ir")
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert wrong.stderr.strip().splitlines() == [
        f"semantic-recon map: error: bag {bag} has no color topic /head/ir (nor /head/ir/compressed); topics in the "
        "bag: /head/depth/compressedDepth (sensor_msgs/msg/CompressedImage), /head/rgb/compressed "
        "(sensor_msgs/msg/CompressedImage), /head/rgb/info (sensor_msgs/msg/CameraInfo), /tf (tf2_msgs/msg/TFMessage)"]
    folder = semantic_recon("map", SEVEN_SCENES, "--out", tmp_path / "x", *MAP_OPTIONS, "--depth-topic", "/d")
    assert folder.returncode == 2 and "--depth-topic applies to bags only" in folder.stderr


def test_a_bag_cut_short_maps_what_was_recorded_with_one_warning(tmp_path, frames):
    whole = tmp_path / "whole.mcap"
    write_camera_bag(whole, frames, "png", chunk_size=100_000)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: len(data) * 3 // 4])
    result = semantic_recon("map", cut, "--out", tmp_path / "out", *MAP_OPTIONS)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    recovered = json.loads((tmp_path / "out" / "summary.json").read_text())["frames_integrated"]
    assert 1 <= recovered < len(frames) and "Traceback" not in result.stderr
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: bag file {cut} is damaged")
    assert warnings[0].endswith(f"giving {recovered} frames")


def test_map_reads_a_ros1_bag(tmp_path, frames):
    bag = tmp_path / "robot.bag"  # compressed images on other names than the defaults: found by message type
    write_ros1_camera_bag(bag, frames, compressed=True, color_topic="/head/rgb", depth_topic="/head/depth")
    result = semantic_recon("map", bag, "--out", tmp_path / "out", *MAP_OPTIONS)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["frames_integrated"] == len(frames) and summary["blocks"] > 50
    assert "warning" not in result.stderr


def test_make_bag_compressed_writes_what_image_transport_writes(tmp_path):
    out = tmp_path / "compressed"
    result = semantic_recon("make-bag", SEVEN_SCENES, out, "--compressed", "--depth-encoding", "16UC1",
                            "--max-frames", "3", "--stride", "50")
    assert result.returncode == 0, result.stderr
    assert "(mcap, png / compressedDepth)" in result.stdout
    raw = tmp_path / "raw"
    assert semantic_recon("make-bag", SEVEN_SCENES, raw, "--depth-encoding", "16UC1", "--max-frames", "3",
                          "--stride", "50").returncode == 0
    with RosbagSequence(out) as compressed, RosbagSequence(raw) as reference:
        assert compressed.topics.color == "/camera/color/image_raw/compressed"
        assert compressed.topics.depth == "/camera/depth/image_raw/compressedDepth"
        assert len(compressed) == len(reference) == 3
        for frame, expected in zip(compressed, reference):
            assert (frame.color == expected.color).all() and (frame.depth == expected.depth).all()
