"""Deterministic synthetic indoor scenes with exact ground truth: the test bed and training source.

A scene is a union of labeled oriented boxes (:class:`SyntheticScene`): ``generate_room(seed)`` builds a
furnished room, :class:`SceneRenderer` ray-casts RGB-D-semantic frames, ``camera_path`` gives a
handheld-like loop, ``generate_floor`` / ``floor_camera_path`` a building floor of such rooms along a corridor and
a walk through it, ``ground_truth_grid`` the exact TSDF and labels at any resolution, and
``write_synthetic_scene`` / ``load_ground_truth`` put it all on disk (ScanNet-style frames plus
ground_truth/).
"""

from .appearance import BoxAppearance, ShadingConfig
from .box_sdf import BoxArrays, box_sdf, union_sdf
from .camera_path import CameraPathConfig, camera_path, look_rotation
from .floor_layout import FloorConfig, FloorRoom, SyntheticFloor, generate_floor
from .floor_path import FloorPathConfig, floor_camera_path, floor_tour_waypoints
from .furniture import FurnitureConfig
from .ground_truth import GroundTruthGrid, ground_truth_grid
from .room_layout import RoomConfig, generate_room
from .scene import LabeledBox, SyntheticScene
from .scene_renderer import DepthNoiseConfig, RenderConfig, SceneRenderer
from .scene_writer import (DEFAULT_CAMERA, SyntheticGroundTruth, load_ground_truth,
                           write_synthetic_floor, write_synthetic_scene)

__all__ = [
    "DEFAULT_CAMERA",
    "BoxAppearance",
    "BoxArrays",
    "CameraPathConfig",
    "DepthNoiseConfig",
    "FloorConfig",
    "FloorPathConfig",
    "FloorRoom",
    "FurnitureConfig",
    "GroundTruthGrid",
    "LabeledBox",
    "RenderConfig",
    "RoomConfig",
    "SceneRenderer",
    "ShadingConfig",
    "SyntheticFloor",
    "SyntheticGroundTruth",
    "SyntheticScene",
    "box_sdf",
    "camera_path",
    "floor_camera_path",
    "floor_tour_waypoints",
    "generate_floor",
    "generate_room",
    "ground_truth_grid",
    "load_ground_truth",
    "look_rotation",
    "union_sdf",
    "write_synthetic_floor",
    "write_synthetic_scene",
]
