"""TUM RGB-D benchmark sequence folders.

Layout::

    rgb.txt            lines "timestamp path" (path relative to the folder), '#' comments
    depth.txt          lines "timestamp path"; depth PNGs are uint16 with 5000 units per metre, 0 = invalid
    groundtruth.txt    lines "timestamp tx ty tz qx qy qz qw": T_world_cam (camera-to-world) of the optical frame
    intrinsics.txt     optional 3x3 K (not part of the TUM release)

Intrinsics come from ``intrinsics.txt`` if present, else from the ``camera`` reader option, else the TUM
ROS default fx = fy = 525, cx = 319.5, cy = 239.5 (:data:`TUM_ROS_DEFAULT_K`; the images are not
undistorted, so this is approximate for the freiburg1/2 cameras).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ..camera import PinholeCamera
from ..frame import RGBDFrame
from .image_files import image_size, read_color, read_depth, read_intrinsic_matrix
from .sequence import FrameSequence

TUM_ROS_DEFAULT_K = np.array([[525.0, 0.0, 319.5], [0.0, 525.0, 239.5], [0.0, 0.0, 1.0]])
DEPTH_UNITS_PER_METRE = 5000.0
DEFAULT_MAX_TIME_DIFFERENCE = 0.02
INTRINSICS_FILE = "intrinsics.txt"
_QUATERNION_NORM_TOLERANCE = 1e-2
_CAMERA_TOLERANCE = 1e-6


def read_timestamped_lines(path: Path, num_values: int) -> tuple[np.ndarray, list[list[str]]]:
    """Parse ``timestamp value...`` lines ('#' comments and blank lines skipped).

    Returns (N,) float64 timestamps and the ``num_values`` tokens after each timestamp; ValueError naming
    the file and line for malformed lines.
    """
    if not path.is_file():
        raise FileNotFoundError(f"TUM list file not found: {path}")
    times, values = [], []
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tokens = line.split()
        if len(tokens) != num_values + 1:
            raise ValueError(f"{path} line {line_number}: expected a timestamp and {num_values} values, got {line!r}")
        try:
            times.append(float(tokens[0]))
        except ValueError:
            raise ValueError(f"{path} line {line_number}: bad timestamp {tokens[0]!r}") from None
        values.append(tokens[1:])
    return np.array(times, dtype=np.float64), values


def read_groundtruth(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read ``groundtruth.txt``: (N,) timestamps and (N, 4, 4) float64 T_world_cam."""
    times, rows = read_timestamped_lines(path, 7)
    try:
        values = np.array(rows, dtype=np.float64).reshape(-1, 7)
    except ValueError:
        raise ValueError(f"{path} holds non-numeric pose values") from None
    if not np.isfinite(values).all():
        raise ValueError(f"{path} holds NaN or inf pose values")
    norms = np.linalg.norm(values[:, 3:], axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > _QUATERNION_NORM_TOLERANCE)
    if bad.size:
        raise ValueError(f"{path}: quaternion at timestamp {times[bad[0]]:.6f} has norm {norms[bad[0]]:.4f}, not 1")
    poses = np.tile(np.eye(4), (len(times), 1, 1))
    if len(times):
        poses[:, :3, :3] = Rotation.from_quat(values[:, 3:]).as_matrix()  # scalar-last (qx, qy, qz, qw)
        poses[:, :3, 3] = values[:, :3]
    return times, poses


def associate_one_to_one(times_a: np.ndarray, times_b: np.ndarray, max_difference: float) -> list[tuple[int, int]]:
    """Greedy one-to-one matching of two timestamp lists, closest pairs first, within ``max_difference`` s.

    Returns ``(index_a, index_b)`` pairs sorted by ``index_a``.
    """
    order_b = np.argsort(times_b, kind="stable")
    sorted_b = times_b[order_b]
    candidates = []
    for index_a, time in enumerate(times_a):
        low = np.searchsorted(sorted_b, time - max_difference, side="left")
        high = np.searchsorted(sorted_b, time + max_difference, side="right")
        for k in range(low, high):
            candidates.append((abs(sorted_b[k] - time), index_a, int(order_b[k])))
    candidates.sort()
    used_a, used_b, pairs = set(), set(), []
    for _, index_a, index_b in candidates:
        if index_a not in used_a and index_b not in used_b:
            used_a.add(index_a)
            used_b.add(index_b)
            pairs.append((index_a, index_b))
    return sorted(pairs)


