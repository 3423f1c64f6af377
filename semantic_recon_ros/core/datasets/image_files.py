"""Reading and writing the per-frame files of RGB-D datasets: color, 16-bit depth, label images and poses.

Every function names the offending file in its errors: a missing file raises FileNotFoundError, an
unreadable, corrupt or wrongly formatted file raises ValueError.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..camera import check_rigid

UINT16_MAX = 65535
UINT8_UNLABELED = 255
UINT16_UNLABELED = 65535

_COLOR_MODES = ("RGB", "RGBA", "L", "LA", "P", "CMYK", "YCbCr")
_UINT16_MODES = ("I;16", "I;16L", "I;16B", "I")
_LABEL_MODES = ("L", "P") + _UINT16_MODES


def _open_image(path: Path, what: str) -> Image.Image:
    """Open and fully decode an image; FileNotFoundError / ValueError naming ``path``."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        image = Image.open(path)
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read {what} image {path}: {error}") from error
    return image


def _check_size(image: Image.Image, path: Path, what: str, expected_size: tuple[int, int] | None) -> None:
    if expected_size is not None and image.size != tuple(expected_size):
        w, h = expected_size
        raise ValueError(f"{what} image {path} is {image.width}x{image.height}, expected {w}x{h}")


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, read from its header only."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from error


