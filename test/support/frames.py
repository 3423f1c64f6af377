"""Test frames at lower resolution."""

from __future__ import annotations

import numpy as np

from semantic_recon_ros.core.camera import PinholeCamera
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
