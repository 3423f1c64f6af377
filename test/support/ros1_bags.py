"""ROS 1 bags written independently of the package: ``rosbags.rosbag1.Writer`` with ROS 1 (Noetic) message
definitions (headers with ``seq``, CameraInfo's ``D K R P``), images encoded with numpy and PIL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rosbags.rosbag1 import Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from scipy.spatial.transform import Rotation

from support.mcap_bags import OPTICAL, SEC, START, compressed_depth_16uc1, png_bytes

CAMERA_LINK = "camera_link"
# the optical frame in the camera body frame: optical x = -link y, optical y = -link z, optical z = link x
T_LINK_OPTICAL = np.array([[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
NOETIC = get_typestore(Stores.ROS1_NOETIC)
# tf (tfMessage, what ROS 1's tf broadcasters publish) and tf2_msgs are not in rosbags' Noetic store
for _name in ("tf/msg/tfMessage", "tf2_msgs/msg/TFMessage"):
    NOETIC.register(get_types_from_msg("geometry_msgs/TransformStamped[] transforms", _name))
_T = NOETIC.types


def _header(seq: int, stamp_ns: int, frame_id: str = OPTICAL):
    return _T["std_msgs/msg/Header"](seq=seq, stamp=_T["builtin_interfaces/msg/Time"](
        sec=stamp_ns // SEC, nanosec=stamp_ns % SEC), frame_id=frame_id)


def _image(seq: int, stamp_ns: int, pixels: np.ndarray, encoding: str):
    pixels = np.ascontiguousarray(pixels)
    return _T["sensor_msgs/msg/Image"](header=_header(seq, stamp_ns), height=pixels.shape[0], width=pixels.shape[1],
                                       encoding=encoding, is_bigendian=0, step=pixels.strides[0],
                                       data=pixels.view(np.uint8).reshape(-1))


def _compressed(seq: int, stamp_ns: int, format: str, data: bytes):
    return _T["sensor_msgs/msg/CompressedImage"](header=_header(seq, stamp_ns), format=format,
                                                 data=np.frombuffer(data, dtype=np.uint8))


def _camera_info(seq: int, stamp_ns: int, camera):
    K = camera.K
    return _T["sensor_msgs/msg/CameraInfo"](
        header=_header(seq, stamp_ns), height=camera.height, width=camera.width, distortion_model="plumb_bob",
        D=np.zeros(5), K=K.reshape(-1), R=np.eye(3).reshape(-1), P=np.hstack([K, np.zeros((3, 1))]).reshape(-1),
        binning_x=0, binning_y=0,
        roi=_T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def _tf(msgtype: str, T: np.ndarray, stamp_ns: int, parent: str, child: str):
    q = Rotation.from_matrix(T[:3, :3]).as_quat()  # x, y, z, w
    transform = _T["geometry_msgs/msg/TransformStamped"](
        header=_header(0, stamp_ns, parent), child_frame_id=child, transform=_T["geometry_msgs/msg/Transform"](
            translation=_T["geometry_msgs/msg/Vector3"](*T[:3, 3].tolist()),
            rotation=_T["geometry_msgs/msg/Quaternion"](*map(float, q))))
    return _T[msgtype](transforms=[transform])


def write_ros1_camera_bag(path: Path, frames, compressed: bool, color_topic: str = "/camera/color/image_raw",
                          depth_topic: str = "/camera/depth/image_raw") -> list[int]:
    """The frames as a ROS 1 bag, 30 Hz from START, as the package's ROS 2 writer lays them out: color (rgb8, or
    with ``compressed`` png CompressedImage on ``<color>/compressed``), 16UC1 depth (or 16UC1 compressedDepth on
    ``<depth>/compressedDepth``), camera_info, ``/tf`` (``tf/tfMessage``, world -> camera_link) and a latched
    ``/tf_static`` (``tf2_msgs/TFMessage``, camera_link -> optical frame); plus a ``/rosout`` of a type ROS 2 has
    not. Returns the stamps."""
    stamps = []
    with Writer(path) as bag:
        def connect(topic, msgtype, latching=None):
            return bag.add_connection(topic, msgtype, typestore=NOETIC, callerid="/camera_driver", latching=latching)

        if compressed:
            color = connect(color_topic + "/compressed", "sensor_msgs/msg/CompressedImage")
            depth = connect(depth_topic + "/compressedDepth", "sensor_msgs/msg/CompressedImage")
        else:
            color = connect(color_topic, "sensor_msgs/msg/Image")
            depth = connect(depth_topic, "sensor_msgs/msg/Image")
        info = connect("/camera/color/camera_info", "sensor_msgs/msg/CameraInfo")
        tf = connect("/tf", "tf/msg/tfMessage")
        tf_static = connect("/tf_static", "tf2_msgs/msg/TFMessage", latching=1)
        rosout = connect("/rosout", "rosgraph_msgs/msg/Log")

        def write(connection, msg, stamp_ns):
            bag.write(connection, stamp_ns, NOETIC.serialize_ros1(msg, connection.msgtype))

        for i, frame in enumerate(frames):
            stamp = START + round(i * SEC / 30)
            if i == 0:
                write(tf_static, _tf("tf2_msgs/msg/TFMessage", T_LINK_OPTICAL, stamp, CAMERA_LINK, OPTICAL), stamp)
                write(rosout, _T["rosgraph_msgs/msg/Log"](header=_header(0, stamp, ""), level=2, name="/camera_driver",
                                                          msg="streaming", file="", function="", line=0, topics=[]),
                      stamp)
            T_world_link = frame.T_world_cam @ np.linalg.inv(T_LINK_OPTICAL)
            write(tf, _tf("tf/msg/tfMessage", T_world_link, stamp, "world", CAMERA_LINK), stamp)
            write(info, _camera_info(i, stamp, frame.camera), stamp)
            millimetres = np.where(frame.depth > 0, np.round(frame.depth * 1000), 0).astype("<u2")
            if compressed:
                write(color, _compressed(i, stamp, "rgb8; png compressed bgr8", png_bytes(frame.color)), stamp)
                depth_fields = compressed_depth_16uc1(frame.depth)
                write(depth, _compressed(i, stamp, depth_fields["format"], depth_fields["data"]), stamp)
            else:
                write(color, _image(i, stamp, frame.color, "rgb8"), stamp)
                write(depth, _image(i, stamp, millimetres, "16UC1"), stamp)
            stamps.append(stamp)
    return stamps
