"""The numbers inside ROS 2 sensor messages <-> numpy arrays and core types, without importing ROS.

Decoders read messages by field name only, so they accept rclpy messages (``sensor_msgs.msg.Image``
...) and messages deserialized by ``rosbags`` alike:

* ``sensor_msgs/Image`` (fields ``height, width, encoding, is_bigendian, step, data``):
  color from rgb8, bgr8, rgba8, bgra8, mono8 -> (H, W, 3) uint8 RGB; depth from 16UC1 (millimetres)
  or 32FC1 (metres) -> (H, W) float32 metres; class ids from mono8 or 16UC1 -> (H, W) int64.
  Rows may be padded (``step`` > width * bytes per pixel); big-endian data is converted.
* ``sensor_msgs/CameraInfo`` -> :class:`PinholeCamera` (from ``k``; distortion is ignored).
* ``geometry_msgs/Transform`` -> (4, 4) ``T_parent_child``.

Encoders return plain field values (:class:`ImageFields`, :class:`CameraInfoFields`); building the
message objects is left to the rclpy layer (:mod:`semantic_recon_ros.ros`) and the rosbags writer.
Bad input raises :class:`UnsupportedEncodingError`, :class:`MalformedImageError` or
:class:`InvalidCameraInfoError` (all :class:`MessageConversionError`, a ValueError).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .camera import PinholeCamera
from .transform_tree import NANOSECONDS_PER_SECOND, TransformTree

MILLIMETRES_PER_METRE = 1000.0
UINT8_UNLABELED = 255
UINT16_UNLABELED = 65535
UINT16_MAX = 65535


class MessageConversionError(ValueError):
    """A message cannot be converted (base class)."""


class UnsupportedEncodingError(MessageConversionError):
    """The image encoding is unknown or not valid for the requested image kind."""


class MalformedImageError(MessageConversionError):
    """Image size, step, data length or array shape are inconsistent."""


class InvalidCameraInfoError(MessageConversionError):
    """A CameraInfo that does not describe a usable pinhole camera (e.g. zero focal length)."""


@dataclass(frozen=True)
class PixelFormat:
    """Memory layout of one ``sensor_msgs/Image`` encoding: element dtype (little-endian) and channels."""

    dtype: np.dtype
    channels: int

    @property
    def bytes_per_pixel(self) -> int:
        return self.dtype.itemsize * self.channels


PIXEL_FORMATS: dict[str, PixelFormat] = {
    "rgb8": PixelFormat(np.dtype("<u1"), 3),
    "bgr8": PixelFormat(np.dtype("<u1"), 3),
    "rgba8": PixelFormat(np.dtype("<u1"), 4),
    "bgra8": PixelFormat(np.dtype("<u1"), 4),
    "mono8": PixelFormat(np.dtype("<u1"), 1),
    "16UC1": PixelFormat(np.dtype("<u2"), 1),
    "32FC1": PixelFormat(np.dtype("<f4"), 1),
}
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
DEPTH_ENCODINGS = ("32FC1", "16UC1")
LABEL_ENCODINGS = ("mono8", "16UC1")


@dataclass(frozen=True)
class ImageFields:
    """Field values of a ``sensor_msgs/Image`` (header excluded); ``data`` is ``step * height`` bytes."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: bytes


@dataclass(frozen=True)
class CameraInfoFields:
    """Field values of a ``sensor_msgs/CameraInfo`` for an undistorted pinhole camera (header excluded)."""

    height: int
    width: int
    distortion_model: str
    d: np.ndarray  # (5,) zeros
    k: np.ndarray  # (9,) row-major K
    r: np.ndarray  # (9,) identity
    p: np.ndarray  # (12,) row-major [K | 0]


def _describe(msg: Any) -> str:
    frame_id = getattr(getattr(msg, "header", None), "frame_id", "")
    return f"image (frame_id {frame_id!r}, encoding {getattr(msg, 'encoding', '?')!r})"


def _pixel_format(encoding: str) -> PixelFormat:
    layout = PIXEL_FORMATS.get(encoding)
    if layout is None:
        raise UnsupportedEncodingError(f"unsupported image encoding {encoding!r}; supported: {', '.join(PIXEL_FORMATS)}")
    return layout


