"""Test frames at lower resolution, and frames as the package's own bag writer and reader give them back."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from semantic_recon_ros.core.camera import PinholeCamera
from semantic_recon_ros.core.datasets.rosbag_sequence import RosbagSequence
from semantic_recon_ros.core.datasets.rosbag_writer import RosbagWriter, RosbagWriterConfig
from semantic_recon_ros.core.frame import RGBDFrame


def downscale(frame: RGBDFrame, factor: int) -> RGBDFrame:
    """Nearest-neighbour downscale of a frame (keeps depth values exact)."""
    cam = frame.camera
    small = cam.scaled(cam.width // factor, cam.height // factor)
    rows = (np.arange(small.height) * factor + factor // 2)
    cols = (np.arange(small.width) * factor + factor // 2)
    pick = np.ix_(rows, cols)
    return RGBDFrame(
        color=np.ascontiguousarray(frame.color[pick]),
        depth=np.ascontiguousarray(frame.depth[pick]),
        camera=PinholeCamera(cam.fx / factor, cam.fy / factor,
                             (cam.cx - factor // 2) / factor, (cam.cy - factor // 2) / factor,
                             small.width, small.height),
        T_world_cam=frame.T_world_cam,
        timestamp=frame.timestamp,
        labels=None if frame.labels is None else np.ascontiguousarray(frame.labels[pick]),
        name=frame.name,
    )


def through_package_bag(frames: list[RGBDFrame], path: Path) -> list[RGBDFrame]:
    """``frames`` written into a ROS 2 bag at ``path`` by the package's writer (rgb8 + 16UC1) and read back: the
    reference that bags of other writers and formats must read equal to."""
    with RosbagWriter(path, RosbagWriterConfig(depth_encoding="16UC1")) as writer:
        for frame in frames:
            writer.write(frame)
    with RosbagSequence(path) as sequence:
        return list(sequence)
