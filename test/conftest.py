"""Shared fixtures: real 7-Scenes frames from ../shared (never copied into the package)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from semantic_recon_ros.core.camera import PinholeCamera
from semantic_recon_ros.core.datasets import open_sequence
from semantic_recon_ros.core.frame import RGBDFrame

REPO = Path(__file__).resolve().parents[1]
SEVEN_SCENES = REPO.parent / "shared" / "data" / "7scenes-redkitchen"


@pytest.fixture(scope="session")
def seven_scenes():
    if not SEVEN_SCENES.is_dir():
        pytest.fail(f"shared data missing: {SEVEN_SCENES} (CI places ../shared beside the repo)")
    return open_sequence(SEVEN_SCENES)


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