def decode_pixels(msg: Any) -> np.ndarray:
    """(H, W, C) native-endian array of an Image message's pixels (a copy, padding removed)."""
    layout = _pixel_format(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise MalformedImageError(f"{_describe(msg)} has empty size {width}x{height}")
    row_bytes = width * layout.bytes_per_pixel
    if step < row_bytes:
        raise MalformedImageError(
            f"{_describe(msg)}: step {step} is smaller than width {width} x {layout.bytes_per_pixel} bytes per pixel"
        )
    try:
        raw = np.frombuffer(msg.data, dtype=np.uint8)
    except (TypeError, ValueError):
        raw = np.asarray(msg.data, dtype=np.uint8)
    if raw.size != step * height:
        raise MalformedImageError(
            f"{_describe(msg)}: data has {raw.size} bytes, expected step {step} x height {height} = {step * height}"
        )
    rows = raw.reshape(height, step)[:, :row_bytes]
    dtype = layout.dtype.newbyteorder(">") if msg.is_bigendian and layout.dtype.itemsize > 1 else layout.dtype
    pixels = np.ascontiguousarray(rows).view(dtype).reshape(height, width, layout.channels)
    return pixels.astype(layout.dtype.newbyteorder("="), copy=True)


def _check_encoding(msg: Any, allowed: tuple[str, ...], kind: str) -> None:
    if msg.encoding not in allowed:
        raise UnsupportedEncodingError(
            f"{_describe(msg)} cannot be read as a {kind} image; {kind} encodings: {', '.join(allowed)}"
        )


def decode_color_image(msg: Any) -> np.ndarray:
    """Image message (rgb8, bgr8, rgba8, bgra8, mono8) -> (H, W, 3) uint8 RGB."""
    _check_encoding(msg, COLOR_ENCODINGS, "color")
    pixels = decode_pixels(msg)
    if msg.encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    if msg.encoding.startswith("bgr"):
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    return np.ascontiguousarray(pixels[:, :, :3])


def decode_depth_image(msg: Any) -> np.ndarray:
    """Image message (32FC1 metres, 16UC1 millimetres) -> (H, W) float32 metres (0 / NaN = invalid)."""
    _check_encoding(msg, DEPTH_ENCODINGS, "depth")
    pixels = decode_pixels(msg)[:, :, 0]
    if msg.encoding == "16UC1":
        return pixels.astype(np.float32) / np.float32(MILLIMETRES_PER_METRE)
    return pixels


def decode_label_image(msg: Any) -> np.ndarray:
    """Image message (mono8, 16UC1) -> (H, W) int64 class ids (values >= num_classes, e.g. 255, = unlabeled)."""
    _check_encoding(msg, LABEL_ENCODINGS, "label")
    return decode_pixels(msg)[:, :, 0].astype(np.int64)


def encode_pixels(
    pixels: np.ndarray, encoding: str, *, is_bigendian: bool = False, row_padding: int = 0
) -> ImageFields:
    """(H, W) or (H, W, C) array already in ``encoding``'s channel order -> Image fields.

    Args:
        pixels: values of the encoding's element type (uint8, uint16 or float32).
        encoding: one of :data:`PIXEL_FORMATS`.
        is_bigendian: store multi-byte elements big-endian.
        row_padding: extra bytes at the end of each row (``step = width * bytes_per_pixel + row_padding``).
    """
    layout = _pixel_format(encoding)
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] != layout.channels or pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise MalformedImageError(f"{encoding} needs a non-empty (H, W, {layout.channels}) array, got shape {pixels.shape}")
    if pixels.dtype.kind != layout.dtype.kind or pixels.dtype.itemsize != layout.dtype.itemsize:
        raise MalformedImageError(f"{encoding} needs {layout.dtype.name} pixels, got {pixels.dtype}")
    if row_padding < 0:
        raise ValueError(f"row_padding must be >= 0, got {row_padding}")
    height, width = pixels.shape[:2]
    dtype = layout.dtype.newbyteorder(">" if is_bigendian else "<")
    rows = np.ascontiguousarray(pixels, dtype=dtype).view(np.uint8).reshape(height, -1)
    if row_padding:
        rows = np.concatenate([rows, np.zeros((height, row_padding), dtype=np.uint8)], axis=1)
    return ImageFields(
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=int(is_bigendian and layout.dtype.itemsize > 1),
        step=rows.shape[1],
        data=rows.tobytes(),
    )


