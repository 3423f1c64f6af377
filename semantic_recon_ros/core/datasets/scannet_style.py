"""ScanNet-style frame folders (the layout of ScanNet's SensReader export), read and written.

Layout under the sequence folder ``root``::

    color/<i>.jpg | <i>.png      8-bit RGB
    depth/<i>.png                uint16 millimetres, 0 = invalid
    pose/<i>.txt                 4x4 T_world_cam (camera-to-world); real ScanNet marks lost tracking with -inf/NaN
    label/<i>.png                optional class ids of this project (uint8 with 255 = unlabeled, or uint16)
    intrinsic/intrinsic_depth.txt, intrinsic/intrinsic_color.txt    4x4 (top-left 3x3 = K)

Frame ids ``<i>`` are plain non-negative integers, ordered numerically.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from ..camera import PinholeCamera
from ..frame import RGBDFrame
from .image_files import (
    image_size,
    read_color,
    read_depth,
    read_intrinsic_matrix,
    read_labels,
    read_pose,
    write_color,
    write_depth,
    write_labels,
    write_matrix,
)
from .sequence import FrameSequence

DEPTH_UNITS_PER_METRE = 1000.0
NOMINAL_FRAME_RATE = 30.0
COLOR_SUFFIXES = (".png", ".jpg", ".jpeg")
INTRINSIC_DEPTH = Path("intrinsic") / "intrinsic_depth.txt"
INTRINSIC_COLOR = Path("intrinsic") / "intrinsic_color.txt"
_FRAME_FILE = re.compile(r"^(\d+)(\.[A-Za-z]+)$")
_CAMERA_TOLERANCE = 1e-6


def _intrinsic_4x4(camera: PinholeCamera) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = camera.K
    return matrix


def _frame_files(folder: Path, suffixes: tuple[str, ...]) -> dict[int, Path]:
    """Map frame id -> file for ``<id><suffix>`` files in ``folder`` (empty when the folder is missing)."""
    files: dict[int, Path] = {}
    if not folder.is_dir():
        return files
    for path in folder.iterdir():
        match = _FRAME_FILE.match(path.name)
        if match is None or match.group(2).lower() not in suffixes:
            continue
        frame_id = int(match.group(1))
        if frame_id in files:
            raise ValueError(f"frame {frame_id} has two files in {folder}: {files[frame_id].name} and {path.name}")
        files[frame_id] = path
    return files


class ScanNetStyleWriter:
    """Writes frames of one camera into a ScanNet-style folder (see the module docstring).

    Color is stored as lossless PNG, depth as rounded uint16 millimetres (NaN, inf, <= 0 and depths
    beyond 65.535 m become 0), poses with full float64 precision, labels as PNG when ``frame.labels``
    is not None (uint8 with 255 = unlabeled when all ids are below 255). Both intrinsic files hold the
    given camera, since the written color and depth are registered.
    """

    def __init__(self, root: str | Path, camera: PinholeCamera) -> None:
        self.root = Path(root)
        self.camera = camera
        for folder in ("color", "depth", "pose", "intrinsic"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        write_matrix(self.root / INTRINSIC_DEPTH, _intrinsic_4x4(camera))
        write_matrix(self.root / INTRINSIC_COLOR, _intrinsic_4x4(camera))

    def write(self, index: int, frame: RGBDFrame) -> None:
        """Write ``frame`` as frame id ``index`` (>= 0); its camera must equal the writer's and it needs depth."""
        if index < 0:
            raise ValueError(f"frame index must be >= 0, got {index}")
        frame.validate()
        same_camera = frame.camera.shape == self.camera.shape and np.allclose(
            frame.camera.K, self.camera.K, rtol=0.0, atol=_CAMERA_TOLERANCE
        )
        if not same_camera:
            raise ValueError(f"frame {frame.name!r} has camera {frame.camera}, the writer for {self.root} "
                             f"was created for {self.camera}")
        if frame.depth is None:
            raise ValueError(f"frame {frame.name!r} has no depth; a ScanNet-style folder needs depth for every frame")
        write_color(self.root / "color" / f"{index}.png", frame.color)
        write_depth(self.root / "depth" / f"{index}.png", frame.depth, DEPTH_UNITS_PER_METRE)
        write_matrix(self.root / "pose" / f"{index}.txt", frame.T_world_cam)
        if frame.labels is not None:
            (self.root / "label").mkdir(exist_ok=True)
            write_labels(self.root / "label" / f"{index}.png", frame.labels)


