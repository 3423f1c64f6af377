"""Message <-> numpy conversions: every encoding, padded rows, big-endian data, bad messages, CameraInfo, TF."""

from __future__ import annotations

import re

import numpy as np
import pytest
from rosbags.image import message_to_cvimage
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation

from semantic_recon_ros.core.camera import PinholeCamera
from semantic_recon_ros.core.datasets.image_files import read_depth
from semantic_recon_ros.core.ros_message_codec import (
    InvalidCameraInfoError,
    MalformedImageError,
    MessageConversionError,
    UnsupportedEncodingError,
    decode_pixels,
    encode_pixels,
)

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import Quaternion, Transform, TransformStamped, Vector3  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from semantic_recon_ros.ros.camera_info_conversions import camera_from_camera_info, camera_to_camera_info_msg  # noqa: E402
from semantic_recon_ros.ros.image_conversions import (  # noqa: E402
    color_to_image_msg,
    decode_color_image,
    decode_depth_image,
    decode_label_image,
    depth_to_image_msg,
    labels_to_image_msg,
)
from semantic_recon_ros.ros.transform_conversions import matrix_to_transform_stamped, transform_to_matrix  # noqa: E402

STAMP = 1_700_000_000_123_456_789
RNG = np.random.default_rng(0)
H, W = 7, 11
COLOR = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)


def hand_built_image(pixels: np.ndarray, encoding: str, big_endian: bool = False, padding: int = 0) -> Image:
    """An Image message built directly with numpy byte order and zero-filled row padding."""
    dtype = pixels.dtype.newbyteorder(">" if big_endian else "<")
    rows = np.ascontiguousarray(pixels, dtype=dtype).view(np.uint8).reshape(pixels.shape[0], -1)
    padded = np.concatenate([rows, np.full((rows.shape[0], padding), 0xAB, np.uint8)], axis=1)
    return Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding, is_bigendian=int(big_endian),
                 step=padded.shape[1], data=padded.tobytes())


@pytest.mark.parametrize("padding", [0, 3])
def test_color_encodings_decode_to_rgb(padding):
    alpha = RNG.integers(0, 256, (H, W, 1), dtype=np.uint8)
    cases = {
        "rgb8": COLOR,
        "bgr8": COLOR[:, :, ::-1],
        "rgba8": np.concatenate([COLOR, alpha], axis=2),
        "bgra8": np.concatenate([COLOR[:, :, ::-1], alpha], axis=2),
    }
    for encoding, pixels in cases.items():
        np.testing.assert_array_equal(decode_color_image(hand_built_image(pixels, encoding, padding=padding)), COLOR)
    gray = COLOR[:, :, 0]
    decoded = decode_color_image(hand_built_image(gray[:, :, None], "mono8", padding=padding))
    assert decoded.shape == (H, W, 3) and decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, np.repeat(gray[:, :, None], 3, axis=2))


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_color_round_trip_through_published_message_and_rosbags_image(encoding):
    msg = color_to_image_msg(COLOR, STAMP, "camera_color_optical_frame", encoding)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1_700_000_000, 123_456_789)
    assert msg.header.frame_id == "camera_color_optical_frame" and msg.encoding == encoding
    np.testing.assert_array_equal(decode_color_image(msg), COLOR)
    # Independent reference: rosbags-image returns the raw channels in the message's own order.
    raw = message_to_cvimage(msg)
    order = {"rgb8": [0, 1, 2], "bgr8": [2, 1, 0], "rgba8": [0, 1, 2], "bgra8": [2, 1, 0]}[encoding]
    np.testing.assert_array_equal(raw[:, :, order], COLOR)
    # Survives CDR serialisation (what DDS and bags carry).
    np.testing.assert_array_equal(decode_color_image(deserialize_message(serialize_message(msg), Image)), COLOR)


def test_mono8_color_output_is_the_channel_mean():
    msg = color_to_image_msg(COLOR, STAMP, "cam", "mono8")
    np.testing.assert_array_equal(decode_color_image(msg)[:, :, 1], np.round(COLOR.mean(axis=2)).astype(np.uint8))


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("padding", [0, 1, 6])
def test_depth_16uc1_and_32fc1_with_padding_and_byte_order(big_endian, padding):
    millimetres = RNG.integers(0, 65536, (H, W)).astype(np.uint16)
    millimetres[0, 0] = 0
    metres = decode_depth_image(hand_built_image(millimetres, "16UC1", big_endian, padding))
    assert metres.dtype == np.float32 and metres.shape == (H, W)
    np.testing.assert_allclose(metres, millimetres / 1000.0, rtol=1e-7)
    assert metres[0, 0] == 0

    values = RNG.uniform(0.1, 8.0, (H, W)).astype(np.float32)
    values[1, 1] = np.nan
    decoded = decode_depth_image(hand_built_image(values, "32FC1", big_endian, padding))
    np.testing.assert_array_equal(decoded, values)  # NaN positions equal too
    if big_endian:  # the data really is big-endian: read little-endian it would be garbage
        swapped = hand_built_image(values, "32FC1", True, padding)
        swapped.is_bigendian = 0
        assert not np.allclose(decode_depth_image(swapped), values, equal_nan=True)


