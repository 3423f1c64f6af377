"""Writing a rendered synthetic scene with its ground truth to disk, and reading the ground truth back.

Layout of a scene folder::

    color/ depth/ pose/ label/ intrinsic/     the frames, ScanNet-style (see core.datasets.scannet_style)
    ground_truth/scene.json                  boxes, room size, class names and every generation parameter
    ground_truth/tsdf.npz                    tsdf (X, Y, Z) float32, labels (X, Y, Z) int16, origin (3,),
                                             voxel_size, truncation (see :class:`GroundTruthGrid`)
    ground_truth/mesh.ply                    the exposed box surface (:meth:`SyntheticScene.surface_mesh`)

The frames open with ``open_sequence(folder)`` like any ScanNet-style sequence. A building floor
(:func:`write_synthetic_floor`) has the same layout, with the floor's rooms, corridor and doorways in scene.json;
its tsdf.npz is written only on request (``dense_tsdf``): a 30 m x 20 m floor at 4 cm is 34 million voxels, about
1 GB of memory while they are computed (the file itself compresses to a few MB), and
:func:`~.ground_truth.ground_truth_grid` gives the exact TSDF of any part of the floor from the boxes (``origin``
and ``shape``) when needed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..camera import PinholeCamera
from ..datasets.scannet_style import ScanNetStyleWriter
from ..mesh import SemanticMesh
from ..ply import read_semantic_ply, write_semantic_ply
from .camera_path import CameraPathConfig, camera_path
from .floor_layout import FloorConfig, SyntheticFloor, generate_floor
from .floor_path import FloorPathConfig, floor_camera_path
from .ground_truth import GroundTruthGrid, ground_truth_grid
from .room_layout import RoomConfig, generate_room
from .scene import DEFAULT_SURFACE_CELL, SyntheticScene
from .scene_renderer import RenderConfig, SceneRenderer

DEFAULT_CAMERA = PinholeCamera(fx=525.0, fy=525.0, cx=319.5, cy=239.5, width=640, height=480)
GT_TRUNCATION_VOXELS = 4.0  # as VolumeConfig's default, so fused and ground-truth TSDFs compare directly
GROUND_TRUTH_DIR = "ground_truth"
SCENE_FILE = "scene.json"
TSDF_FILE = "tsdf.npz"
MESH_FILE = "mesh.ply"
FORMAT_NAME = "semantic_recon_ros synthetic scene"
FORMAT_VERSION = 1


@dataclass
class SyntheticGroundTruth:
    """Everything known about a written synthetic scene.

    Attributes:
        scene: the boxes (rebuilt from scene.json).
        grid: the dense TSDF and labels (None for a floor written without ``dense_tsdf``).
        mesh: the exposed surface mesh, per-vertex color and label.
        metadata: the rest of scene.json (room_config or floor_config, camera_path, render, camera, num_frames,
            ground_truth).
        floor: the floor's layout (rooms, corridor, doorways) for a building floor, else None.
    """

    scene: SyntheticScene
    grid: GroundTruthGrid | None
    mesh: SemanticMesh
    metadata: dict
    floor: SyntheticFloor | None = None


def write_synthetic_scene(
    out_dir: str | Path,
    seed: int,
    num_frames: int,
    camera: PinholeCamera = DEFAULT_CAMERA,
    room_config: RoomConfig | None = None,
    gt_voxel_size: float = 0.04,
    gt_truncation: float | None = None,
    path_config: CameraPathConfig | None = None,
    render_config: RenderConfig | None = None,
    mesh_cell_size: float = DEFAULT_SURFACE_CELL,
    on_frame: Callable[[int, int], None] | None = None,
) -> Path:
    """Generate room ``seed``, render ``num_frames`` frames along the camera loop and write all ground truth.

    Args:
        out_dir: scene folder to create (existing files of the same names are overwritten).
        seed: room and path seed.
        num_frames: frames to render (>= 1).
        camera: intrinsics and image size of the rendered frames.
        room_config: room parameters (default :class:`RoomConfig`).
        gt_voxel_size: voxel size of ground_truth/tsdf.npz (metres).
        gt_truncation: its truncation in metres (default ``GT_TRUNCATION_VOXELS * gt_voxel_size``).
        path_config: camera loop parameters (default :class:`CameraPathConfig`).
        render_config: shading and depth noise (default :class:`RenderConfig`: exact depth).
        mesh_cell_size: face subdivision of ground_truth/mesh.ply (metres).
        on_frame: called as ``on_frame(index, num_frames)`` after each frame is written (progress bars).
    Returns:
        the scene folder.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    out_dir = Path(out_dir)
    room_config = room_config or RoomConfig()
    path_config = path_config or CameraPathConfig()
    render_config = render_config or RenderConfig()
    truncation = GT_TRUNCATION_VOXELS * gt_voxel_size if gt_truncation is None else gt_truncation

    scene = generate_room(seed, room_config)
    poses = camera_path(scene, num_frames, path_config)
    gt_dir = _render_frames(out_dir, scene, camera, poses, render_config, on_frame)
    _write_dense_tsdf(gt_dir, scene, gt_voxel_size, truncation)
    _write_mesh_and_description(
        gt_dir, scene, camera, render_config, mesh_cell_size, num_frames,
        {"voxel_size": gt_voxel_size, "truncation": truncation, "mesh_cell_size": mesh_cell_size},
        room_config=asdict(room_config), camera_path=asdict(path_config))
    return out_dir


