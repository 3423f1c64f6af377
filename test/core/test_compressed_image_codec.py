"""CompressedImage codec: payloads checked against PIL (an independent png / jpeg implementation) and the
compressedDepth header layout of image_transport."""

from __future__ import annotations

import io
import struct
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from semantic_recon_ros.core.compressed_image_codec import (
    decode_compressed_color,
    decode_compressed_depth,
    encode_compressed_color,
    encode_compressed_depth,
)
from semantic_recon_ros.core.ros_message_codec import MalformedImageError, UnsupportedEncodingError
from support.mcap_bags import compressed_depth_16uc1, jpeg_bytes, png_bytes


def message(format: str, data: bytes, frame_id: str = "cam") -> SimpleNamespace:
    return SimpleNamespace(format=format, data=data, header=SimpleNamespace(frame_id=frame_id))


@pytest.fixture(scope="module")
def frame(seven_scenes):
    return seven_scenes[0]


def test_color_png_is_lossless_both_ways_against_pil(frame):
    fields = encode_compressed_color(frame.color, "png")
    assert fields.format == "rgb8; png compressed bgr8"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(fields.data))), frame.color)  # a standard png
    np.testing.assert_array_equal(decode_compressed_color(message(fields.format, fields.data)), frame.color)
    for format in ("rgb8; png compressed bgr8", "bgr8; png compressed bgr8", "png"):
        np.testing.assert_array_equal(decode_compressed_color(message(format, png_bytes(frame.color))), frame.color)
    gray = frame.color[:, :, 1]
    decoded = decode_compressed_color(message("mono8; png compressed mono8", png_bytes(gray)))
    np.testing.assert_array_equal(decoded, np.repeat(gray[:, :, None], 3, axis=2))
    rgba = np.dstack([frame.color, np.full(gray.shape, 7, np.uint8)])
    np.testing.assert_array_equal(decode_compressed_color(message("rgba8; png compressed bgra8", png_bytes(rgba))),
                                  frame.color)


def test_color_jpeg_is_close(frame):
    fields = encode_compressed_color(frame.color, "jpeg")
    assert fields.format == "rgb8; jpeg compressed bgr8" and len(fields.data) < frame.color.size / 4
    for data in (fields.data, jpeg_bytes(frame.color)):
        error = np.abs(decode_compressed_color(message(fields.format, data)).astype(int) - frame.color)
        assert error.mean() < 2.0 and np.percentile(error, 99) < 12


def test_compressed_depth_16uc1_is_lossless_millimetres(frame):
    fields = encode_compressed_depth(frame.depth, "16UC1")
    assert fields.format == "16UC1; compressedDepth png"
    assert struct.unpack("<iff", fields.data[:12]) == (0, 0.0, 0.0)
    stored = np.asarray(Image.open(io.BytesIO(fields.data[12:])))
    np.testing.assert_array_equal(stored, np.round(frame.depth * 1000).astype(np.uint16))
    independent = compressed_depth_16uc1(frame.depth)
    for format, data in ((fields.format, fields.data), (independent["format"], independent["data"]),
                         ("16UC1; compressedDepth", independent["data"])):
        np.testing.assert_array_equal(decode_compressed_depth(message(format, data)), frame.depth)  # whole mm


def test_compressed_depth_32fc1_quantizes_inverse_depth():
    depth = np.array([[0.5, 1.0, 3.0, 9.5], [0.0, np.nan, 10.0, 20.0]])
    fields = encode_compressed_depth(depth, "32FC1", depth_max=10.0, depth_quantization=100.0)
    assert fields.format == "32FC1; compressedDepth png"
    form, a, b = struct.unpack("<iff", fields.data[:12])
    assert form == 0 and a == pytest.approx(100 * 101) and b == pytest.approx(1 - 10100 / 10.0)
    stored = np.asarray(Image.open(io.BytesIO(fields.data[12:]))).astype(np.int64)
    expected = np.floor(np.float32(a) / depth[0].astype(np.float32) + np.float32(b))  # q = a / z + b, truncated
    np.testing.assert_array_equal(stored[0], expected)
    np.testing.assert_array_equal(stored[1], 0)  # invalid and >= depth_max -> 0
    decoded = decode_compressed_depth(message(fields.format, fields.data))
    step = depth[0] ** 2 / a  # one quantization step near z
    assert np.all(np.abs(decoded[0] - depth[0]) <= step * 1.01)
    np.testing.assert_array_equal(decoded[1], 0)


def test_unsupported_formats_and_bad_payloads_name_the_format_and_what_is_supported(frame):
    with pytest.raises(UnsupportedEncodingError, match=r"format 'rgb8; tiff compressed bgr8'.*supported: jpeg or png"):
        decode_compressed_color(message("rgb8; tiff compressed bgr8", b"x"))
    with pytest.raises(UnsupportedEncodingError, match="frame_id 'cam', format '16UC1; compressedDepth rvl'.*supported"
                                                       ": compressedDepth png of 16UC1 or 32FC1"):
        decode_compressed_depth(message("16UC1; compressedDepth rvl", b"x" * 20))
    with pytest.raises(UnsupportedEncodingError, match="cannot be read as a color image"):
        decode_compressed_color(message("16UC1; compressedDepth png", b"x"))
    with pytest.raises(MalformedImageError, match="not a readable jpeg or png"):
        decode_compressed_color(message("png", b"\x89PNG broken"))
    with pytest.raises(MalformedImageError, match="cannot hold the 12-byte header"):
        decode_compressed_depth(message("16UC1; compressedDepth png", b"short"))
    with pytest.raises(MalformedImageError, match="16-bit single-channel"):
        decode_compressed_depth(message("16UC1; compressedDepth png", bytes(12) + png_bytes(frame.color)))
    with pytest.raises(UnsupportedEncodingError, match="supported: jpeg, png"):
        encode_compressed_color(frame.color, "webp")
