"""Posed RGB-D frames written into a ROS 2 bag (mcap or sqlite3) with the pure-Python ``rosbags`` package.

Per frame, all stamped with the frame's stamp (header stamp = bag log time):

* ``/camera/color/image_raw``: ``sensor_msgs/Image`` rgb8 (with ``compression``: ``sensor_msgs/CompressedImage``
  png or jpeg on ``/camera/color/image_raw/compressed``, as image_transport's compressed plugin writes it);
* ``/camera/depth/image_raw``: ``sensor_msgs/Image`` 32FC1 metres (or 16UC1 millimetres), registered to color
  (with ``compression``: image_transport's compressedDepth png of that encoding on
  ``/camera/depth/image_raw/compressedDepth``);
* ``/camera/color/camera_info``: ``sensor_msgs/CameraInfo`` (undistorted pinhole);
* ``/camera/semantic/image_raw``: ``sensor_msgs/Image`` mono8 class ids, 255 = unlabeled (frames with labels only);
* ``/tf``: ``world -> camera_link`` (``T_world_link = T_world_cam @ inv(T_link_optical)``).

Once, at the first stamp: ``/tf_static`` ``camera_link -> camera_color_optical_frame`` with the
standard optical rotation (x right, y down, z forward in a body frame x forward, y left, z up), offered
transient-local like a static broadcaster. Image headers carry the optical frame, so the camera pose
is the two-edge TF chain ``world -> camera_link -> camera_color_optical_frame``.

Stamps: ``start_time_ns + i / frame_rate`` (default 30 Hz), or, with ``frame_rate=None``,
``start_time_ns + (timestamp_i - timestamp_0)`` from the frames' own timestamps (strictly increasing).
:class:`~semantic_recon_ros.core.datasets.rosbag_sequence.RosbagSequence` reads such bags back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rosbags.interfaces import Connection, Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer

from ..camera import PinholeCamera, invert_rigid
from ..compressed_image_codec import (
    COLOR_COMPRESSIONS,
    CompressedImageFields,
    encode_compressed_color,
    encode_compressed_depth,
)
from ..frame import RGBDFrame
from ..ros_message_codec import (
    ImageFields,
    encode_camera_info,
    encode_color_image,
    encode_depth_image,
    encode_label_image,
    ns_to_sec_nanosec,
)
from ..transform_tree import NANOSECONDS_PER_SECOND, translation_quaternion_from_rigid
from .bag_topics import TYPESTORE, RosbagTopics

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
DEFAULT_START_TIME_NS = 1_700_000_000 * NANOSECONDS_PER_SECOND  # 2023-11-14: a realistic, non-zero ROS time
BAG_FORMAT_VERSION = 9
SENSOR_QUEUE_DEPTH = 10
TF_QUEUE_DEPTH = 100
# T_link_optical rotation: optical x = -link y, optical y = -link z, optical z = link x.
R_LINK_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])

_T = TYPESTORE.types


@dataclass(frozen=True)
class RosbagFrames:
    """TF frame names of the written camera."""

    world: str = "world"
    camera_link: str = "camera_link"
    optical: str = "camera_color_optical_frame"


@dataclass(frozen=True)
class RosbagWriterConfig:
    """Options of :class:`RosbagWriter`.

    Attributes:
        storage: "mcap" or "sqlite3".
        depth_encoding: "32FC1" (metres, exact) or "16UC1" (rounded millimetres, 0 = invalid).
        compression: None writes raw Images; "png" (lossless) or "jpeg" writes color as CompressedImage and
            depth as compressedDepth png (16UC1: lossless for its millimetres; 32FC1: quantized inverse depth).
        frame_rate: stamps at this fixed rate (Hz); None uses the frames' own timestamps.
        start_time_ns: stamp of the first frame (ROS time, ns; must be > 0: 0 means "latest" in TF).
        topics / frames: names written.
    """

    storage: str = "mcap"
    depth_encoding: str = "32FC1"
    compression: str | None = None
    frame_rate: float | None = 30.0
    start_time_ns: int = DEFAULT_START_TIME_NS
    topics: RosbagTopics = field(default_factory=RosbagTopics)
    frames: RosbagFrames = field(default_factory=RosbagFrames)

    def __post_init__(self) -> None:
        if self.storage not in STORAGES:
            raise ValueError(f"unknown bag storage {self.storage!r}; choose one of {', '.join(STORAGES)}")
        if self.depth_encoding not in ("32FC1", "16UC1"):
            raise ValueError(f"depth_encoding must be 32FC1 or 16UC1, got {self.depth_encoding!r}")
        if self.compression is not None and self.compression not in COLOR_COMPRESSIONS:
            raise ValueError(f"compression must be None, {' or '.join(COLOR_COMPRESSIONS)}, got {self.compression!r}")
        if self.frame_rate is not None and not self.frame_rate > 0:
            raise ValueError(f"frame_rate must be positive or None, got {self.frame_rate}")
        if self.start_time_ns <= 0:
            raise ValueError(f"start_time_ns must be > 0, got {self.start_time_ns}")


def optical_in_link() -> np.ndarray:
    """(4, 4) ``T_link_optical``: the camera optical frame in the camera body frame (no translation)."""
    T = np.eye(4)
    T[:3, :3] = R_LINK_OPTICAL
    return T


def _qos(durability: QosDurability, depth: int) -> Qos:
    zero = QosTime(sec=0, nsec=0)
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=depth,
        reliability=QosReliability.RELIABLE,
        durability=durability,
        deadline=zero,
        lifespan=zero,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=zero,
        avoid_ros_namespace_conventions=False,
    )


def _header(stamp_ns: int, frame_id: str):
    sec, nanosec = ns_to_sec_nanosec(stamp_ns)
    return _T["std_msgs/msg/Header"](stamp=_T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=frame_id)


def _image(fields: ImageFields, stamp_ns: int, frame_id: str):
    return _T["sensor_msgs/msg/Image"](
        header=_header(stamp_ns, frame_id),
        height=fields.height,
        width=fields.width,
        encoding=fields.encoding,
        is_bigendian=fields.is_bigendian,
        step=fields.step,
        data=np.frombuffer(fields.data, dtype=np.uint8),
    )


def _compressed_image(fields: CompressedImageFields, stamp_ns: int, frame_id: str):
    return _T["sensor_msgs/msg/CompressedImage"](
        header=_header(stamp_ns, frame_id), format=fields.format, data=np.frombuffer(fields.data, dtype=np.uint8))


def _camera_info(camera: PinholeCamera, stamp_ns: int, frame_id: str):
    fields = encode_camera_info(camera)
    roi = _T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return _T["sensor_msgs/msg/CameraInfo"](
        header=_header(stamp_ns, frame_id),
        height=fields.height,
        width=fields.width,
        distortion_model=fields.distortion_model,
        d=fields.d,
        k=fields.k,
        r=fields.r,
        p=fields.p,
        binning_x=0,
        binning_y=0,
        roi=roi,
    )


def _tf_message(T_parent_child: np.ndarray, stamp_ns: int, parent: str, child: str):
    (tx, ty, tz), (qx, qy, qz, qw) = (values.tolist() for values in translation_quaternion_from_rigid(T_parent_child))
    transform = _T["geometry_msgs/msg/TransformStamped"](
        header=_header(stamp_ns, parent),
        child_frame_id=child,
        transform=_T["geometry_msgs/msg/Transform"](
            translation=_T["geometry_msgs/msg/Vector3"](x=tx, y=ty, z=tz),
            rotation=_T["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw),
        ),
    )
    return _T["tf2_msgs/msg/TFMessage"](transforms=[transform])


class RosbagWriter:
    """Writes :class:`RGBDFrame` items into a new ROS 2 bag folder (see the module docstring).

    Use as a context manager (or call :meth:`close`): the bag's metadata is written on close.

    Args:
        path: bag folder to create; ValueError when it already exists.
        config: storage, depth encoding, stamps and names.
    """

    def __init__(self, path: str | Path, config: RosbagWriterConfig = RosbagWriterConfig()) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise ValueError(f"bag output {self.path} already exists; choose a new path")
        self.config = config
        self.frames_written = 0
        self._first_timestamp: float | None = None
        self._last_stamp_ns: int | None = None
        self._writer = Writer(self.path, version=BAG_FORMAT_VERSION, storage_plugin=STORAGES[config.storage])
        self._writer.open()
        topics = config.topics
        sensor_qos = [_qos(QosDurability.VOLATILE, SENSOR_QUEUE_DEPTH)]
        if config.compression is None:
            self._color = self._connect(topics.color, "sensor_msgs/msg/Image", sensor_qos)
            self._depth = self._connect(topics.depth, "sensor_msgs/msg/Image", sensor_qos)
        else:
            self._color = self._connect(topics.color + "/compressed", "sensor_msgs/msg/CompressedImage", sensor_qos)
            self._depth = self._connect(topics.depth + "/compressedDepth", "sensor_msgs/msg/CompressedImage",
                                        sensor_qos)
        self._camera_info = self._connect(topics.camera_info, "sensor_msgs/msg/CameraInfo", sensor_qos)
        self._tf = self._connect(topics.tf, "tf2_msgs/msg/TFMessage", [_qos(QosDurability.VOLATILE, TF_QUEUE_DEPTH)])
        self._tf_static = self._connect(topics.tf_static, "tf2_msgs/msg/TFMessage", [_qos(QosDurability.TRANSIENT_LOCAL, 1)])
        self._semantic: Connection | None = None

    def _connect(self, topic: str, msgtype: str, qos: list[Qos]) -> Connection:
        topic = topic if topic.startswith("/") else "/" + topic
        return self._writer.add_connection(topic, msgtype, typestore=TYPESTORE, offered_qos_profiles=qos)

    def _write(self, connection: Connection, msg, stamp_ns: int) -> None:
        self._writer.write(connection, stamp_ns, TYPESTORE.serialize_cdr(msg, connection.msgtype))

    def _stamp(self, frame: RGBDFrame) -> int:
        config = self.config
        if config.frame_rate is not None:
            return config.start_time_ns + round(self.frames_written * NANOSECONDS_PER_SECOND / config.frame_rate)
        if self._first_timestamp is None:
            self._first_timestamp = frame.timestamp
        stamp_ns = config.start_time_ns + round((frame.timestamp - self._first_timestamp) * NANOSECONDS_PER_SECOND)
        if self._last_stamp_ns is not None and stamp_ns <= self._last_stamp_ns:
            raise ValueError(
                f"frame {frame.name!r}: timestamp {frame.timestamp} s is not after the previous frame's; "
                "use a fixed frame_rate for sequences without increasing timestamps"
            )
        return stamp_ns

    def write(self, frame: RGBDFrame) -> int:
        """Write one frame's messages; returns its stamp (ns)."""
        frame.validate()
        stamp_ns = self._stamp(frame)
        names, topics = self.config.frames, self.config.topics
        if self.frames_written == 0:
            static = _tf_message(optical_in_link(), stamp_ns, names.camera_link, names.optical)
            self._write(self._tf_static, static, stamp_ns)
        T_world_link = frame.T_world_cam @ invert_rigid(optical_in_link())
        self._write(self._tf, _tf_message(T_world_link, stamp_ns, names.world, names.camera_link), stamp_ns)
        self._write(self._camera_info, _camera_info(frame.camera, stamp_ns, names.optical), stamp_ns)
        compression = self.config.compression
        if compression is None:
            color = _image(encode_color_image(frame.color, "rgb8"), stamp_ns, names.optical)
        else:
            color = _compressed_image(encode_compressed_color(frame.color, compression), stamp_ns, names.optical)
        self._write(self._color, color, stamp_ns)
        if frame.depth is not None:
            if compression is None:
                depth = _image(encode_depth_image(frame.depth, self.config.depth_encoding), stamp_ns, names.optical)
            else:
                depth = _compressed_image(encode_compressed_depth(frame.depth, self.config.depth_encoding), stamp_ns,
                                          names.optical)
            self._write(self._depth, depth, stamp_ns)
        if frame.labels is not None:
            if self._semantic is None:
                self._semantic = self._connect(
                    topics.semantic, "sensor_msgs/msg/Image", [_qos(QosDurability.VOLATILE, SENSOR_QUEUE_DEPTH)]
                )
            self._write(self._semantic, _image(encode_label_image(frame.labels, "mono8"), stamp_ns, names.optical), stamp_ns)
        self._last_stamp_ns = stamp_ns
        self.frames_written += 1
        return stamp_ns

    def close(self) -> None:
        """Finish the bag (writes metadata.yaml); idempotent."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "RosbagWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