def _render_frames(out_dir: Path, scene: SyntheticScene, camera: PinholeCamera, poses: np.ndarray,
                   render_config: RenderConfig, on_frame: Callable[[int, int], None] | None) -> Path:
    """Render and write one frame per (4, 4) pose of ``poses``; returns the (created) ground-truth folder."""
    renderer = SceneRenderer(scene, render_config)
    writer = ScanNetStyleWriter(out_dir, camera)
    for index in range(len(poses)):
        writer.write(index, renderer.render(camera, poses[index], index))
        if on_frame is not None:
            on_frame(index, len(poses))
    gt_dir = out_dir / GROUND_TRUTH_DIR
    gt_dir.mkdir(parents=True, exist_ok=True)
    return gt_dir


def _write_dense_tsdf(gt_dir: Path, scene: SyntheticScene, voxel_size: float, truncation: float) -> None:
    grid = ground_truth_grid(scene, voxel_size, truncation)
    np.savez_compressed(gt_dir / TSDF_FILE, tsdf=grid.tsdf, labels=grid.labels, origin=grid.origin,
                        voxel_size=grid.voxel_size, truncation=grid.truncation)


def _write_mesh_and_description(gt_dir: Path, scene: SyntheticScene, camera: PinholeCamera,
                                render_config: RenderConfig, mesh_cell_size: float, num_frames: int,
                                ground_truth: dict, **settings: object) -> None:
    """ground_truth/mesh.ply and scene.json (the boxes, then the generator's ``settings``, rendering, camera, frame
    count and ``ground_truth``'s parameters)."""
    write_semantic_ply(gt_dir / MESH_FILE, scene.surface_mesh(mesh_cell_size, render_config.shading),
                       scene.class_names)
    description = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "scene": scene.to_dict(), **settings,
                   "render": asdict(render_config), "camera": asdict(camera), "num_frames": num_frames,
                   "ground_truth": ground_truth}
    (gt_dir / SCENE_FILE).write_text(json.dumps(description, indent=1))