def test_encode_pixels_writes_the_layout_it_claims():
    values = RNG.uniform(0, 5, (H, W)).astype(np.float32)
    for big_endian in (False, True):
        for padding in (0, 5):
            fields = encode_pixels(values, "32FC1", is_bigendian=big_endian, row_padding=padding)
            reference = hand_built_image(values, "32FC1", big_endian, padding)
            assert fields.step == reference.step == W * 4 + padding and fields.is_bigendian == int(big_endian)
            rows = np.frombuffer(fields.data, np.uint8).reshape(H, -1)[:, : W * 4]
            np.testing.assert_array_equal(rows, np.frombuffer(bytes(reference.data), np.uint8).reshape(H, -1)[:, : W * 4])


def test_depth_round_trip_and_invalid_values():
    depth = RNG.uniform(0.2, 6.0, (H, W)).astype(np.float32)
    depth[0, :4] = [0.0, np.nan, np.inf, -1.0]
    depth[1, 0] = 70.0  # beyond the 16-bit millimetre range
    exact = decode_depth_image(depth_to_image_msg(depth, STAMP, "cam"))
    np.testing.assert_array_equal(exact, depth)
    msg = depth_to_image_msg(depth, STAMP, "cam", "16UC1")
    assert msg.encoding == "16UC1" and msg.step == 2 * W
    mm = decode_depth_image(msg)
    np.testing.assert_array_equal(mm[0, :4], 0)
    assert mm[1, 0] == 0
    valid = np.isfinite(depth) & (depth > 0) & (depth < 65)
    assert np.abs(mm[valid] - depth[valid]).max() <= 0.0005 + 1e-6
    np.testing.assert_array_equal(message_to_cvimage(msg), np.round(np.where(valid, depth, 0) * 1000).astype(np.uint16))


def test_real_kinect_depth_png_survives_16uc1(seven_scenes):
    path = seven_scenes.root / "frame-000000.depth.png"
    depth = read_depth(path, 1000.0, None, (0, 65535))
    msg = depth_to_image_msg(depth, STAMP, "cam", "16UC1")
    np.testing.assert_array_equal(decode_depth_image(msg), depth)
    np.testing.assert_array_equal(decode_depth_image(deserialize_message(serialize_message(msg), Image)), depth)


def test_label_images():
    labels = RNG.integers(0, 13, (H, W))
    labels[0, :3] = [-1, 255, 300]
    decoded = decode_label_image(labels_to_image_msg(labels, STAMP, "cam"))
    assert decoded.dtype == np.int64
    np.testing.assert_array_equal(decoded[0, :3], [255, 255, 255])
    np.testing.assert_array_equal(decoded[1:], labels[1:])
    wide = RNG.integers(0, 1000, (H, W))
    wide[0, 0] = 70000
    decoded = decode_label_image(labels_to_image_msg(wide, STAMP, "cam", "16UC1"))
    assert decoded[0, 0] == 65535
    np.testing.assert_array_equal(decoded.ravel()[1:], wide.ravel()[1:])
    big = decode_label_image(hand_built_image(wide.clip(0, 65535).astype(np.uint16), "16UC1", big_endian=True, padding=2))
    np.testing.assert_array_equal(big.ravel()[1:], wide.ravel()[1:])


def test_rosbags_messages_decode_like_rclpy_messages():
    typestore = get_typestore(Stores.ROS2_KILTED)
    msg = depth_to_image_msg(RNG.uniform(0, 4, (H, W)).astype(np.float32), STAMP, "cam")
    from_bag = typestore.deserialize_cdr(bytes(serialize_message(msg)), "sensor_msgs/msg/Image")
    np.testing.assert_array_equal(decode_depth_image(from_bag), decode_depth_image(msg))


def test_bad_image_messages_raise_specific_errors():
    good = color_to_image_msg(COLOR, STAMP, "cam")
    cases = [
        (dict(encoding="yuv422"), UnsupportedEncodingError, "encoding 'yuv422') cannot be read as a color image"),
        (dict(encoding="32FC1", step=W * 4), UnsupportedEncodingError, "cannot be read as a color image"),
        (dict(step=W * 3 - 1), MalformedImageError, "step 32 is smaller than width 11"),
        (dict(data=bytes(good.data)[:-1]), MalformedImageError, "data has 230 bytes, expected step 33 x height 7 = 231"),
        (dict(height=H + 1), MalformedImageError, "expected step 33 x height 8"),
        (dict(width=0), MalformedImageError, "empty size"),
    ]
    for changes, error, message in cases:
        msg = color_to_image_msg(COLOR, STAMP, "cam")
        for name, value in changes.items():
            setattr(msg, name, value)
        with pytest.raises(error, match=re.escape(message)):
            decode_color_image(msg)
    unknown = color_to_image_msg(COLOR, STAMP, "cam")
    unknown.encoding = "yuv422"
    with pytest.raises(UnsupportedEncodingError, match="unsupported image encoding 'yuv422'; supported: rgb8"):
        decode_pixels(unknown)
    with pytest.raises(UnsupportedEncodingError, match="depth encodings: 32FC1, 16UC1"):
        decode_depth_image(good)
    with pytest.raises(UnsupportedEncodingError, match="label encodings"):
        decode_label_image(depth_to_image_msg(np.zeros((H, W), np.float32), STAMP, "cam"))
    assert issubclass(UnsupportedEncodingError, MessageConversionError) and issubclass(MessageConversionError, ValueError)


