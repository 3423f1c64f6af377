"""Microsoft 7-Scenes sequence folders (one ``seq-XX`` folder, or a redistribution of its frames).

Layout::

    frame-NNNNNN.color.png | .color.jpg    8-bit RGB, 640x480
    frame-NNNNNN.depth.png                 uint16 millimetres; 0 and 65535 = invalid
    frame-NNNNNN.pose.txt                  4x4 T_world_cam (camera-to-world), metres
    camera-intrinsics.txt                  optional 3x3 K

Without ``camera-intrinsics.txt`` the nominal Kinect intrinsics of the 7-Scenes paper are used:
fx = fy = 585, cx = 320, cy = 240 (:data:`NOMINAL_SEVEN_SCENES_K`). Color and depth are taken as
registered (they are only approximately: edges are off by a few pixels in the real data). Mapping from color alone
(stereo) needs the color camera's own focal length, about :data:`COLOR_FOCAL_LENGTH` pixels (the value the
7-Scenes literature uses; the intrinsics above are the depth camera's).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..camera import PinholeCamera
from ..frame import RGBDFrame
from .image_files import image_size, read_color, read_depth, read_intrinsic_matrix, read_pose
from .sequence import FrameSequence

NOMINAL_SEVEN_SCENES_K = np.array([[585.0, 0.0, 320.0], [0.0, 585.0, 240.0], [0.0, 0.0, 1.0]])
COLOR_FOCAL_LENGTH = 525.0  # pixels at 640x480: the color camera's (bench/bench_stereo.py --frames 0:100 compares)
DEPTH_UNITS_PER_METRE = 1000.0
INVALID_RAW_DEPTH = (0, 65535)
NOMINAL_FRAME_RATE = 30.0
INTRINSICS_FILE = "camera-intrinsics.txt"
COLOR_SUFFIXES = (".color.png", ".color.jpg")
_FRAME_FILE = re.compile(r"^frame-(\d+)\.(color\.png|color\.jpg|depth\.png|pose\.txt)$")


class SevenScenesSequence(FrameSequence):
    """Reader for a 7-Scenes sequence folder (see the module docstring).

    Frames are every ``frame-NNNNNN`` with a color, depth or pose file, ordered by number; a frame
    missing one of its files raises FileNotFoundError naming it when loaded. Timestamps are nominal:
    ``frame number / frame_rate``.

    Args:
        root: the sequence folder.
        frame_rate: frames per second used for the nominal timestamps (Kinect v1: 30).
    """

    def __init__(self, root: str | Path, *, frame_rate: float = NOMINAL_FRAME_RATE) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"7-Scenes folder not found: {self.root}")
        self.name = self.root.name
        self.frame_rate = frame_rate
        self._color_suffix: dict[int, str] = {}
        numbers = set()
        for path in self.root.iterdir():
            match = _FRAME_FILE.match(path.name)
            if match is None:
                continue
            number = int(match.group(1))
            numbers.add(number)
            if match.group(2).startswith("color"):
                if number in self._color_suffix:
                    raise ValueError(f"frame {number} in {self.root} has both a .color.png and a .color.jpg file")
                self._color_suffix[number] = "." + match.group(2)
        if not numbers:
            raise ValueError(
                f"no frames found in {self.root}: expected frame-NNNNNN.depth.png / .color.jpg / .pose.txt"
            )
        self._numbers = sorted(numbers)
        width, height = image_size(self._path(self._numbers[0], ".depth.png"))
        intrinsics = self.root / INTRINSICS_FILE
        K = read_intrinsic_matrix(intrinsics) if intrinsics.is_file() else NOMINAL_SEVEN_SCENES_K
        self.camera = PinholeCamera.from_matrix(K, width, height)

    def _path(self, number: int, suffix: str) -> Path:
        return self.root / f"frame-{number:06d}{suffix}"

    def __len__(self) -> int:
        return len(self._numbers)

    def _load(self, index: int) -> RGBDFrame:
        number = self._numbers[index]
        size = (self.camera.width, self.camera.height)
        color_suffix = self._color_suffix.get(number, COLOR_SUFFIXES[0])
        return RGBDFrame(
            color=read_color(self._path(number, color_suffix), expected_size=size),
            depth=read_depth(self._path(number, ".depth.png"), DEPTH_UNITS_PER_METRE, size, INVALID_RAW_DEPTH),
            camera=self.camera,
            T_world_cam=read_pose(self._path(number, ".pose.txt")),
            timestamp=number / self.frame_rate,
            name=f"frame-{number:06d}",
        )
