"""Configuration of the live single-view prediction (:mod:`semantic_recon_ros.core.live_single_view`)."""

from __future__ import annotations

from dataclasses import dataclass

from .fields import check_ranges, parameter


@dataclass
class LiveSingleViewConfig:
    """How often the single-view network predicts the newest frame's scene, with which checkpoint, and whether its
    prediction fills the map's never-observed voxels."""

    rate: float = parameter(
        0.0, "Most single-view predictions per second: the newest integrated frame's scene, hidden parts included, "
             "predicted from its color image by the single-view network (on its own low-priority thread; "
             "integration never waits for it) and published as a semantic mesh on single_view/mesh in the camera's "
             "frame. 0 = off.", 0.0, 100.0)
    checkpoint: str = parameter(
        "rgbd", "Single-view network (a 'single_view' checkpoint file; ~ expanded): \"rgbd\" = the installed "
                "share/semantic_recon_ros/models/single_view_rgbd.pt, which reads the frame's depth as well as its "
                "colors (RGB-D mode); \"default\" = models/single_view_default.pt, from the color image alone (the "
                "one rgb_only can use). One that cannot be loaded or used is logged as an error and the node maps "
                "without it.")
    fill_unobserved: bool = parameter(
        False, "Also write each prediction into the map's voxels never observed, in the layers of the completion "
               "network's predictions (never over observations nor over the completion network's predictions, "
               "which replace fills in the chunks it runs): with weight and confidence fill_weight, they show in "
               "mesh_additions and the voxel map (observed 0) where fill_weight reaches completion.min_confidence, "
               "and are saved in volume.pt. Not with rgb_only.")
    fill_weight: float = parameter(
        0.2, "Weight and confidence of the filled voxels' predictions, below the completion network's 1.",
        0.01, 0.99)

    def __post_init__(self) -> None:
        check_ranges(self)
