"""The camera topics of an RGB-D bag: their default names, the message types read, and finding them by type.

A bag reader here is anything with the ``rosbags`` reading interface (``connections``, ``messages``) whose
messages are CDR (see :mod:`.bag_files`). For color and depth, the raw topic name stands for its
image_transport variants too (``<color>/compressed``, ``<depth>/compressedDepth``). A topic that is not
there under its name is found by message type: color and depth images also by their first message's
encoding (color encodings / jpeg / png vs 32FC1 / 16UC1 / compressedDepth), camera_info by type alone.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
from rosbags.typesys import Stores, get_typestore

from ..compressed_image_codec import COMPRESSED_DEPTH, decode_compressed_color, decode_compressed_depth
from ..ros_message_codec import COLOR_ENCODINGS, DEPTH_ENCODINGS, decode_color_image, decode_depth_image

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
TF_MESSAGE_TYPE = "tf2_msgs/msg/TFMessage"
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
# image kind -> (suffix of its image_transport topic, {message type: decoder}, what is supported)
IMAGE_KINDS: dict[str, tuple[str, dict[str, Callable[[Any], np.ndarray]], str]] = {
    "color": ("/compressed", {IMAGE_TYPE: decode_color_image, COMPRESSED_IMAGE_TYPE: decode_compressed_color},
              f"{IMAGE_TYPE} ({', '.join(COLOR_ENCODINGS)}) or {COMPRESSED_IMAGE_TYPE} (jpeg, png)"),
    "depth": ("/compressedDepth", {IMAGE_TYPE: decode_depth_image, COMPRESSED_IMAGE_TYPE: decode_compressed_depth},
              f"{IMAGE_TYPE} ({', '.join(DEPTH_ENCODINGS)}) or {COMPRESSED_IMAGE_TYPE} ({COMPRESSED_DEPTH} png of "
              "16UC1 / 32FC1)"),
}
CAMERA_KINDS = ("color", "depth", "camera_info")


@dataclass(frozen=True)
class RosbagTopics:
    """Topic names of an RGB-D bag (fully qualified, as ``ros2 bag record`` stores them). Color and depth name
    the raw topics; their compressed variants are ``<color>/compressed`` and ``<depth>/compressedDepth``."""

    color: str = "/camera/color/image_raw"
    depth: str = "/camera/depth/image_raw"
    camera_info: str = "/camera/color/camera_info"
    semantic: str = "/camera/semantic/image_raw"
    tf: str = "/tf"
    tf_static: str = "/tf_static"


def qualified(topic: str) -> str:
    """``topic`` with a leading ``/`` (bags store fully qualified names)."""
    return topic if topic.startswith("/") else "/" + topic


def topic_types(reader: Any) -> dict[str, str]:
    """{topic: message type} of a bag reader's connections."""
    return {connection.topic: connection.msgtype for connection in reader.connections}


def named_topic(reader: Any, kind: str, topic: str) -> str | None:
    """The bag's topic of ``kind`` ("color", "depth", "camera_info") called ``topic``: the name itself, else its
    image_transport variant (``/compressed``, ``/compressedDepth``); None when the bag has neither."""
    types = topic_types(reader)
    topic = qualified(topic)
    suffix = IMAGE_KINDS[kind][0] if kind in IMAGE_KINDS else ""
    return next((name for name in dict.fromkeys((topic, topic + suffix)) if name in types), None)


def first_message(reader: Any, topic: str) -> Any:
    """The first message of ``topic`` (deserialized), None when it has none."""
    connections = [c for c in reader.connections if c.topic == topic]
    for connection, _, raw in reader.messages(connections=connections):
        return TYPESTORE.deserialize_cdr(raw, connection.msgtype)
    return None


def image_kind(reader: Any, topic: str) -> str | None:
    """'color' or 'depth' for an Image / CompressedImage topic judged by its first message; None for other types,
    other encodings and topics without messages."""
    msgtype = topic_types(reader).get(topic)
    if msgtype not in (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE):
        return None
    msg = first_message(reader, topic)
    if msg is None:
        return None
    if msgtype == COMPRESSED_IMAGE_TYPE:
        return "depth" if COMPRESSED_DEPTH in msg.format else "color"
    return "color" if msg.encoding in COLOR_ENCODINGS else "depth" if msg.encoding in DEPTH_ENCODINGS else None


def topics_by_type(reader: Any, kind: str, exclude: Collection[str] = ()) -> list[str]:
    """The bag's topics (sorted) whose messages can be read as ``kind`` ("color", "depth", "camera_info"),
    ``exclude`` left out (e.g. the semantic topic, whose mono8 images would pass for color)."""
    types = topic_types(reader)
    candidates = sorted(name for name in types if name not in exclude)
    if kind == "camera_info":
        return [name for name in candidates if types[name] == CAMERA_INFO_TYPE]
    return [name for name in candidates if image_kind(reader, name) == kind]