def write_synthetic_floor(
    out_dir: str | Path,
    seed: int,
    camera: PinholeCamera = DEFAULT_CAMERA,
    floor_config: FloorConfig | None = None,
    path_config: FloorPathConfig | None = None,
    render_config: RenderConfig | None = None,
    max_frames: int | None = None,
    dense_tsdf: bool = False,
    gt_voxel_size: float = 0.04,
    gt_truncation: float | None = None,
    mesh_cell_size: float = 0.1,
    on_frame: Callable[[int, int], None] | None = None,
) -> Path:
    """Generate floor ``seed``, render its camera tour (the first ``max_frames`` frames, default all) and write the
    ground truth: scene.json (boxes and layout), mesh.ply and, with ``dense_tsdf``, tsdf.npz.

    Arguments as :func:`write_synthetic_scene`; ``mesh_cell_size`` defaults to 10 cm for floors (about 0.5 million
    triangles for 30 m x 20 m). Returns the scene folder.
    """
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    out_dir = Path(out_dir)
    floor_config = floor_config or FloorConfig()
    path_config = path_config or FloorPathConfig()
    render_config = render_config or RenderConfig(frame_rate=path_config.frame_rate)
    truncation = GT_TRUNCATION_VOXELS * gt_voxel_size if gt_truncation is None else gt_truncation

    floor = generate_floor(seed, floor_config)
    scene = floor.scene
    poses = floor_camera_path(floor, path_config)[:max_frames]
    gt_dir = _render_frames(out_dir, scene, camera, poses, render_config, on_frame)
    (gt_dir / TSDF_FILE).unlink(missing_ok=True)
    if dense_tsdf:
        _write_dense_tsdf(gt_dir, scene, gt_voxel_size, truncation)
    _write_mesh_and_description(
        gt_dir, scene, camera, render_config, mesh_cell_size, len(poses),
        {"voxel_size": gt_voxel_size, "truncation": truncation, "mesh_cell_size": mesh_cell_size,
         "tsdf": bool(dense_tsdf)},
        floor=floor.layout_dict(), floor_config=asdict(floor_config), camera_path=asdict(path_config))
    return out_dir


def load_ground_truth(scene_dir: str | Path) -> SyntheticGroundTruth:
    """Read the ground truth written by :func:`write_synthetic_scene` from ``scene_dir``.

    Raises FileNotFoundError naming a missing file, ValueError naming a malformed one.
    """
    gt_dir = Path(scene_dir) / GROUND_TRUTH_DIR
    scene_path = gt_dir / SCENE_FILE
    for name in (SCENE_FILE, MESH_FILE):
        if not (gt_dir / name).is_file():
            raise FileNotFoundError(f"synthetic ground truth file not found: {gt_dir / name}")
    try:
        description = json.loads(scene_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{scene_path}: not valid JSON ({err})") from None
    if not isinstance(description, dict) or description.get("format") != FORMAT_NAME:
        raise ValueError(f"{scene_path}: not a {FORMAT_NAME} description")
    if description.get("version") != FORMAT_VERSION:
        raise ValueError(f"{scene_path}: format version {description.get('version')} is not {FORMAT_VERSION}")
    try:
        scene = SyntheticScene.from_dict(description.pop("scene"))
    except (KeyError, ValueError) as err:
        raise ValueError(f"{scene_path}: {err}") from None

    floor = None
    if "floor" in description:
        try:
            floor = SyntheticFloor.from_dicts(scene, description["floor"])
        except ValueError as err:
            raise ValueError(f"{scene_path}: {err}") from None
    tsdf_path = gt_dir / TSDF_FILE
    grid = None
    if (description.get("ground_truth") or {}).get("tsdf", True):  # rooms always have one; floors on request
        if not tsdf_path.is_file():
            raise FileNotFoundError(f"synthetic ground truth file not found: {tsdf_path}")
        try:
            with np.load(tsdf_path) as data:
                grid = GroundTruthGrid(data["tsdf"], data["labels"], data["origin"], float(data["voxel_size"]),
                                       float(data["truncation"]))
        except (KeyError, ValueError, OSError) as err:
            raise ValueError(f"{tsdf_path}: not a ground-truth TSDF archive ({err})") from None

    mesh, class_names = read_semantic_ply(gt_dir / MESH_FILE)
    if tuple(class_names) != scene.class_names:
        raise ValueError(f"{gt_dir / MESH_FILE} has classes {class_names}, {scene_path} has {list(scene.class_names)}")
    return SyntheticGroundTruth(scene, grid, mesh, description, floor)
