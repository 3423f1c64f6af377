"""Benchmark: the fused mesh's accuracy against the TSDF truncation distance (``volume.truncation_voxels``).

Fuses the same 640x480 frames at 4 cm voxels with truncation 2, 3, 4 and 5 voxels (and, for reference, Open3D's
VoxelBlockGrid at 3 and 4 voxels, also meshed at every observed voxel), then scores each mesh with the evaluation's
mesh metrics (semantic_recon_training/evaluation/metrics.py): points every 1 cm on both surfaces; Acc = mean distance
mesh -> target, Comp = target -> mesh (metres), Prec / Recall = share of points within 5 cm, and the F-score.

Targets:

* ``synthetic`` / ``synthetic_noisy``: room 7 of ``semantic-recon synth`` (rendered once into bench/results/), with
  exact depth and with Kinect-like depth noise and dropout; the target is the exact surface (ground_truth/mesh.ply).
  Precision and accuracy use all of it; recall and completeness only the part a frame saw (a target point within
  max_depth that projects within 2 cm of a frame's exact depth).
* ``7scenes``: the redkitchen frames; no true surface exists, so the target is the sensor's own points (every fused
  depth map back-projected at every 4th pixel in x and y, thinned to one point per cm).

    .venv/bin/python bench/bench_truncation.py [--frames 150] [--truncations 2 3 4 5] [--datasets 7scenes ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # semantic_recon_training (not installed) lives beside the package

from semantic_recon_training.evaluation.metrics import nearest_distances, sample_surface_points  # noqa: E402

SEVEN_SCENES = REPO.parent / "shared" / "data" / "7scenes-redkitchen"
RESULTS = REPO / "bench" / "results"
VOXEL_SIZE = 0.04
MAX_DEPTH = 5.0
THRESHOLD = 0.05
SPACING = 0.01
SEEN_TOLERANCE = 0.02
DATASETS = ("synthetic", "synthetic_noisy", "7scenes")
OPEN3D_TRUNCATIONS = (3.0, 4.0)


def synthetic_scene(noisy: bool, frames: int) -> Path:
    """Room 7 rendered once along the path of ``frames`` frames, with exact depth or with depth noise."""
    from semantic_recon_ros.core.synthetic import DepthNoiseConfig, RenderConfig, write_synthetic_scene

    folder = RESULTS / f"truncation_room7_{frames}{'_noisy' if noisy else ''}"
    if not (folder / "ground_truth" / "mesh.ply").is_file():
        write_synthetic_scene(folder, seed=7, num_frames=frames,
                              render_config=RenderConfig(depth_noise=DepthNoiseConfig(enabled=noisy)))
    return folder


def frames_of(folder: Path, count: int):
    from semantic_recon_ros.core.datasets import open_sequence

    sequence = open_sequence(folder)
    sequence = sequence.subset(stride=max(1, len(sequence) // count), max_frames=count)
    return [sequence[i] for i in range(len(sequence))]


def world_points(frame, step: int = 4) -> np.ndarray:
    """(N, 3) world points of the frame's valid depth within MAX_DEPTH, every ``step``-th pixel."""
    camera = frame.camera
    v, u = np.mgrid[0:camera.height:step, 0:camera.width:step]
    z = frame.depth[v, u]
    valid = np.isfinite(z) & (z > 0) & (z <= MAX_DEPTH)
    z, u, v = z[valid], u[valid], v[valid]
    cam = np.stack([(u - camera.cx) / camera.fx * z, (v - camera.cy) / camera.fy * z, z], axis=1)
    return cam @ frame.T_world_cam[:3, :3].T + frame.T_world_cam[:3, 3]


def seen(points: np.ndarray, frames) -> np.ndarray:
    """(N,) bool: the point projects within SEEN_TOLERANCE of some frame's depth (within MAX_DEPTH)."""
    mask = np.zeros(len(points), bool)
    for frame in frames:
        camera, T = frame.camera, frame.T_world_cam
        cam = (points - T[:3, 3]) @ T[:3, :3]
        z = cam[:, 2]
        front = (z > 0) & (z <= MAX_DEPTH)
        u = np.round(camera.fx * cam[front, 0] / z[front] + camera.cx).astype(np.int64)
        v = np.round(camera.fy * cam[front, 1] / z[front] + camera.cy).astype(np.int64)
        inside = (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
        index = np.flatnonzero(front)[inside]
        depth = frame.depth[v[inside], u[inside]]
        mask[index[np.abs(depth - z[index]) < SEEN_TOLERANCE]] = True
    return mask


def dataset_frames(dataset: str, count: int):
    """(frames to fuse, points for precision and accuracy, points for recall and completeness)."""
    import open3d as o3d

    if dataset == "7scenes":
        frames = frames_of(SEVEN_SCENES, count)
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.concatenate([world_points(f) for f in frames])))
        points = np.asarray(cloud.voxel_down_sample(SPACING).points)
        return frames, points, points
    from semantic_recon_ros.core.synthetic import load_ground_truth

    folder = synthetic_scene(dataset == "synthetic_noisy", count)
    exact = frames_of(synthetic_scene(False, count), count)  # the same path, exact depth: what was seen
    mesh = load_ground_truth(folder).mesh
    points = sample_surface_points(mesh.vertices, mesh.triangles, SPACING)
    return frames_of(folder, count), points, points[seen(points, exact)]