def test_bad_arrays_are_refused_when_encoding():
    with pytest.raises(MalformedImageError, match=r"\(H, W, 3\) uint8"):
        color_to_image_msg(COLOR.astype(np.float32), STAMP, "cam")
    with pytest.raises(UnsupportedEncodingError, match="color encodings"):
        color_to_image_msg(COLOR, STAMP, "cam", "32FC1")
    with pytest.raises(MalformedImageError, match="float metres"):
        depth_to_image_msg(np.zeros((H, W), np.uint16), STAMP, "cam")
    with pytest.raises(MalformedImageError, match="integers"):
        labels_to_image_msg(np.zeros((H, W), np.float32), STAMP, "cam")
    with pytest.raises(MalformedImageError, match="float32 pixels"):
        encode_pixels(np.zeros((H, W), np.float64), "32FC1")
    with pytest.raises(ValueError, match=">= 0 ns"):
        color_to_image_msg(COLOR, -1, "cam")


def test_camera_info_round_trip_and_refusals():
    camera = PinholeCamera(fx=585.0, fy=584.5, cx=320.25, cy=239.75, width=640, height=480)
    msg = camera_to_camera_info_msg(camera, STAMP, "camera_color_optical_frame")
    assert msg.distortion_model == "plumb_bob" and list(msg.d) == [0.0] * 5
    np.testing.assert_array_equal(np.asarray(msg.p).reshape(3, 4)[:, :3], camera.K)
    assert camera_from_camera_info(msg) == camera
    assert camera_from_camera_info(deserialize_message(serialize_message(msg), CameraInfo)) == camera
    typestore = get_typestore(Stores.ROS2_KILTED)
    assert camera_from_camera_info(typestore.deserialize_cdr(bytes(serialize_message(msg)), "sensor_msgs/msg/CameraInfo")) == camera

    uncalibrated = CameraInfo(width=640, height=480)
    uncalibrated.header.frame_id = "cam"
    with pytest.raises(InvalidCameraInfoError, match=r"CameraInfo \(frame_id 'cam'\): focal lengths must be positive, got fx=0.0"):
        camera_from_camera_info(uncalibrated)
    empty = camera_to_camera_info_msg(camera, STAMP, "cam")
    empty.width = 0
    with pytest.raises(InvalidCameraInfoError, match="size 0x480 is empty"):
        camera_from_camera_info(empty)
    # degenerate intrinsics that a pinhole model would silently misuse
    for index, value, reason in ((8, 0.0, "not an intrinsic matrix"), (1, 50.0, "skew"), (4, 5000.0, "differ by more"),
                                 (2, -10.0, "principal point"), (5, 900.0, "principal point"), (3, 1.0, "not an intrinsic")):
        bad = camera_to_camera_info_msg(camera, STAMP, "cam")
        k = list(bad.k)
        k[index] = value
        bad.k = k
        with pytest.raises(InvalidCameraInfoError, match=reason):
            camera_from_camera_info(bad)


def test_transform_stamped_round_trip_and_normalisation():
    rng = np.random.default_rng(1)
    for _ in range(10):
        T = np.eye(4)
        T[:3, :3] = Rotation.random(random_state=rng.integers(1 << 31)).as_matrix()
        T[:3, 3] = rng.normal(size=3)
        msg = matrix_to_transform_stamped(T, STAMP, "world", "camera_link")
        assert (msg.header.frame_id, msg.child_frame_id) == ("world", "camera_link")
        np.testing.assert_allclose(transform_to_matrix(msg), T, atol=1e-12)
        np.testing.assert_allclose(transform_to_matrix(msg.transform), T, atol=1e-12)
    q = Rotation.from_euler("xyz", [0.3, -0.2, 1.0]).as_quat()
    msg = TransformStamped(transform=Transform(translation=Vector3(x=1.0, y=2.0, z=3.0),
                                               rotation=Quaternion(x=2 * q[0], y=2 * q[1], z=2 * q[2], w=2 * q[3])))
    expected = np.eye(4)
    expected[:3, :3] = Rotation.from_quat(q).as_matrix()
    expected[:3, 3] = [1, 2, 3]
    np.testing.assert_allclose(transform_to_matrix(msg), expected, atol=1e-12)
    msg.transform.rotation = Quaternion(x=0.0, y=0.0, z=0.0, w=0.0)
    with pytest.raises(ValueError, match="non-zero norm"):
        transform_to_matrix(msg)
