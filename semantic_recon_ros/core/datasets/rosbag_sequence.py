"""ROS 2 bags (sqlite3 or mcap) and ROS 1 ``.bag`` files read as a :class:`FrameSequence`, without rclpy or DDS.

Needs only the pure-Python ``rosbags`` (and ``mcap``) packages. The bag (a folder, a bare ``.mcap`` /
``.db3`` file, a folder without metadata.yaml or a ROS 1 ``.bag`` file whose messages are read as their
ROS 2 equivalents, see :mod:`.bag_files`) must hold, on the topics of
:class:`RosbagTopics`: color images (``sensor_msgs/Image`` rgb8, bgr8, rgba8, bgra8, mono8, or
``sensor_msgs/CompressedImage`` jpeg / png on ``<color>/compressed``), depth images registered to color
(Image 32FC1 metres or 16UC1 millimetres, or image_transport's compressedDepth on
``<depth>/compressedDepth``; same size), ``sensor_msgs/CameraInfo``, and ``tf2_msgs/TFMessage`` on
``/tf`` and ``/tf_static`` connecting ``world_frame`` to the color images' ``header.frame_id`` (an optical
frame: x right, y down, z forward); optionally class-id images (mono8 / 16UC1) on the semantic topic.

Topics: the raw topic is used when the bag has it, else its compressed variant. When neither is there
(and the caller did not fix that topic), the color, depth and camera_info topics are found by message
type (see :mod:`.bag_topics`) when exactly one topic fits; :attr:`RosbagSequence.topics` holds the topics read. An
mcap file damaged at the end is read up to the damage, said in :attr:`RosbagSequence.damage`.

One frame per color image: the depth (and label) image with the nearest header stamp within
``max_time_difference`` seconds, the CameraInfo nearest in time, and ``T_world_cam`` looked up in the
bag's complete TF tree at the color stamp (interpolated like tf2). Color images without depth or
whose pose cannot be looked up are skipped and counted in ``num_skipped``. Images are read lazily,
one indexed seek per message.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.interfaces import Connection
from rosbags.rosbag2 import Reader

from ..frame import RGBDFrame
from ..ros_message_codec import (
    MessageConversionError,
    add_transform_stamped,
    camera_from_camera_info,
    decode_label_image,
    stamp_to_ns,
)
from ..transform_tree import NANOSECONDS_PER_SECOND, TransformException, TransformTree
from .bag_files import RecoveredMcap, Ros1Bag, open_bag
from .bag_topics import (
    CAMERA_INFO_TYPE,
    IMAGE_KINDS,
    TF_MESSAGE_TYPE,
    TYPESTORE,
    RosbagTopics,
    named_topic,
    qualified,
    topic_types,
    topics_by_type,
)
from .sequence import FrameSequence

DEFAULT_MAX_TIME_DIFFERENCE = 0.02


@dataclass(frozen=True)
class _IndexedMessage:
    """Where to find one message: its connection, bag log time, header stamp (ns) and frame id."""

    connection: Connection
    log_time_ns: int
    stamp_ns: int
    frame_id: str


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
    """Posed RGB-D frames from a bag (see the module docstring). Call :meth:`close` when done.

    Args:
        path: the bag: a folder (with or without ``metadata.yaml``), a ``.mcap`` / ``.db3`` file or a ROS 1
            ``.bag`` file.
        topics: topic names; a semantic topic absent from the bag simply gives frames without labels.
        fixed_topics: names of the :class:`RosbagTopics` fields ("color", "depth", "camera_info") the caller
            chose: those are never replaced by topics found by message type.
        world_frame: TF frame the poses are expressed in; None uses the root of the color frame's TF tree.
        max_time_difference: largest color/depth (and color/label) header stamp difference, seconds.

    Attributes:
        topics: the topics read (given, compressed variants or found by message type).
        damage: None, or one line for the user: the bag file is damaged, and how many messages and frames were
            read before the damage.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        topics: RosbagTopics = RosbagTopics(),
        fixed_topics: Collection[str] = (),
        world_frame: str | None = None,
        max_time_difference: float = DEFAULT_MAX_TIME_DIFFERENCE,
    ) -> None:
        self.path = Path(path)
        self.name = self.path.stem if self.path.is_file() else self.path.name
        self._reader: Reader | Ros1Bag | RecoveredMcap = open_bag(self.path)
        self._closed = False
        self._lock = threading.Lock()
        try:
            self.topics = self._resolve_topics(topics, set(fixed_topics))
            self._index(world_frame, round(max_time_difference * NANOSECONDS_PER_SECOND))
            self.damage = None
            if isinstance(self._reader, RecoveredMcap):
                self.damage = f"{self._reader.damage}, giving {len(self)} frames"
        except ValueError as error:
            self._reader.close()
            if isinstance(self._reader, RecoveredMcap):  # what was read before the damage is not enough
                raise ValueError(f"{self._reader.damage}; {error}") from None
            raise
        except BaseException:
            self._reader.close()
            raise

    def _connections(self, topic: str, required: bool) -> list[Connection]:
        topic = qualified(topic)
        connections = [c for c in self._reader.connections if c.topic == topic]
        if required and not connections:
            available = ", ".join(sorted({c.topic for c in self._reader.connections})) or "none"
            raise ValueError(f"bag {self.path} has no topic {topic}; topics in the bag: {available}")
        return connections

    def _topics_text(self) -> str:
        connections = sorted(self._reader.connections, key=lambda c: c.topic)
        text = ", ".join(f"{c.topic} ({c.msgtype})" for c in connections) or "none"
        if isinstance(self._reader, Ros1Bag) and self._reader.unreadable:
            text += f"; left out: {self._reader.unreadable_text()}"
        return text

    def _resolve_image_topic(self, kind: str, topic: str, fixed: bool, semantic: str) -> str:
        suffix, decoders, supported = IMAGE_KINDS[kind]
        topic = qualified(topic)
        chosen = named_topic(self._reader, kind, topic)
        if chosen is None and not fixed:
            candidates = topics_by_type(self._reader, kind, exclude=[semantic])
            if len(candidates) != 1:
                found = f"several ({', '.join(candidates)})" if candidates else "none"
                raise ValueError(f"bag {self.path} has no {kind} topic {topic} (nor {topic}{suffix}), and {kind} image "
                                 f"topics found by message type: {found}; name it (--{kind}-topic). Topics in the bag: "
                                 f"{self._topics_text()}")
            chosen = candidates[0]
        if chosen is None:
            raise ValueError(f"bag {self.path} has no {kind} topic {topic} (nor {topic}{suffix}); topics in the bag: "
                             f"{self._topics_text()}")
        msgtype = topic_types(self._reader)[chosen]
        if msgtype not in decoders:
            raise ValueError(f"bag {self.path}: topic {chosen} has type {msgtype}, which cannot be read as "
                             f"{kind} images; supported: {supported}")
        return chosen

    def _resolve_topics(self, topics: RosbagTopics, fixed: set[str]) -> RosbagTopics:
        """The topics to read: the given ones, their compressed variants, or ones found by message type."""
        semantic = qualified(topics.semantic)
        color = self._resolve_image_topic("color", topics.color, "color" in fixed, semantic)
        depth = self._resolve_image_topic("depth", topics.depth, "depth" in fixed, semantic)
        camera_info = qualified(topics.camera_info)
        types = topic_types(self._reader)
        if camera_info not in types and "camera_info" not in fixed:
            candidates = topics_by_type(self._reader, "camera_info")
            if len(candidates) == 1:
                camera_info = candidates[0]
        if camera_info in types and types[camera_info] != CAMERA_INFO_TYPE:
            raise ValueError(f"bag {self.path}: topic {camera_info} has type {types[camera_info]}; camera_info must be "
                             f"{CAMERA_INFO_TYPE}")
        return RosbagTopics(color=color, depth=depth, camera_info=camera_info, semantic=topics.semantic,
                            tf=topics.tf, tf_static=topics.tf_static)

    def _decode(self, kind: str, entry: _IndexedMessage) -> np.ndarray:
        """The image of ``entry`` decoded as ``kind`` (see :data:`IMAGE_KINDS`)."""
        decoders = IMAGE_KINDS[kind][1]
        msg = self._read(entry)
        try:
            return decoders[entry.connection.msgtype](msg)
        except MessageConversionError as error:
            raise type(error)(f"bag {self.path}: topic {entry.connection.topic} ({entry.connection.msgtype}): "
                              f"{error}") from None

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
        self._decode("color", colors[0])  # unsupported encodings fail here, once, naming the topic
        self._decode("depth", depths[0])
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

    @property
    def poses(self) -> list[np.ndarray]:
        """``T_world_cam`` (4, 4) of every frame, in order (from the bag's TF; no image is read)."""
        return [T_world_cam for _, _, _, T_world_cam in self._frames]

    def _load(self, index: int) -> RGBDFrame:
        color_entry, depth_entry, label_entry, T_world_cam = self._frames[index]
        camera = self._cameras[_nearest(self._info_stamps, color_entry.stamp_ns, None)]
        return RGBDFrame(
            color=self._decode("color", color_entry),
            depth=self._decode("depth", depth_entry),
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
