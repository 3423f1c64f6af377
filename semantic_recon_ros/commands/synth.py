"""Generate a synthetic furnished room, render an RGB-D-semantic scan of it and write exact ground truth.

The output folder is a ScanNet-style sequence (color/, depth/ in millimetres, pose/, label/, intrinsic/)
that `semantic-recon map` and every reader open directly, plus ground_truth/ with scene.json (the boxes
and all parameters), tsdf.npz (dense TSDF and labels) and mesh.ply (the exposed surface with colors and
labels). The same seed always gives the same room, trajectory and images.

With ``--floor [XxY]`` it generates a building floor instead (default 30x20 m): furnished rooms on both sides of a
corridor, each joined to it by an open doorway, and renders a walk along the corridor into every room at 30 Hz
(every frame of the tour unless ``--frames`` stops it earlier). Its dense ground-truth TSDF is written only with
``--gt-tsdf`` (34 million voxels at 4 cm for 30x20 m: about 1 GB more memory); scene.json holds the rooms, corridor
and doorways.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from tqdm import tqdm

from ..core.synthetic import (
    DEFAULT_CAMERA,
    DepthNoiseConfig,
    FloorConfig,
    RenderConfig,
    load_ground_truth,
    write_synthetic_floor,
    write_synthetic_scene,
)

ROOM_FRAMES = 300
DEFAULT_FLOOR = "30x20"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="scene folder to write (created)")
    parser.add_argument("--seed", type=int, default=0, help="room and trajectory seed (default %(default)s)")
    parser.add_argument("--frames", type=int, default=None,
                        help=f"frames to render (default: {ROOM_FRAMES}, 10 s at 30 Hz, for a room; the whole tour for "
                             "a floor, of which this many are rendered when given)")
    parser.add_argument("--width", type=int, default=DEFAULT_CAMERA.width, help="image width (default %(default)s)")
    parser.add_argument("--height", type=int, default=DEFAULT_CAMERA.height, help="image height (default %(default)s)")
    parser.add_argument("--voxel-size", type=float, default=0.04,
                        help="voxel size of the ground-truth TSDF in metres (default %(default)s)")
    parser.add_argument("--depth-noise", action="store_true",
                        help="add Kinect-like depth noise and dropout (ground truth stays exact)")
    parser.add_argument("--floor", nargs="?", const=DEFAULT_FLOOR, default=None, metavar="XxY",
                        help=f"generate a building floor of X by Y metres (default {DEFAULT_FLOOR}) with rooms along a "
                             "corridor and a camera walk through all of them, instead of one room")
    parser.add_argument("--gt-tsdf", action="store_true",
                        help="with --floor: also write the dense ground-truth TSDF (rooms always have it)")


def parse_floor_size(text: str) -> tuple[float, float]:
    """``"30x20"`` -> (30.0, 20.0); ValueError naming the option otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*[xX]\s*(\d+(?:\.\d*)?)\s*", text)
    if match is None:
        raise ValueError(f"--floor must be the floor size as XxY in metres (e.g. {DEFAULT_FLOOR}), got {text!r}")
    return float(match.group(1)), float(match.group(2))


def run(args: argparse.Namespace) -> int:
    if args.frames is not None and args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if args.width < 1 or args.height < 1:
        raise ValueError(f"--width and --height must be positive, got {args.width}x{args.height}")
    if not args.voxel_size > 0:
        raise ValueError(f"--voxel-size must be positive, got {args.voxel_size}")
    camera = DEFAULT_CAMERA.scaled(args.width, args.height)
    render_config = RenderConfig(depth_noise=DepthNoiseConfig(enabled=args.depth_noise))
    if args.floor is not None:
        return run_floor(args, camera, render_config)
    if args.gt_tsdf:
        raise ValueError("--gt-tsdf only applies with --floor (a room always has its dense ground-truth TSDF)")
    frames = ROOM_FRAMES if args.frames is None else args.frames
    with tqdm(total=frames, desc=f"rendering room {args.seed}", unit="frame") as bar:
        out = write_synthetic_scene(args.out, args.seed, frames, camera=camera, gt_voxel_size=args.voxel_size,
                                    render_config=render_config, on_frame=lambda index, total: bar.update())
    truth = load_ground_truth(out)
    summary = {
        "out": str(out),
        "seed": args.seed,
        "frames": frames,
        "room_size_m": [round(v, 3) for v in truth.scene.room_size.tolist()],
        "boxes": len(truth.scene.boxes),
        "tsdf_shape": list(truth.grid.shape),
        "mesh_vertices": truth.mesh.num_vertices,
        "mesh_triangles": truth.mesh.num_triangles,
    }
    print(json.dumps(summary, indent=1))
    return 0


def run_floor(args: argparse.Namespace, camera, render_config: RenderConfig) -> int:
    size_x, size_y = parse_floor_size(args.floor)
    try:
        floor_config = FloorConfig(size_x=size_x, size_y=size_y)
    except ValueError as err:
        raise ValueError(f"--floor {args.floor}: {err}") from None
    start = time.monotonic()
    with tqdm(desc=f"rendering floor {args.seed}", unit="frame") as bar:
        def on_frame(index: int, total: int) -> None:
            bar.total = total
            bar.update()

        out = write_synthetic_floor(args.out, args.seed, camera=camera, floor_config=floor_config,
                                    render_config=render_config, max_frames=args.frames, dense_tsdf=args.gt_tsdf,
                                    gt_voxel_size=args.voxel_size, on_frame=on_frame)
    truth = load_ground_truth(out)
    summary = {
        "out": str(out),
        "seed": args.seed,
        "floor_size_m": [round(v, 3) for v in truth.scene.room_size.tolist()],
        "rooms": len(truth.floor.rooms),
        "corridor_width_m": round(float(truth.floor.corridor[1, 1] - truth.floor.corridor[0, 1]), 3),
        "frames": truth.metadata["num_frames"],
        "boxes": len(truth.scene.boxes),
        "tsdf_shape": list(truth.grid.shape) if truth.grid is not None else None,
        "mesh_vertices": truth.mesh.num_vertices,
        "mesh_triangles": truth.mesh.num_triangles,
        "seconds": round(time.monotonic() - start, 1),
    }
    print(json.dumps(summary, indent=1))
    return 0