class ScanNetStyleSequence(FrameSequence):
    """Reader for a ScanNet-style folder (see the module docstring).

    All pose files are read when the folder is opened (a missing or malformed one raises then); frames
    whose pose file holds -inf/NaN are left out and counted in ``num_skipped``. The camera is the
    depth camera (``intrinsic/intrinsic_depth.txt``, image size from the first depth image). When a color
    image has another size than the depth image, it is resized (bilinear) to the depth size, and label
    images likewise (nearest), so items are registered; ``color_camera`` is then the color intrinsics
    scaled to the depth size (None when ``intrinsic_color.txt`` is absent) for checking how well that holds.
    Timestamps are nominal: ``frame id / frame_rate``.

    Args:
        root: the sequence folder.
        frame_rate: frames per second used for the nominal timestamps.
    """

    def __init__(self, root: str | Path, *, frame_rate: float = NOMINAL_FRAME_RATE) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"ScanNet-style folder not found: {self.root}")
        self.name = self.root.name
        self.frame_rate = frame_rate
        self._colors = _frame_files(self.root / "color", COLOR_SUFFIXES)
        self._labels = _frame_files(self.root / "label", (".png",))
        ids = sorted(
            set(self._colors)
            | set(_frame_files(self.root / "depth", (".png",)))
            | set(_frame_files(self.root / "pose", (".txt",)))
        )
        if not ids:
            raise ValueError(f"no frames found in {self.root}: expected color/<i>.jpg|png, depth/<i>.png, pose/<i>.txt")
        self._ids: list[int] = []
        self._poses: list[np.ndarray] = []
        for frame_id in ids:
            pose = read_pose(self.root / "pose" / f"{frame_id}.txt", allow_non_finite=True)
            if pose is not None:
                self._ids.append(frame_id)
                self._poses.append(pose)
        self.num_skipped = len(ids) - len(self._ids)
        if not self._ids:
            raise ValueError(f"all {len(ids)} frames in {self.root} have invalid (NaN/inf) poses")
        width, height = image_size(self._depth_path(self._ids[0]))
        self.camera = PinholeCamera.from_matrix(read_intrinsic_matrix(self.root / INTRINSIC_DEPTH), width, height)
        self.color_camera = self._registered_color_camera(self._ids[0])

    def _depth_path(self, frame_id: int) -> Path:
        return self.root / "depth" / f"{frame_id}.png"

    def _color_path(self, frame_id: int) -> Path:
        return self._colors.get(frame_id, self.root / "color" / f"{frame_id}.jpg")

    def _registered_color_camera(self, frame_id: int) -> PinholeCamera | None:
        path = self.root / INTRINSIC_COLOR
        if not path.is_file():
            return None
        width, height = image_size(self._color_path(frame_id))
        return PinholeCamera.from_matrix(read_intrinsic_matrix(path), width, height).scaled(
            self.camera.width, self.camera.height
        )

    @property
    def frame_ids(self) -> list[int]:
        """Frame ids (file stems) of the items, in order."""
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def _load(self, index: int) -> RGBDFrame:
        frame_id = self._ids[index]
        size = (self.camera.width, self.camera.height)
        depth = read_depth(self._depth_path(frame_id), DEPTH_UNITS_PER_METRE, expected_size=size)
        color = read_color(self._color_path(frame_id))
        if color.shape[:2] != self.camera.shape:
            color = np.asarray(Image.fromarray(color).resize(size, Image.Resampling.BILINEAR))
        labels = None
        if frame_id in self._labels:
            labels = read_labels(self._labels[frame_id])
            if labels.shape != self.camera.shape:
                resized = Image.fromarray(labels.astype(np.int32)).resize(size, Image.Resampling.NEAREST)
                labels = np.asarray(resized).astype(np.int64)
        return RGBDFrame(
            color=color,
            depth=depth,
            camera=self.camera,
            T_world_cam=self._poses[index].copy(),
            timestamp=frame_id / self.frame_rate,
            labels=labels,
            name=str(frame_id),
        )
