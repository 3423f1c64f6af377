"""ROS 2 bags (sqlite3 or mcap) read as a :class:`FrameSequence`, without rclpy or DDS.

Needs only the pure-Python ``rosbags`` package. The bag must hold, on the topics of
:class:`RosbagTopics`: color images (rgb8, bgr8, rgba8, bgra8, mono8), depth images registered to
color (32FC1 metres or 16UC1 millimetres, same size), ``sensor_msgs/CameraInfo``, and
``tf2_msgs/TFMessage`` on ``/tf`` and ``/tf_static`` connecting ``world_frame`` to the color
images' ``header.frame_id`` (an optical frame: x right, y down, z forward); optionally class-id
images (mono8 / 16UC1) on the semantic topic.

One frame per color image: the depth (and label) image with the nearest header stamp within
``max_time_difference`` seconds, the CameraInfo nearest in time, and ``T_world_cam`` looked up in the
bag's complete TF tree at the color stamp (interpolated like tf2). Color images without depth or
whose pose cannot be looked up are skipped and counted in ``num_skipped``. Images are read lazily,
one indexed seek per message.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.interfaces import Connection
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from ..frame import RGBDFrame
from ..ros_message_codec import (
    add_transform_stamped,
    camera_from_camera_info,
    decode_color_image,
    decode_depth_image,
    decode_label_image,
    stamp_to_ns,
)
from ..transform_tree import NANOSECONDS_PER_SECOND, TransformException, TransformTree
from .sequence import FrameSequence

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
DEFAULT_MAX_TIME_DIFFERENCE = 0.02
TF_MESSAGE_TYPE = "tf2_msgs/msg/TFMessage"


@dataclass(frozen=True)
class RosbagTopics:
    """Topic names of an RGB-D bag (fully qualified, as ``ros2 bag record`` stores them)."""

    color: str = "/camera/color/image_raw"
    depth: str = "/camera/depth/image_raw"
    camera_info: str = "/camera/color/camera_info"
    semantic: str = "/camera/semantic/image_raw"
    tf: str = "/tf"
    tf_static: str = "/tf_static"


@dataclass(frozen=True)
class _IndexedMessage:
    """Where to find one message: its connection, bag log time, header stamp (ns) and frame id."""

    connection: Connection
    log_time_ns: int
    stamp_ns: int
    frame_id: str


def _qualified(topic: str) -> str:
    return topic if topic.startswith("/") else "/" + topic


def _nearest(stamps: list[int], stamp: int, max_difference_ns: int | None) -> int | None:
    """Index of the entry of sorted ``stamps`` nearest to ``stamp`` (within the limit), or None."""
    if not stamps:
        return None
    position = bisect.bisect_left(stamps, stamp)
    candidates = [i for i in (position - 1, position) if 0 <= i < len(stamps)]
    best = min(candidates, key=lambda i: abs(stamps[i] - stamp))
    if max_difference_ns is not None and abs(stamps[best] - stamp) > max_difference_ns:
        return None
    return best


class RosbagSequence(FrameSequence):
    """Posed RGB-D frames from a ROS 2 bag (see the module docstring). Call :meth:`close` when done.

    Args:
        path: the bag folder (with ``metadata.yaml``).
        topics: topic names; a semantic topic absent from the bag simply gives frames without labels.
        world_frame: TF frame the poses are expressed in; None uses the root of the color frame's TF tree.
        max_time_difference: largest color/depth (and color/label) header stamp difference, seconds.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        topics: RosbagTopics = RosbagTopics(),
        world_frame: str | None = None,
        max_time_difference: float = DEFAULT_MAX_TIME_DIFFERENCE,
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"bag not found: {self.path}")
        if not (self.path / "metadata.yaml").is_file():
            raise ValueError(f"{self.path} is not a ROS 2 bag folder (no metadata.yaml)")
        self.name = self.path.name
        self.topics = topics
        self._reader = Reader(self.path)
        self._reader.open()
        self._closed = False
        self._lock = threading.Lock()
        try:
            self._index(world_frame, round(max_time_difference * NANOSECONDS_PER_SECOND))
        except BaseException:
            self._reader.close()
            raise

    def _connections(self, topic: str, required: bool) -> list[Connection]:
        topic = _qualified(topic)
        connections = [c for c in self._reader.connections if c.topic == topic]
        if required and not connections:
            available = ", ".join(sorted({c.topic for c in self._reader.connections})) or "none"
            raise ValueError(f"bag {self.path} has no topic {topic}; topics in the bag: {available}")
        return connections

    def _scan(
        self, topic: str, required: bool, convert: Callable[[Any], Any] | None = None
    ) -> list[tuple[_IndexedMessage, Any]]:
        """Index every message of ``topic``, sorted by header stamp: (entry, ``convert(msg)`` or None).

        Messages are deserialized one at a time and not kept (only what ``convert`` returns).
        """
        connections = self._connections(topic, required)
        if not connections:  # rosbags reads every topic when given no connections
            return []
        entries = []
        for connection, log_time, raw in self._reader.messages(connections=connections):
            msg = TYPESTORE.deserialize_cdr(raw, connection.msgtype)
            entry = _IndexedMessage(connection, log_time, stamp_to_ns(msg.header.stamp), msg.header.frame_id)
            entries.append((entry, convert(msg) if convert is not None else None))
        entries.sort(key=lambda pair: pair[0].stamp_ns)
        return entries

    def _index(self, world_frame: str | None, max_difference_ns: int) -> None:
        colors = [entry for entry, _ in self._scan(self.topics.color, required=True)]
        depths = [entry for entry, _ in self._scan(self.topics.depth, required=True)]
        labels = [entry for entry, _ in self._scan(self.topics.semantic, required=False)]
        infos = self._scan(self.topics.camera_info, required=True, convert=camera_from_camera_info)
        if not colors or not depths or not infos:
            raise ValueError(
                f"bag {self.path} has {len(colors)} color, {len(depths)} depth and {len(infos)} camera_info "
                "messages; need at least one of each"
            )
        self._info_stamps = [entry.stamp_ns for entry, _ in infos]
        self._cameras = [camera for _, camera in infos]
        self.camera = self._cameras[0]
        self._tree = self._read_tf()

        depth_stamps = [entry.stamp_ns for entry in depths]
        label_stamps = [entry.stamp_ns for entry in labels]
        self._frames: list[tuple[_IndexedMessage, _IndexedMessage, _IndexedMessage | None, np.ndarray]] = []
        self.num_skipped = 0
        first_problem = None
        for color in colors:
            depth_index = _nearest(depth_stamps, color.stamp_ns, max_difference_ns)
            if depth_index is None:
                self.num_skipped += 1
                first_problem = first_problem or f"no depth image within {max_difference_ns} ns of {color.stamp_ns} ns"
                continue
            label_index = _nearest(label_stamps, color.stamp_ns, max_difference_ns)
            try:
                root = world_frame if world_frame is not None else self._tree.root(color.frame_id)
                T_world_cam = self._tree.lookup(root, color.frame_id, color.stamp_ns)
            except TransformException as error:
                self.num_skipped += 1
                first_problem = first_problem or str(error)
                continue
            label = labels[label_index] if label_index is not None else None
            self._frames.append((color, depths[depth_index], label, T_world_cam))
        if not self._frames:
            raise ValueError(
                f"bag {self.path}: none of its {len(colors)} color images has a depth image within "
                f"{max_difference_ns / NANOSECONDS_PER_SECOND} s and a TF pose (first problem: {first_problem})"
            )

    def _read_tf(self) -> TransformTree:
        tree = TransformTree(cache_duration_ns=None)
        for topic, static in ((self.topics.tf_static, True), (self.topics.tf, False)):
            connections = [c for c in self._connections(topic, required=False) if c.msgtype == TF_MESSAGE_TYPE]
            if not connections:
                continue
            for connection, _, raw in self._reader.messages(connections=connections):
                for transform in TYPESTORE.deserialize_cdr(raw, connection.msgtype).transforms:
                    add_transform_stamped(tree, transform, static=static)
        return tree

    def _read(self, entry: _IndexedMessage) -> Any:
        with self._lock:
            for connection, _, raw in self._reader.messages(
                connections=[entry.connection], start=entry.log_time_ns, stop=entry.log_time_ns + 1
            ):
                msg = TYPESTORE.deserialize_cdr(raw, connection.msgtype)
                if stamp_to_ns(msg.header.stamp) == entry.stamp_ns:
                    return msg
        raise ValueError(f"bag {self.path}: message on {entry.connection.topic} at {entry.log_time_ns} ns disappeared")

    def __len__(self) -> int:
        return len(self._frames)

    def _load(self, index: int) -> RGBDFrame:
        color_entry, depth_entry, label_entry, T_world_cam = self._frames[index]
        camera = self._cameras[_nearest(self._info_stamps, color_entry.stamp_ns, None)]
        return RGBDFrame(
            color=decode_color_image(self._read(color_entry)),
            depth=decode_depth_image(self._read(depth_entry)),
            camera=camera,
            T_world_cam=T_world_cam,
            timestamp=color_entry.stamp_ns / NANOSECONDS_PER_SECOND,
            labels=decode_label_image(self._read(label_entry)) if label_entry is not None else None,
            name=f"{self.name}@{color_entry.stamp_ns}",
        )

    def close(self) -> None:
        """Close the bag file (idempotent); frames can no longer be loaded."""
        with self._lock:
            if not self._closed:
                self._reader.close()
                self._closed = True

    def __enter__(self) -> "RosbagSequence":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
