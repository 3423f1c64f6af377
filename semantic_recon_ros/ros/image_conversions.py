"""``sensor_msgs/Image`` <-> numpy color, depth and label images.

Decoding (re-exported from :mod:`semantic_recon_ros.core.ros_message_codec`, shared with the bag
reader): :func:`decode_color_image` -> (H, W, 3) uint8 RGB from rgb8 / bgr8 / rgba8 / bgra8 / mono8,
:func:`decode_depth_image` -> (H, W) float32 metres from 32FC1 / 16UC1 (mm),
:func:`decode_label_image` -> (H, W) int64 class ids from mono8 / 16UC1. Padded rows and big-endian
data are handled; bad messages raise :class:`UnsupportedEncodingError` or :class:`MalformedImageError`.

``sensor_msgs/CompressedImage`` (re-exported from :mod:`semantic_recon_ros.core.compressed_image_codec`):
:func:`decode_compressed_color` (jpeg / png) and :func:`decode_compressed_depth` (image_transport's
compressedDepth png of 16UC1 / 32FC1), same outputs as the raw decoders.

Encoding builds rclpy messages for publishing.
"""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image

from ..core.compressed_image_codec import decode_compressed_color, decode_compressed_depth
from ..core.ros_message_codec import (
    ImageFields,
    MalformedImageError,
    MessageConversionError,
    UnsupportedEncodingError,
    decode_color_image,
    decode_depth_image,
    decode_label_image,
    encode_color_image,
    encode_depth_image,
    encode_label_image,
)
from .header_conversions import header_msg

__all__ = [
    "MalformedImageError",
    "MessageConversionError",
    "UnsupportedEncodingError",
    "color_to_image_msg",
    "decode_color_image",
    "decode_compressed_color",
    "decode_compressed_depth",
    "decode_depth_image",
    "decode_label_image",
    "depth_to_image_msg",
    "image_fields_to_msg",
    "labels_to_image_msg",
]


def image_fields_to_msg(fields: ImageFields, stamp_ns: int, frame_id: str) -> Image:
    """Build an rclpy ``sensor_msgs/Image`` from encoded fields."""
    return Image(
        header=header_msg(stamp_ns, frame_id),
        height=fields.height,
        width=fields.width,
        encoding=fields.encoding,
        is_bigendian=fields.is_bigendian,
        step=fields.step,
        data=fields.data,
    )


def color_to_image_msg(color: np.ndarray, stamp_ns: int, frame_id: str, encoding: str = "rgb8") -> Image:
    """(H, W, 3) uint8 RGB -> Image in ``encoding`` (rgb8, bgr8, rgba8, bgra8, mono8)."""
    return image_fields_to_msg(encode_color_image(color, encoding), stamp_ns, frame_id)


def depth_to_image_msg(depth: np.ndarray, stamp_ns: int, frame_id: str, encoding: str = "32FC1") -> Image:
    """(H, W) float metres -> Image, 32FC1 metres or 16UC1 millimetres (invalid -> 0)."""
    return image_fields_to_msg(encode_depth_image(depth, encoding), stamp_ns, frame_id)


def labels_to_image_msg(labels: np.ndarray, stamp_ns: int, frame_id: str, encoding: str = "mono8") -> Image:
    """(H, W) integer class ids -> Image, mono8 (255 = unlabeled) or 16UC1 (65535 = unlabeled)."""
    return image_fields_to_msg(encode_label_image(labels, encoding), stamp_ns, frame_id)
