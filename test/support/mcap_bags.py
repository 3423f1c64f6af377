"""Bags written independently of the package's writer: ``mcap-ros2-support`` serializes the messages, PIL
encodes the images (png, jpeg; compressedDepth = the 12-byte header + a 16-bit png)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from mcap_ros2.writer import Writer
from PIL import Image
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation

SEC = 1_000_000_000
START = 1_700_000_000 * SEC
OPTICAL = "camera_color_optical_frame"
# the definition texts as ros2 bag record stores them (text only; mcap_ros2 does the serialization)
_DEFINITIONS = get_typestore(Stores.ROS2_KILTED)


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(rgb: np.ndarray, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def compressed_depth_16uc1(depth_m: np.ndarray) -> dict:
    """CompressedImage fields of (H, W) metres as 16UC1 compressedDepth (rounded mm, 0 = invalid)."""
    millimetres = np.where(np.isfinite(depth_m) & (depth_m > 0), np.round(depth_m * 1000), 0).astype(np.uint16)
    return {"format": "16UC1; compressedDepth png", "data": struct.pack("<iff", 0, 0.0, 0.0) + png_bytes(millimetres)}


def header(stamp_ns: int, frame_id: str = OPTICAL) -> dict:
    return {"stamp": {"sec": stamp_ns // SEC, "nanosec": stamp_ns % SEC}, "frame_id": frame_id}


def camera_info(frame, stamp_ns: int) -> dict:
    K = frame.camera.K
    return {"header": header(stamp_ns), "height": frame.camera.height, "width": frame.camera.width,
            "distortion_model": "plumb_bob", "d": [0.0] * 5, "k": K.reshape(-1).tolist(),
            "r": np.eye(3).reshape(-1).tolist(), "p": np.hstack([K, np.zeros((3, 1))]).reshape(-1).tolist(),
            "binning_x": 0, "binning_y": 0,
            "roi": {"x_offset": 0, "y_offset": 0, "height": 0, "width": 0, "do_rectify": False}}


def tf_message(T: np.ndarray, stamp_ns: int, parent: str, child: str) -> dict:
    q = Rotation.from_matrix(T[:3, :3]).as_quat()  # x, y, z, w
    return {"transforms": [{"header": header(stamp_ns, parent), "child_frame_id": child, "transform": {
        "translation": dict(zip("xyz", T[:3, 3].tolist())), "rotation": dict(zip("xyzw", map(float, q)))}}]}


class McapBag:
    """An .mcap file written with mcap_ros2: ``write(topic, type, fields dict, stamp)``."""

    def __init__(self, path: Path, chunk_size: int = 1 << 20) -> None:
        self._file = open(path, "wb")
        self._writer = Writer(self._file, chunk_size=chunk_size)
        self._schemas = {}

    def write(self, topic: str, msgtype: str, message: dict, stamp_ns: int) -> None:
        if msgtype not in self._schemas:
            self._schemas[msgtype] = self._writer.register_msgdef(
                msgtype, _DEFINITIONS.generate_msgdef(msgtype, ros_version=2)[0])
        self._writer.write_message(topic, self._schemas[msgtype], message, log_time=stamp_ns, publish_time=stamp_ns)

    def close(self) -> None:
        self._writer.finish()
        self._file.close()


def write_camera_bag(path: Path, frames, color: str = "png", color_topic: str = "/camera/color/image_raw/compressed",
                     depth_topic: str = "/camera/depth/image_raw/compressedDepth",
                     info_topic: str = "/camera/color/camera_info", chunk_size: int = 1 << 20) -> list[int]:
    """The frames as compressed color (``color`` png or jpeg) + 16UC1 compressedDepth + camera_info + TF
    (world -> camera_color_optical_frame directly), 30 Hz from START; returns the stamps."""
    bag = McapBag(path, chunk_size)
    stamps = []
    for i, frame in enumerate(frames):
        stamp = START + round(i * SEC / 30)
        encoded = png_bytes(frame.color) if color == "png" else jpeg_bytes(frame.color)
        bag.write("/tf", "tf2_msgs/msg/TFMessage", tf_message(frame.T_world_cam, stamp, "world", OPTICAL), stamp)
        bag.write(info_topic, "sensor_msgs/msg/CameraInfo", camera_info(frame, stamp), stamp)
        bag.write(color_topic, "sensor_msgs/msg/CompressedImage",
                  {"header": header(stamp), "format": f"rgb8; {color} compressed bgr8", "data": encoded}, stamp)
        bag.write(depth_topic, "sensor_msgs/msg/CompressedImage",
                  {"header": header(stamp), **compressed_depth_16uc1(frame.depth)}, stamp)
        stamps.append(stamp)
    bag.close()
    return stamps


def write_color_only_bag(path: Path, frames) -> list[int]:
    """The frames' rgb8 color, camera_info and /tf (world -> optical frame), stamped at 30 Hz from START, and
    nothing else; returns the stamps."""
    bag = McapBag(path)
    stamps = []
    for index, frame in enumerate(frames):
        stamp = START + round(index * SEC / 30)
        height, width = frame.color.shape[:2]
        bag.write("/tf", "tf2_msgs/msg/TFMessage", tf_message(frame.T_world_cam, stamp, "world", OPTICAL), stamp)
        bag.write("/camera/color/camera_info", "sensor_msgs/msg/CameraInfo", camera_info(frame, stamp), stamp)
        bag.write("/camera/color/image_raw", "sensor_msgs/msg/Image",
                  {"header": header(stamp), "height": height, "width": width, "encoding": "rgb8", "is_bigendian": 0,
                   "step": 3 * width, "data": frame.color.tobytes()}, stamp)
        stamps.append(stamp)
    bag.close()
    return stamps