def nearest_within(times: np.ndarray, queries: np.ndarray, max_difference: float) -> np.ndarray:
    """Index of the nearest of the sorted ``times`` for each query, or -1 if none is within ``max_difference``."""
    if len(times) == 0:
        return np.full(len(queries), -1, dtype=np.int64)
    after = np.searchsorted(times, queries)
    left = np.clip(after - 1, 0, len(times) - 1)
    right = np.clip(after, 0, len(times) - 1)
    nearest = np.where(np.abs(times[left] - queries) <= np.abs(times[right] - queries), left, right)
    return np.where(np.abs(times[nearest] - queries) <= max_difference, nearest, -1)


class TUMSequence(FrameSequence):
    """Reader for a TUM RGB-D sequence folder (see the module docstring).

    Depth images are paired one-to-one with color images by nearest timestamp (greedy, closest pairs
    first) and get the ground-truth pose nearest to the depth timestamp, each within
    ``max_time_difference`` seconds. Depth images left without color or pose are skipped and counted in
    ``num_skipped``. An item's timestamp is its depth timestamp.

    Args:
        root: the sequence folder.
        camera: intrinsics to use when the folder has no ``intrinsics.txt`` (its size must match the images).
        max_time_difference: association tolerance in seconds.
        depth_units_per_metre: depth PNG scale (TUM: 5000).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        camera: PinholeCamera | None = None,
        max_time_difference: float = DEFAULT_MAX_TIME_DIFFERENCE,
        depth_units_per_metre: float = DEPTH_UNITS_PER_METRE,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"TUM folder not found: {self.root}")
        self.name = self.root.name
        self.depth_units_per_metre = depth_units_per_metre
        rgb_times, rgb_rows = read_timestamped_lines(self.root / "rgb.txt", 1)
        depth_times, depth_rows = read_timestamped_lines(self.root / "depth.txt", 1)
        pose_times, poses = read_groundtruth(self.root / "groundtruth.txt")
        order = np.argsort(pose_times, kind="stable")
        pose_times, poses = pose_times[order], poses[order]

        pairs = associate_one_to_one(depth_times, rgb_times, max_time_difference)
        depth_index = np.array([d for d, _ in pairs], dtype=np.int64)
        pose_index = nearest_within(pose_times, depth_times[depth_index], max_time_difference)
        keep = pose_index >= 0
        kept_pairs = [pair for pair, kept in zip(pairs, keep) if kept]
        kept_pairs.sort(key=lambda pair: depth_times[pair[0]])
        pose_of_depth = dict(zip(depth_index[keep].tolist(), pose_index[keep].tolist()))
        self._timestamps = [float(depth_times[d]) for d, _ in kept_pairs]
        self._depth_paths = [self.root / depth_rows[d][0] for d, _ in kept_pairs]
        self._color_paths = [self.root / rgb_rows[r][0] for _, r in kept_pairs]
        self._poses = [poses[pose_of_depth[d]] for d, _ in kept_pairs]
        self.num_skipped = len(depth_times) - len(kept_pairs)
        if not kept_pairs:
            raise ValueError(f"no frame of {self.root} has color, depth and ground truth within "
                             f"{max_time_difference} s of each other ({len(depth_times)} depth images)")
        self.camera = self._camera(camera, image_size(self._depth_paths[0]))

    def _camera(self, option: PinholeCamera | None, size: tuple[int, int]) -> PinholeCamera:
        width, height = size
        path = self.root / INTRINSICS_FILE
        if path.is_file():
            camera = PinholeCamera.from_matrix(read_intrinsic_matrix(path), width, height)
            if option is not None and not np.allclose(option.K, camera.K, rtol=0.0, atol=_CAMERA_TOLERANCE):
                raise ValueError(f"camera option {option} contradicts {path} ({camera}); remove one of them")
        elif option is not None:
            camera = option
        else:
            camera = PinholeCamera.from_matrix(TUM_ROS_DEFAULT_K, width, height)
        if camera.shape != (height, width):
            raise ValueError(f"camera is {camera.width}x{camera.height} but the depth images of {self.root} "
                             f"are {width}x{height}")
        return camera

    def __len__(self) -> int:
        return len(self._timestamps)

    def _load(self, index: int) -> RGBDFrame:
        size = (self.camera.width, self.camera.height)
        depth_path = self._depth_paths[index]
        return RGBDFrame(
            color=read_color(self._color_paths[index], expected_size=size),
            depth=read_depth(depth_path, self.depth_units_per_metre, expected_size=size),
            camera=self.camera,
            T_world_cam=self._poses[index].copy(),
            timestamp=self._timestamps[index],
            name=depth_path.stem,
        )