def encode_color_image(color: np.ndarray, encoding: str = "rgb8") -> ImageFields:
    """(H, W, 3) uint8 RGB -> Image fields in ``encoding`` (rgb8, bgr8, rgba8 / bgra8 with alpha 255, mono8 = mean)."""
    if encoding not in COLOR_ENCODINGS:
        raise UnsupportedEncodingError(f"cannot write color as {encoding!r}; color encodings: {', '.join(COLOR_ENCODINGS)}")
    color = np.asarray(color)
    if color.dtype != np.uint8 or color.ndim != 3 or color.shape[2] != 3:
        raise MalformedImageError(f"color must be (H, W, 3) uint8 RGB, got {color.shape} {color.dtype}")
    if encoding == "mono8":
        return encode_pixels(np.round(color.mean(axis=2)).astype(np.uint8), encoding)
    channels = color[:, :, ::-1] if encoding.startswith("bgr") else color
    if encoding.endswith("a8"):
        alpha = np.full(color.shape[:2] + (1,), 255, dtype=np.uint8)
        channels = np.concatenate([channels, alpha], axis=2)
    return encode_pixels(channels, encoding)


def encode_depth_image(depth: np.ndarray, encoding: str = "32FC1") -> ImageFields:
    """(H, W) float metres -> Image fields: 32FC1 metres as is, or 16UC1 rounded millimetres.

    For 16UC1 every invalid depth (NaN, inf, <= 0) and every depth beyond 65.535 m becomes 0.
    """
    if encoding not in DEPTH_ENCODINGS:
        raise UnsupportedEncodingError(f"cannot write depth as {encoding!r}; depth encodings: {', '.join(DEPTH_ENCODINGS)}")
    depth = np.asarray(depth)
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.floating):
        raise MalformedImageError(f"depth must be (H, W) float metres, got {depth.shape} {depth.dtype}")
    if encoding == "32FC1":
        return encode_pixels(depth.astype(np.float32), encoding)
    with np.errstate(invalid="ignore"):
        millimetres = np.round(depth.astype(np.float64) * MILLIMETRES_PER_METRE)
        valid = np.isfinite(millimetres) & (millimetres > 0) & (millimetres <= UINT16_MAX)
    return encode_pixels(np.where(valid, millimetres, 0).astype(np.uint16), encoding)


def encode_label_image(labels: np.ndarray, encoding: str = "mono8") -> ImageFields:
    """(H, W) integer class ids -> mono8 (ids outside [0, 255) become 255) or 16UC1 (outside [0, 65535) -> 65535)."""
    if encoding not in LABEL_ENCODINGS:
        raise UnsupportedEncodingError(f"cannot write labels as {encoding!r}; label encodings: {', '.join(LABEL_ENCODINGS)}")
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise MalformedImageError(f"labels must be (H, W) integers, got {labels.shape} {labels.dtype}")
    unlabeled, dtype = (UINT8_UNLABELED, np.uint8) if encoding == "mono8" else (UINT16_UNLABELED, np.uint16)
    inside = (labels >= 0) & (labels < unlabeled)
    return encode_pixels(np.where(inside, labels, unlabeled).astype(dtype), encoding)


def camera_from_camera_info(msg: Any) -> PinholeCamera:
    """CameraInfo message -> :class:`PinholeCamera` from ``k``, ``width``, ``height``.

    Raises InvalidCameraInfoError for a zero / non-finite focal length (an uncalibrated camera
    publishes ``k`` all zeros), a ``k`` that is not 9 numbers, or an empty image size.
    """
    frame_id = getattr(getattr(msg, "header", None), "frame_id", "")
    where = f"CameraInfo (frame_id {frame_id!r})"
    k = np.asarray(msg.k, dtype=np.float64).reshape(-1)
    if k.shape != (9,):
        raise InvalidCameraInfoError(f"{where}: k must have 9 entries, got {k.size}")
    width, height = int(msg.width), int(msg.height)
    if width <= 0 or height <= 0:
        raise InvalidCameraInfoError(f"{where}: image size {width}x{height} is empty")
    K = k.reshape(3, 3)
    if not (np.isfinite(K).all() and K[0, 0] > 0 and K[1, 1] > 0):
        raise InvalidCameraInfoError(
            f"{where}: focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]} (is the camera calibrated?)"
        )
    problem = pinhole_problem(K, width, height)
    if problem is not None:
        raise InvalidCameraInfoError(f"{where}: {problem}")
    return PinholeCamera.from_matrix(K, width, height)


