"""Benchmark: our sparse volume vs Open3D's VoxelBlockGrid on the same frames and device.

Integrates the same preloaded 640x480 RGB-D frames (real 7-Scenes, a synthetic room, and a synthetic
16 m x 16 m x 3 m floor scanned with 8 m depth range) at 4 cm and 2 cm into both, then meshes both
whole (median of 3). Ours also keeps its mesh region by region while fusing (core/incremental_meshing.py, as the
node does): "update ms" is the median time of bringing that mesh up to date after each frame. On the CPU, ours integrates with the fused C++ kernel (core/fusion_kernel); the "torch path" column is
the same volume with ``use_fusion_kernel = False`` (the implementation used on CUDA). Every
(dataset, voxel size, method) case runs in its own subprocess so that peak memory (max RSS above the
process' RSS once frames are loaded) is not polluted by the other cases. Prints a markdown table;
numbers are medians over the frames after warm-up. Torch runs with ``--torch-threads`` intra-op threads (default 1,
as the node: on a 2-core machine with any other busy thread, two OpenMP threads spin against each other and meshing
ran 20-40x slower, which is what an earlier run's 577 ms meshing of the 7-Scenes 4 cm case was).

    .venv/bin/python bench/bench_fusion.py [--frames 150] [--device cpu] [--torch-threads 1] [--open3d-threads N]

Open3D runs with as many OpenMP threads as ours has torch threads unless ``--open3d-threads`` says otherwise (0: its
default, every core): on this 2-core machine its meshing is about 2x faster on both cores than on one.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SEVEN_SCENES = REPO.parent / "shared" / "data" / "7scenes-redkitchen"
RESULTS = REPO / "bench" / "results"
WARMUP = 5
# dataset -> (voxel sizes, max depth in metres)
DATASETS = {"7scenes": ((0.04, 0.02), 5.0), "synthetic": ((0.04, 0.02), 5.0), "floor16m": ((0.04,), 8.0)}


def load_frames(dataset: str, count: int):
    from semantic_recon_ros.core.datasets import open_sequence

    sequence = open_sequence(SEVEN_SCENES if dataset == "7scenes" else RESULTS / dataset)
    sequence = sequence.subset(stride=max(1, len(sequence) // count), max_frames=count)
    return [sequence[i] for i in range(len(sequence))]


def ensure_synthetic(dataset: str, frames: int) -> None:
    """Render the synthetic benchmark scenes once (cached under bench/results/)."""
    from semantic_recon_ros.core.synthetic import CameraPathConfig, RoomConfig, write_synthetic_scene

    folder = RESULTS / dataset
    if (folder / "pose").is_dir() and len(list((folder / "pose").iterdir())) >= frames:
        return
    if dataset == "synthetic":
        write_synthetic_scene(folder, seed=7, num_frames=frames)
    else:  # a 16 m x 16 m x 3 m hall scanned along a loop two metres from the walls
        room = RoomConfig(size_x=(16.0, 16.0), size_y=(16.0, 16.0), height=(3.0, 3.0), num_extra_furniture=(25, 30))
        write_synthetic_scene(folder, seed=3, num_frames=frames, room_config=room,
                              path_config=CameraPathConfig(wall_margin=2.0, loops=1.0))


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def run_ours(frames, voxel_size: float, max_depth: float, device: str, use_kernel: bool = True) -> dict:
    import torch

    from semantic_recon_ros.core.incremental_meshing import RegionMesher
    from semantic_recon_ros.core.meshing import extract_mesh
    from semantic_recon_ros.core.map import SemanticTSDFVolume
    from semantic_recon_ros.core.config.volume import VolumeConfig

    volume = SemanticTSDFVolume(VolumeConfig(voxel_size=voxel_size, max_depth=max_depth), ["c"] * 13, device)
    volume.use_fusion_kernel = use_kernel
    mesher = RegionMesher(volume)
    times, update_times = [], []
    for frame in frames:
        depth = torch.from_numpy(frame.depth).to(device)
        color = torch.from_numpy(frame.color).to(device)
        sync(device)
        start = time.perf_counter()
        volume.integrate(depth, frame.camera, frame.T_world_cam, color=color)
        sync(device)
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
        mesher.update()
        sync(device)
        update_times.append(time.perf_counter() - start)
    mesh_times = []
    for _ in range(3):
        start = time.perf_counter()
        mesh = extract_mesh(volume)
        mesh_times.append(time.perf_counter() - start)
    assert mesher.mesh().num_triangles == mesh.num_triangles
    return {"times": times, "mesh_times": mesh_times, "update_times": update_times, "triangles": mesh.num_triangles,
            "blocks": volume.num_blocks}


def run_open3d(frames, voxel_size: float, max_depth: float, device: str) -> dict:
    import open3d as o3d
    import open3d.core as o3c

    o3d_device = o3c.Device("CUDA:0" if device.startswith("cuda") else "CPU:0")
    grid = o3d.t.geometry.VoxelBlockGrid(
        attr_names=("tsdf", "weight", "color"), attr_dtypes=(o3c.float32, o3c.float32, o3c.float32),
        attr_channels=((1), (1), (3)), voxel_size=voxel_size, block_resolution=8, block_count=60000,
        device=o3d_device)
    times = []
    for frame in frames:
        depth_mm = np.where(np.isfinite(frame.depth), frame.depth * 1000.0, 0).astype(np.uint16)
        depth = o3d.t.geometry.Image(o3c.Tensor(depth_mm)).to(o3d_device)
        color = o3d.t.geometry.Image(o3c.Tensor(frame.color)).to(o3d_device)
        K = o3c.Tensor(frame.camera.K)
        extrinsic = o3c.Tensor(np.linalg.inv(frame.T_world_cam))
        start = time.perf_counter()
        # same truncation as ours: 4 voxels
        blocks = grid.compute_unique_block_coordinates(depth, K, extrinsic, 1000.0, max_depth, 4.0)
        grid.integrate(blocks, depth, color, K, extrinsic, 1000.0, max_depth, 4.0)
        times.append(time.perf_counter() - start)
    mesh_times = []
    for _ in range(3):
        start = time.perf_counter()
        mesh = grid.extract_triangle_mesh(weight_threshold=0.5)  # every observed voxel, as ours
        mesh_times.append(time.perf_counter() - start)
    return {"times": times, "mesh_times": mesh_times, "triangles": int(mesh.triangle.indices.shape[0]),
            "blocks": int(grid.hashmap().size())}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def run_case(dataset: str, voxel_size: float, method: str, count: int, device: str, torch_threads: int) -> dict:
    import torch

    torch.set_num_threads(torch_threads)
    frames = load_frames(dataset, count)
    baseline = current_rss_mb()
    max_depth = DATASETS[dataset][1]
    if method == "open3d":
        result = run_open3d(frames, voxel_size, max_depth, device)
    else:
        result = run_ours(frames, voxel_size, max_depth, device, use_kernel=method == "ours")
    return {
        "ms_per_frame": 1000 * statistics.median(result["times"][WARMUP:]),
        "mesh_ms": 1000 * statistics.median(result["mesh_times"]),
        "update_ms": 1000 * statistics.median(result["update_times"][WARMUP:]) if "update_times" in result else None,
        "peak_mb": max_rss_mb() - baseline,
        "triangles": result["triangles"],
        "blocks": result["blocks"],
        "frames": len(frames),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads (default: 1, as the node)")
    parser.add_argument("--open3d-threads", type=int, default=None,
                        help="Open3D's OpenMP threads (default: --torch-threads, the same cores for both; 0: Open3D's "
                             "own default, every core)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--case", nargs=3, metavar=("DATASET", "VOXEL", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        dataset, voxel, method = args.case
        print(json.dumps(run_case(dataset, float(voxel), method, args.frames, args.device, args.torch_threads)))
        return 0
    for dataset in args.datasets:
        if dataset != "7scenes":
            ensure_synthetic(dataset, args.frames)
    # the torch path is a separate method only where the kernel is used (on the CPU)
    methods = ("ours", "torch", "open3d") if args.device == "cpu" else ("ours", "open3d")
    open3d_threads = args.torch_threads if args.open3d_threads is None else args.open3d_threads
    open3d_env = dict(os.environ, **({"OMP_NUM_THREADS": str(open3d_threads)} if open3d_threads > 0 else {}))
    if open3d_threads <= 0:
        open3d_env.pop("OMP_NUM_THREADS", None)
    rows = []
    for dataset in args.datasets:
        for voxel in DATASETS[dataset][0]:
            result = {}
            for method in methods:
                out = subprocess.run([sys.executable, __file__, "--frames", str(args.frames), "--device", args.device,
                                      "--torch-threads", str(args.torch_threads), "--case", dataset, str(voxel), method],
                                     check=True, capture_output=True, text=True,
                                     env=open3d_env if method == "open3d" else None)
                result[method] = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append((dataset, voxel, result))
            print(f"done {dataset} {voxel}", file=sys.stderr)
    open3d_cores = f"{open3d_threads} OpenMP thread(s)" if open3d_threads > 0 else "its default threads (every core)"
    print(f"\nIntegration and meshing, {args.device}, {args.torch_threads} torch thread(s), Open3D with {open3d_cores}, "
          "640x480, median ms (ratio = ours / Open3D; below 1 = faster)\n")
    print("| data | voxel | frames | ours ms/frame | torch path ms/frame | Open3D ms/frame | ratio | ours mesh ms "
          "| Open3D mesh ms | ratio | ours update ms/frame | ours peak MB | Open3D peak MB | triangles ours / Open3D |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for dataset, voxel, r in rows:
        o, t = r["ours"], r["open3d"]
        torch_path = f"{r['torch']['ms_per_frame']:.1f}" if "torch" in r else "-"
        print(f"| {dataset} | {voxel * 100:g} cm | {o['frames']} | {o['ms_per_frame']:.1f} | {torch_path} "
              f"| {t['ms_per_frame']:.1f} "
              f"| {o['ms_per_frame'] / t['ms_per_frame']:.2f} | {o['mesh_ms']:.0f} | {t['mesh_ms']:.0f} "
              f"| {o['mesh_ms'] / t['mesh_ms']:.2f} | {o['update_ms']:.1f} | {o['peak_mb']:.0f} | {t['peak_mb']:.0f} "
              f"| {o['triangles']} / {t['triangles']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
