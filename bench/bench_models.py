"""Benchmark: CPU forward time of the learned models per 64x64x128 chunk, default vs fast conv path.

Every case (model, width, conv path) runs in its own subprocess so that its peak memory (max RSS
above the RSS once model and inputs exist) is not polluted by the other cases; each subprocess does
one warm-up forward and ``--runs`` timed forwards under ``torch.inference_mode()``, and one profiled
forward giving the share of CPU time spent in ``aten::slow_conv3d``. The whole sweep is repeated
``--repeats`` times (other processes share the CPU): the table shows the best and the median over
all timed forwards. Times per m^3 assume 4 cm voxels (a 64x64x128 chunk is 33.6 m^3); "room" is
the time for 7 chunks, enough for a ~6 x 6 x 3 m room (1.7 M voxels) padded to whole chunks.
"1-thread CPU ms" is the process CPU time of one more forward with one thread: unlike wall time it
hardly changes when other processes compete for the two cores.

    .venv/bin/python bench/bench_models.py [--repeats 3] [--runs 3] [--widths 8 12 16]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHUNK = (64, 64, 128)
VOXEL_SIZE = 0.04
ROOM_CHUNKS = 7
IMAGE_SIZE = (480, 640)  # (H, W) of one Atlas input frame


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build_case(model: str, width: int):
    """(module, zero-argument forward) for one case, on CPU, eval mode, random inputs."""
    import numpy as np
    import torch

    from semantic_recon_ros.core.camera import PinholeCamera
    from semantic_recon_ros.core.models import AtlasNet, AtlasNetConfig, S4RNet, S4RNetConfig, backproject_to_grid

    torch.manual_seed(0)
    X, Y, Z = CHUNK
    if model in ("s4r", "s4r_colorblind"):
        net = S4RNet(S4RNetConfig(base_width=width, use_color=model == "s4r")).eval()
        tsdf = torch.rand(1, 1, X, Y, Z) * 2 - 1
        observed = torch.rand(1, 1, X, Y, Z) > 0.3
        color = torch.rand(1, 3, X, Y, Z) if model == "s4r" else None
        return net, lambda: net(tsdf, observed, color)
    net = AtlasNet(AtlasNetConfig(base_width=width)).eval()
    if model == "atlas_3d":
        features = torch.randn(1, net.config.feature_channels, X, Y, Z)
        observed = torch.rand(1, 1, X, Y, Z) > 0.3
        return net, lambda: net.reconstruct(features, observed)
    H, W = IMAGE_SIZE
    image = torch.rand(1, 3, H, W)
    if model == "atlas_2d":
        return net.backbone, lambda: net.image_moments(image)
    camera = PinholeCamera(525.0, 525.0, W / 2 - 0.5, H / 2 - 0.5, W, H).scaled(W // 4, H // 4)
    features = torch.randn(1, net.config.feature_channels, H // 4, W // 4)
    pose = np.eye(4)
    origin = (-X * VOXEL_SIZE / 2, -Y * VOXEL_SIZE / 2, 0.2)
    return net, lambda: backproject_to_grid(features, camera, pose, origin, VOXEL_SIZE, CHUNK)


def run_case(model: str, width: int, fast: bool, runs: int) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from semantic_recon_ros.core.models import set_fast_cpu_convolutions

    net, forward = build_case(model, width)
    if fast:
        set_fast_cpu_convolutions(net, True)
    baseline = current_rss_mb()
    times = []
    with torch.inference_mode():
        forward()  # warm-up (oneDNN primitive creation, allocator)
        for _ in range(runs):
            start = time.perf_counter()
            forward()
            times.append(time.perf_counter() - start)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            forward()
        torch.set_num_threads(1)
        start = time.process_time()
        forward()
        single_thread_cpu = time.process_time() - start
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    slow = sum(e.self_cpu_time_total for e in events if e.key.startswith("aten::slow_conv3d"))
    params = sum(p.numel() for p in net.parameters()) if model != "atlas_backprojection" else 0
    return {"times_ms": [1000 * t for t in times], "peak_mb": max_rss_mb() - baseline, "params": params,
            "slow_conv3d_share": slow / max(total, 1e-9), "single_thread_cpu_ms": 1000 * single_thread_cpu}


def cases(widths: list[int], default_width: int) -> list[tuple[str, int, bool]]:
    out = []
    for model in ("s4r", "s4r_colorblind", "atlas_3d"):
        for width in sorted(set(widths) | {default_width}):
            paths = (False, True) if width == default_width else (True,)
            out.extend((model, width, fast) for fast in paths)
    out.append(("atlas_2d", 16, False))
    out.append(("atlas_backprojection", default_width, False))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="how many times the whole sweep runs")
    parser.add_argument("--runs", type=int, default=3, help="timed forwards per case and sweep")
    parser.add_argument("--widths", type=int, nargs="+", default=[8, 12, 16])
    parser.add_argument("--case", nargs=3, metavar=("MODEL", "WIDTH", "FAST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        model, width, fast = args.case
        print(json.dumps(run_case(model, int(width), fast == "1", args.runs)))
        return 0

    from tqdm import tqdm

    from semantic_recon_ros.core.models import S4RNetConfig

    default_width = S4RNetConfig().base_width
    todo = cases(args.widths, default_width)
    results: dict[tuple, list[dict]] = {case: [] for case in todo}
    for _ in tqdm(range(args.repeats), desc="sweeps"):
        for case in tqdm(todo, desc="cases", leave=False):
            model, width, fast = case
            out = subprocess.run([sys.executable, __file__, "--runs", str(args.runs),
                                  "--case", model, str(width), "1" if fast else "0"],
                                 check=True, capture_output=True, text=True, cwd=REPO)
            results[case].append(json.loads(out.stdout.strip().splitlines()[-1]))

    chunk_m3 = CHUNK[0] * CHUNK[1] * CHUNK[2] * VOXEL_SIZE ** 3
    print(f"\nCPU forward per {CHUNK[0]}x{CHUNK[1]}x{CHUNK[2]} chunk (batch 1), {args.repeats} sweeps x "
          f"{args.runs} runs; default width {default_width}; per m^3 at {VOXEL_SIZE * 100:g} cm; "
          f"room = {ROOM_CHUNKS} chunks\n")
    print("| model | width | conv path | params | best ms | median ms | median ms/m^3 | room s (median) "
          "| 1-thread CPU ms (best) | slow_conv3d share | peak MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (model, width, fast), runs in results.items():
        times = [t for r in runs for t in r["times_ms"]]
        best, median = min(times), statistics.median(times)
        is_chunk = model in ("s4r", "s4r_colorblind", "atlas_3d")
        per_m3 = f"{median / chunk_m3:.1f}" if is_chunk else "-"
        room = f"{ROOM_CHUNKS * median / 1000:.2f}" if is_chunk else "-"
        label = {"atlas_2d": "atlas_2d (one 640x480 image; width = backbone_width)",
                 "atlas_backprojection": "atlas_backprojection (one view -> chunk, 16 channels)"}.get(model, model)
        shown_width = "-" if model == "atlas_backprojection" else width
        params = f"{runs[0]['params'] / 1e6:.2f} M" if runs[0]["params"] else "-"
        print(f"| {label} | {shown_width} | {'fast' if fast else 'default'} | {params} "
              f"| {best:.0f} | {median:.0f} | {per_m3} | {room} "
              f"| {min(r['single_thread_cpu_ms'] for r in runs):.0f} "
              f"| {100 * statistics.median(r['slow_conv3d_share'] for r in runs):.0f} % "
              f"| {max(r['peak_mb'] for r in runs):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