MAX_SKEW_RATIO = 1e-3  # |K[0, 1]| / fx above this is a skewed camera, which a PinholeCamera cannot represent
MAX_ASPECT_RATIO = 4.0  # fx / fy (or fy / fx) beyond this is no real camera


def pinhole_problem(K: np.ndarray, width: int, height: int) -> str | None:
    """Why a (3, 3) intrinsic matrix with positive focal lengths is not an undistorted pinhole camera for
    ``width x height`` images (None when it is): the last row must be (0, 0, 1) and K[1, 0] zero, the skew
    negligible, the aspect ratio plausible and the principal point inside the image."""
    if not (K[1, 0] == 0 and K[2, 0] == 0 and K[2, 1] == 0 and abs(K[2, 2] - 1.0) < 1e-6):
        return f"k is not an intrinsic matrix (rows 2-3 must be (0, fy, cy), (0, 0, 1)), got {K.reshape(-1).tolist()}"
    if abs(K[0, 1]) > MAX_SKEW_RATIO * K[0, 0]:
        return f"skew k[1] = {K[0, 1]:g} is not supported (pinhole cameras without skew only)"
    if not 1 / MAX_ASPECT_RATIO <= K[0, 0] / K[1, 1] <= MAX_ASPECT_RATIO:
        return f"focal lengths fx={K[0, 0]:g}, fy={K[1, 1]:g} differ by more than {MAX_ASPECT_RATIO:g}x"
    if not (0 <= K[0, 2] <= width and 0 <= K[1, 2] <= height):
        return f"principal point ({K[0, 2]:g}, {K[1, 2]:g}) lies outside the {width}x{height} image"
    return None


def encode_camera_info(camera: PinholeCamera) -> CameraInfoFields:
    """:class:`PinholeCamera` -> CameraInfo fields (plumb_bob with zero distortion, identity rectification)."""
    K = camera.K
    return CameraInfoFields(
        height=camera.height,
        width=camera.width,
        distortion_model="plumb_bob",
        d=np.zeros(5),
        k=K.reshape(-1).copy(),
        r=np.eye(3).reshape(-1),
        p=np.concatenate([K, np.zeros((3, 1))], axis=1).reshape(-1),
    )


def translation_quaternion_from_transform(transform: Any) -> tuple[np.ndarray, np.ndarray]:
    """``geometry_msgs/Transform`` -> ((3,) translation, (4,) quaternion ``(x, y, z, w)``), unnormalised."""
    t, q = transform.translation, transform.rotation
    return np.array([t.x, t.y, t.z], dtype=np.float64), np.array([q.x, q.y, q.z, q.w], dtype=np.float64)


def add_transform_stamped(tree: TransformTree, transform: Any, *, static: bool) -> bool:
    """Store a ``geometry_msgs/TransformStamped`` (rclpy or rosbags message) in ``tree``.

    Returns what :meth:`TransformTree.set_transform` returns; raises its ValueError for invalid transforms.
    """
    translation, quaternion = translation_quaternion_from_transform(transform.transform)
    return tree.set_transform(transform.header.frame_id, transform.child_frame_id, stamp_to_ns(transform.header.stamp),
                              translation, quaternion, static=static)


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` (``sec``, ``nanosec``) -> integer nanoseconds."""
    return int(stamp.sec) * NANOSECONDS_PER_SECOND + int(stamp.nanosec)


def ns_to_sec_nanosec(stamp_ns: int) -> tuple[int, int]:
    """Integer nanoseconds (>= 0) -> ``(sec, nanosec)`` for a ``builtin_interfaces/Time``."""
    stamp_ns = int(stamp_ns)
    if stamp_ns < 0:
        raise ValueError(f"ROS time stamps must be >= 0 ns, got {stamp_ns}")
    return divmod(stamp_ns, NANOSECONDS_PER_SECOND)
