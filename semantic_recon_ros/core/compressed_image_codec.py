"""``sensor_msgs/CompressedImage`` <-> numpy color and depth images, without importing ROS.

Like :mod:`.ros_message_codec`, decoders read messages by field name (``format``, ``data``), so rclpy
messages and messages deserialized by ``rosbags`` are accepted alike. Two payloads, as image_transport's
plugins write them:

* ``compressed`` (color): ``format`` is ``"<raw encoding>; <jpeg|png> compressed <bgr8|rgb8|mono8|...>"``
  (e.g. ``"rgb8; jpeg compressed bgr8"``) or a bare ``"jpeg"`` / ``"png"``; ``data`` is the image file.
  -> (H, W, 3) uint8 RGB (gray and alpha images are expanded / dropped).
* ``compressedDepth`` (depth): ``format`` is ``"<16UC1|32FC1>; compressedDepth[ png]"``; ``data`` is a
  12-byte little-endian config header (int32 compression format, float32 depth parameters a, b) followed
  by a 16-bit single-channel PNG. 16UC1 stores millimetres as they are. 32FC1 stores quantized inverse
  depth: ``q = uint16(a / z + b)`` for ``z < depth_max`` (else 0), with ``a = Q * (Q + 1)``,
  ``b = 1 - a / depth_max`` (``Q`` = depth_quantization); decoding gives ``z = a / (q - b)`` and 0 =
  invalid. -> (H, W) float32 metres, 0 = invalid.

Encoders (:func:`encode_compressed_color`, :func:`encode_compressed_depth`) return
:class:`CompressedImageFields` for the bag writer and the rclpy layer. Anything else (RVL depth, 16-bit
color, a payload that does not decode) raises :class:`~.ros_message_codec.UnsupportedEncodingError` or
:class:`~.ros_message_codec.MalformedImageError` naming the format and what is supported.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .ros_message_codec import (
    MILLIMETRES_PER_METRE,
    MalformedImageError,
    UnsupportedEncodingError,
    encode_depth_image,
)

COLOR_COMPRESSIONS = ("jpeg", "png")
DEPTH_ENCODINGS = ("16UC1", "32FC1")
COMPRESSED_DEPTH = "compressedDepth"
DEPTH_HEADER = struct.Struct("<iff")  # compression format, depth parameters a, b (12 bytes)
INVERSE_DEPTH_FORMAT = 0  # compressed_depth_image_transport's INV_DEPTH: the header's format for 32FC1
DEFAULT_DEPTH_MAX = 10.0  # metres; image_transport's default: farther depth is stored as invalid
DEFAULT_DEPTH_QUANTIZATION = 100.0  # image_transport's default Q of the 32FC1 inverse-depth quantization
DEFAULT_JPEG_QUALITY = 95
SUPPORTED_COLOR = "jpeg or png ('rgb8; jpeg compressed bgr8', 'bgr8; png compressed bgr8', 'jpeg', ...)"
SUPPORTED_DEPTH = "compressedDepth png of 16UC1 or 32FC1 ('16UC1; compressedDepth png', '32FC1; compressedDepth')"


@dataclass(frozen=True)
class CompressedImageFields:
    """Field values of a ``sensor_msgs/CompressedImage`` (header excluded)."""

    format: str
    data: bytes


def _payload(msg: Any) -> bytes:
    data = msg.data
    return data.tobytes() if isinstance(data, np.ndarray) else bytes(data)


def _describe(msg: Any) -> str:
    frame_id = getattr(getattr(msg, "header", None), "frame_id", "")
    return f"compressed image (frame_id {frame_id!r}, format {getattr(msg, 'format', '?')!r})"


def _decode_file(payload: bytes, what: str) -> np.ndarray:
    pixels = cv2.imdecode(np.frombuffer(payload, dtype=np.uint8), cv2.IMREAD_UNCHANGED) if payload else None
    if pixels is None:
        raise MalformedImageError(f"{what}: the {len(payload)}-byte payload is not a readable jpeg or png image")
    return pixels


def decode_compressed_color(msg: Any) -> np.ndarray:
    """CompressedImage (jpeg / png, see the module docstring) -> (H, W, 3) uint8 RGB."""
    text = msg.format.strip().lower()
    compression = (text.rpartition(";")[2].split() or [""])[0]
    if COMPRESSED_DEPTH.lower() in text or compression not in COLOR_COMPRESSIONS:
        raise UnsupportedEncodingError(
            f"{_describe(msg)} cannot be read as a color image; supported: {SUPPORTED_COLOR}")
    pixels = _decode_file(_payload(msg), _describe(msg))
    if pixels.dtype != np.uint8:
        raise UnsupportedEncodingError(f"{_describe(msg)} holds {pixels.dtype} pixels; color images must be 8-bit")
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    # the file's channel order: image_transport (OpenCV) writes bgr8 / bgra8; "compressed rgb8" keeps rgb order
    stored = text.partition("compressed")[2].strip()
    channels = pixels[:, :, :3]
    return np.ascontiguousarray(channels if stored.startswith("rgb") else channels[:, :, ::-1])


def decode_compressed_depth(msg: Any) -> np.ndarray:
    """CompressedImage (compressedDepth png, see the module docstring) -> (H, W) float32 metres, 0 = invalid."""
    raw_encoding, _, transport = (part.strip() for part in msg.format.partition(";"))
    words = transport.split()
    if (raw_encoding not in DEPTH_ENCODINGS or not words or words[0] != COMPRESSED_DEPTH
            or words[1:] not in ([], ["png"])):
        raise UnsupportedEncodingError(
            f"{_describe(msg)} cannot be read as a depth image; supported: {SUPPORTED_DEPTH}")
    payload = _payload(msg)
    if len(payload) <= DEPTH_HEADER.size:
        raise MalformedImageError(f"{_describe(msg)}: {len(payload)} bytes cannot hold the 12-byte header and a png")
    _, a, b = DEPTH_HEADER.unpack_from(payload)
    stored = _decode_file(payload[DEPTH_HEADER.size:], _describe(msg))
    if stored.dtype != np.uint16 or stored.ndim != 2:
        raise MalformedImageError(f"{_describe(msg)}: the png must be 16-bit single-channel, got {stored.dtype} "
                                  f"with shape {stored.shape}")
    if raw_encoding == "16UC1":
        return stored.astype(np.float32) / np.float32(MILLIMETRES_PER_METRE)
    quantized = stored.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.float32(a) / (quantized - np.float32(b))
    return np.where((stored > 0) & np.isfinite(depth) & (depth > 0), depth, np.float32(0)).astype(np.float32)


def encode_compressed_color(color: np.ndarray, compression: str = "jpeg",
                            jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> CompressedImageFields:
    """(H, W, 3) uint8 RGB -> CompressedImage fields as image_transport writes them: format
    ``"rgb8; <compression> compressed bgr8"`` and the jpeg (lossy) or png (lossless) file of the BGR pixels."""
    if compression not in COLOR_COMPRESSIONS:
        raise UnsupportedEncodingError(
            f"cannot compress color as {compression!r}; supported: {', '.join(COLOR_COMPRESSIONS)}")
    color = np.asarray(color)
    if color.dtype != np.uint8 or color.ndim != 3 or color.shape[2] != 3 or color.size == 0:
        raise MalformedImageError(f"color must be non-empty (H, W, 3) uint8 RGB, got {color.shape} {color.dtype}")
    options = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if compression == "jpeg" else []
    ok, encoded = cv2.imencode(f".{'jpg' if compression == 'jpeg' else 'png'}", color[:, :, ::-1], options)
    if not ok:
        raise MalformedImageError(f"OpenCV could not encode a {color.shape[1]}x{color.shape[0]} image as {compression}")
    return CompressedImageFields(f"rgb8; {compression} compressed bgr8", encoded.tobytes())


def encode_compressed_depth(depth: np.ndarray, encoding: str = "16UC1", depth_max: float = DEFAULT_DEPTH_MAX,
                            depth_quantization: float = DEFAULT_DEPTH_QUANTIZATION) -> CompressedImageFields:
    """(H, W) float metres -> compressedDepth fields (format ``"<encoding>; compressedDepth png"``).

    16UC1: rounded millimetres as :func:`~.ros_message_codec.encode_depth_image` writes them (lossless
    for them), depth beyond ``depth_max`` stored as 0. 32FC1: the inverse-depth quantization of the
    module docstring (relative error about z / (Q (Q + 1)) per unit step). Invalid depth (NaN, inf, <= 0) -> 0.
    """
    if encoding not in DEPTH_ENCODINGS:
        raise UnsupportedEncodingError(
            f"cannot write compressedDepth as {encoding!r}; supported: {', '.join(DEPTH_ENCODINGS)}")
    if not depth_max > 0 or not depth_quantization > 0:
        raise ValueError(f"depth_max and depth_quantization must be positive, got {depth_max}, {depth_quantization}")
    if encoding == "16UC1":
        fields = encode_depth_image(depth, "16UC1")
        stored = np.frombuffer(fields.data, dtype="<u2").reshape(fields.height, fields.width).copy()
        stored[stored > round(depth_max * MILLIMETRES_PER_METRE)] = 0
        header = DEPTH_HEADER.pack(0, 0.0, 0.0)
    else:
        depth = np.asarray(depth)
        if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.floating) or depth.size == 0:
            raise MalformedImageError(f"depth must be non-empty (H, W) float metres, got {depth.shape} {depth.dtype}")
        a = np.float32(depth_quantization * (depth_quantization + 1.0))
        b = np.float32(1.0 - a / np.float32(depth_max))
        z = depth.astype(np.float32)
        valid = np.isfinite(z) & (z > 0) & (z < np.float32(depth_max))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            quantized = np.where(valid, a / np.where(valid, z, 1) + b, 0)
        stored = np.clip(quantized, 0, np.iinfo(np.uint16).max).astype(np.uint16)
        header = DEPTH_HEADER.pack(INVERSE_DEPTH_FORMAT, float(a), float(b))
    ok, encoded = cv2.imencode(".png", stored)
    if not ok:
        raise MalformedImageError(f"OpenCV could not encode a {stored.shape[1]}x{stored.shape[0]} depth png")
    return CompressedImageFields(f"{encoding}; {COMPRESSED_DEPTH} png", header + encoded.tobytes())