def fuse_ours(frames, truncation_voxels: float) -> tuple[np.ndarray, np.ndarray]:
    from semantic_recon_ros.core.config.volume import VolumeConfig
    from semantic_recon_ros.core.map import SemanticTSDFVolume
    from semantic_recon_ros.core.meshing import extract_mesh

    config = VolumeConfig(voxel_size=VOXEL_SIZE, truncation_voxels=truncation_voxels, max_depth=MAX_DEPTH)
    volume = SemanticTSDFVolume(config, ["thing"], "cpu")
    for frame in frames:
        volume.integrate(frame.depth, frame.camera, frame.T_world_cam, color=frame.color)
    mesh = extract_mesh(volume)
    return mesh.vertices, mesh.triangles


def fuse_open3d(frames, truncation_voxels: float) -> tuple[np.ndarray, np.ndarray]:
    import open3d as o3d
    import open3d.core as o3c

    grid = o3d.t.geometry.VoxelBlockGrid(("tsdf", "weight"), (o3c.float32, o3c.float32), ((1), (1)),
                                         voxel_size=VOXEL_SIZE, block_resolution=8, block_count=60000)
    for frame in frames:
        depth_mm = np.where(np.isfinite(frame.depth), frame.depth * 1000.0, 0).astype(np.uint16)
        depth = o3d.t.geometry.Image(o3c.Tensor(depth_mm))
        K, extrinsic = o3c.Tensor(frame.camera.K), o3c.Tensor(np.linalg.inv(frame.T_world_cam))
        blocks = grid.compute_unique_block_coordinates(depth, K, extrinsic, 1000.0, MAX_DEPTH, truncation_voxels)
        grid.integrate(blocks, depth, K, extrinsic, 1000.0, MAX_DEPTH, truncation_voxels)
    mesh = grid.extract_triangle_mesh(weight_threshold=0.5)  # every observed voxel, as ours
    return mesh.vertex.positions.numpy(), mesh.triangle.indices.numpy()


def score(vertices: np.ndarray, triangles: np.ndarray, precision_target: np.ndarray,
          recall_target: np.ndarray) -> dict[str, float]:
    """Atlas' mesh metrics (as evaluation.metrics.mesh_metrics), with a separate target for recall."""
    points = sample_surface_points(vertices, triangles, SPACING)
    to_target, to_mesh = nearest_distances(points, precision_target), nearest_distances(recall_target, points)
    p, r = float(np.mean(to_target < THRESHOLD)), float(np.mean(to_mesh < THRESHOLD))
    return {"Acc": float(to_target.mean()), "Comp": float(to_mesh.mean()), "Prec": p, "Recall": r,
            "F-score": 2 * p * r / (p + r), "triangles": len(triangles)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=150, help="frames per dataset, spread over the sequence")
    parser.add_argument("--truncations", type=float, nargs="+", default=[2.0, 3.0, 4.0, 5.0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--no-open3d", action="store_true", help="skip the Open3D reference rows")
    args = parser.parse_args()
    rows = []
    for dataset in args.datasets:
        frames, precision_target, recall_target = dataset_frames(dataset, args.frames)
        methods = [("ours", t, fuse_ours) for t in args.truncations]
        methods += [] if args.no_open3d else [("Open3D", t, fuse_open3d) for t in OPEN3D_TRUNCATIONS]
        for method, truncation, fuse in methods:
            scores = score(*fuse(frames, truncation), precision_target, recall_target)
            rows.append((dataset, method, truncation, scores))
            print(f"done {dataset} {method} {truncation:g}", file=sys.stderr)
    print(f"\nFused mesh vs target, {VOXEL_SIZE * 100:g} cm voxels, {args.frames} frames, "
          f"metrics at {THRESHOLD * 100:g} cm (Acc / Comp in cm)\n")
    print("| data | method | truncation (voxels) | Acc | Comp | Prec | Recall | F-score | triangles |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for dataset, method, truncation, s in rows:
        print(f"| {dataset} | {method} | {truncation:g} | {100 * s['Acc']:.2f} | {100 * s['Comp']:.2f} "
              f"| {s['Prec']:.3f} | {s['Recall']:.3f} | {s['F-score']:.3f} | {s['triangles']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
