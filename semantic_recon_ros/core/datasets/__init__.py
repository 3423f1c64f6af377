"""Readers (and a writer) for posed RGB-D sequences on disk.

``open_sequence(path)`` picks the reader from the folder layout; every reader is a
:class:`FrameSequence` yielding validated :class:`~semantic_recon_ros.core.frame.RGBDFrame` items.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .bag_files import is_bag
from .rosbag_sequence import RosbagSequence
from .scannet_style import INTRINSIC_DEPTH, ScanNetStyleSequence, ScanNetStyleWriter
from .sequence import FrameSequence, SequenceView
from .seven_scenes import SevenScenesSequence
from .tum import TUMSequence

__all__ = [
    "FORMATS",
    "FrameSequence",
    "RosbagSequence",
    "ScanNetStyleSequence",
    "ScanNetStyleWriter",
    "SequenceView",
    "SevenScenesSequence",
    "TUMSequence",
    "detect_format",
    "open_sequence",
]

FORMATS: dict[str, Callable[..., FrameSequence]] = {
    "7scenes": SevenScenesSequence,
    "tum": TUMSequence,
    "scannet": ScanNetStyleSequence,
    "rosbag": RosbagSequence,
}

# What auto-detection looks for, per format (also shown in its error message).
_SIGNATURES: dict[str, tuple[str, Callable[[Path], bool]]] = {
    "7scenes": ("frame-NNNNNN.depth.png or frame-NNNNNN.pose.txt files",
                lambda root: any(root.glob("frame-*.depth.png")) or any(root.glob("frame-*.pose.txt"))),
    "tum": ("rgb.txt and depth.txt", lambda root: (root / "rgb.txt").is_file() and (root / "depth.txt").is_file()),
    "scannet": (f"{INTRINSIC_DEPTH.as_posix()}, or depth/ and pose/ folders",
                lambda root: (root / INTRINSIC_DEPTH).is_file()
                or ((root / "depth").is_dir() and (root / "pose").is_dir())),
    "rosbag": ("a ROS 2 bag (a folder with metadata.yaml or one .mcap / .db3 file, or such a file) or a ROS 1 .bag "
               "file, with color, depth, camera_info and /tf topics", is_bag),
}


def detect_format(path: str | Path) -> str:
    """Name of the format (a key of :data:`FORMATS`) whose layout the folder ``path`` has.

    Raises FileNotFoundError when ``path`` does not exist, ValueError when it is neither a folder nor a bag
    file or matches no format or several (the message lists what was looked for).
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"sequence folder not found: {root}")
    if not root.is_dir():
        if is_bag(root):
            return "rosbag"
        raise ValueError(f"a sequence must be a folder or a bag file (.mcap, .db3, ROS 1 .bag), got the file {root}")
    matches = [name for name, (_, has_layout) in _SIGNATURES.items() if has_layout(root)]
    if len(matches) == 1:
        return matches[0]
    looked_for = "; ".join(f"{name}: {description}" for name, (description, _) in _SIGNATURES.items())
    if not matches:
        raise ValueError(f"cannot tell the dataset format of {root}; looked for {looked_for}. "
                         "If the folder holds several sequences (e.g. seq-01/), open one of them.")
    raise ValueError(f"{root} looks like several formats ({', '.join(matches)}); pass format= explicitly")


def open_sequence(path: str | Path, format: str = "auto", **reader_options) -> FrameSequence:
    """Open the posed RGB-D sequence in folder ``path``.

    Args:
        path: the sequence folder (or a bag file).
        format: "auto" (detect from the layout) or one of "7scenes", "tum", "scannet", "rosbag".
        **reader_options: keyword options of the reader class (e.g. ``frame_rate`` for 7scenes/scannet,
            ``camera`` / ``max_time_difference`` for tum).
    """
    if format == "auto":
        format = detect_format(path)
    if format not in FORMATS:
        raise ValueError(f"unknown sequence format {format!r}; known: auto, {', '.join(FORMATS)}")
    return FORMATS[format](path, **reader_options)