def read_color(path: str | Path, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an 8-bit color (or gray / palette) image as (H, W, 3) uint8 RGB.

    Args:
        path: image file (PNG, JPEG, ...).
        expected_size: ``(width, height)`` the image must have, or None for any size.
    """
    path = Path(path)
    image = _open_image(path, "color")
    if image.mode not in _COLOR_MODES:
        raise ValueError(
            f"color image {path} has mode {image.mode!r}; expected an 8-bit image ({', '.join(_COLOR_MODES)})"
        )
    _check_size(image, path, "color", expected_size)
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def write_color(path: str | Path, color: np.ndarray) -> None:
    """Write (H, W, 3) uint8 RGB; the format follows the suffix (use ``.png`` for lossless)."""
    color = np.asarray(color)
    if color.dtype != np.uint8 or color.ndim != 3 or color.shape[2] != 3:
        raise ValueError(f"color for {path} must be (H, W, 3) uint8, got {color.shape} {color.dtype}")
    Image.fromarray(color, mode="RGB").save(path)


def read_uint16_image(path: str | Path, what: str, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a single-channel 16-bit image (e.g. a depth PNG) as (H, W) uint16.

    Raises ValueError naming ``path`` for 8-bit or color images and for a size other than ``expected_size``
    (``(width, height)``).
    """
    path = Path(path)
    image = _open_image(path, what)
    if image.mode not in _UINT16_MODES:
        raise ValueError(f"{what} image {path} has mode {image.mode!r}; expected a single-channel 16-bit image")
    _check_size(image, path, what, expected_size)
    raw = np.asarray(image)
    if raw.dtype != np.uint16:
        if raw.size and (raw.min() < 0 or raw.max() > UINT16_MAX):
            raise ValueError(f"{what} image {path} has values outside the 16-bit range")
        raw = raw.astype(np.uint16)
    return raw.copy()


def read_depth(
    path: str | Path,
    units_per_metre: float,
    expected_size: tuple[int, int] | None = None,
    invalid_raw_values: tuple[int, ...] = (0,),
) -> np.ndarray:
    """Read a uint16 depth PNG as (H, W) float32 metres, 0 where invalid.

    Args:
        path: 16-bit single-channel PNG.
        units_per_metre: raw units per metre (1000 for millimetres, 5000 for TUM).
        expected_size: ``(width, height)`` the image must have, or None.
        invalid_raw_values: raw values that mark invalid pixels (become 0).
    """
    raw = read_uint16_image(path, "depth", expected_size)
    depth = raw.astype(np.float32) / np.float32(units_per_metre)
    for value in invalid_raw_values:
        depth[raw == value] = 0.0
    return depth


def depth_to_raw(depth: np.ndarray, units_per_metre: float) -> np.ndarray:
    """(H, W) float metres -> (H, W) uint16 raw units, rounded; NaN, inf, <= 0 and out of range become 0."""
    depth = np.asarray(depth, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = np.rint(depth * units_per_metre)
        valid = np.isfinite(scaled) & (scaled > 0) & (scaled <= UINT16_MAX)
    return np.where(valid, scaled, 0).astype(np.uint16)


def write_depth(path: str | Path, depth: np.ndarray, units_per_metre: float) -> None:
    """Write (H, W) float metres as a uint16 PNG (see :func:`depth_to_raw`)."""
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth for {path} must be (H, W), got shape {depth.shape}")
    Image.fromarray(depth_to_raw(depth, units_per_metre)).save(path)


def read_labels(path: str | Path, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an 8- or 16-bit single-channel label PNG as (H, W) int64 class ids (raw values, no remapping)."""
    path = Path(path)
    image = _open_image(path, "label")
    if image.mode not in _LABEL_MODES:
        raise ValueError(f"label image {path} has mode {image.mode!r}; expected a single-channel 8- or 16-bit image")
    _check_size(image, path, "label", expected_size)
    return np.asarray(image).astype(np.int64)


def write_labels(path: str | Path, labels: np.ndarray) -> None:
    """Write (H, W) integer class ids as a PNG.

    uint8 with 255 for unlabeled (any negative value or 255) when all labels are below 255, otherwise
    uint16 with 65535 for unlabeled (negative values or >= 65535).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels for {path} must be (H, W) integers, got {labels.shape} {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.size == 0 or labels.max() <= UINT8_UNLABELED:
        raw = np.where(labels < 0, UINT8_UNLABELED, labels).astype(np.uint8)
    else:
        raw = np.where((labels < 0) | (labels > UINT16_UNLABELED), UINT16_UNLABELED, labels).astype(np.uint16)
    Image.fromarray(raw).save(path)


def read_matrix(path: str | Path, what: str) -> np.ndarray:
    """Read a whitespace-separated numeric matrix (one row per line) as a 2-D float64 array."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    rows = []
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            rows.append([float(token) for token in line.replace(",", " ").split()])
        except ValueError:
            raise ValueError(f"{what} file {path} line {line_number} is not numeric: {line!r}") from None
    if not rows or len({len(row) for row in rows}) != 1:
        raise ValueError(f"{what} file {path} must hold a matrix with equally long rows, got row lengths "
                         f"{[len(row) for row in rows]}")
    return np.array(rows, dtype=np.float64)


def read_intrinsic_matrix(path: str | Path) -> np.ndarray:
    """Read a 3x3 or 4x4 intrinsic matrix file; returns the (3, 3) float64 K."""
    path = Path(path)
    matrix = read_matrix(path, "intrinsics")
    if matrix.shape not in ((3, 3), (4, 4)):
        raise ValueError(f"intrinsics file {path} must hold a 3x3 or 4x4 matrix, got shape {matrix.shape}")
    K = matrix[:3, :3]
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"intrinsics file {path} has non-finite or non-positive focal lengths: {K.tolist()}")
    return K


def write_matrix(path: str | Path, matrix: np.ndarray) -> None:
    """Write a 2-D matrix with full float64 precision (17 significant digits), one row per line."""
    np.savetxt(path, np.asarray(matrix, dtype=np.float64), fmt="%.17g")


def read_pose(path: str | Path, allow_non_finite: bool = False) -> np.ndarray | None:
    """Read a 4x4 pose file (16 numbers, row-major) as a (4, 4) float64 rigid transform.

    Real poses are stored with a few digits and are only orthonormal to about 1e-4; the rotation block
    is projected onto the nearest exact rotation once it passes :func:`check_rigid`.

    Args:
        path: text file.
        allow_non_finite: return None instead of raising when the matrix holds NaN or inf (ScanNet marks
            frames without tracking this way).
    Raises:
        FileNotFoundError when missing; ValueError naming the file when it does not hold 16 numbers, holds
        NaN/inf (unless allowed) or is not a rigid transform.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pose file not found: {path}")
    try:
        values = np.array(path.read_text().split(), dtype=np.float64)
    except ValueError:
        raise ValueError(f"pose file {path} holds non-numeric text") from None
    if values.size != 16:
        raise ValueError(f"pose file {path} must hold 16 numbers (a 4x4 matrix), got {values.size}")
    T = values.reshape(4, 4)
    if not np.isfinite(T).all():
        if allow_non_finite:
            return None
        raise ValueError(f"pose file {path} contains NaN or inf")
    T = check_rigid(T, f"pose file {path}")
    T[:3, :3] = nearest_rotation(T[:3, :3])
    return T


def nearest_rotation(R: np.ndarray) -> np.ndarray:
    """The rotation matrix closest (Frobenius norm) to the almost-orthonormal (3, 3) ``R`` (SVD projection)."""
    U, _, Vt = np.linalg.svd(R)
    return U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
