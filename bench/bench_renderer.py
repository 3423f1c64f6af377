"""Benchmark: the differentiable TSDF raycaster vs a naive fully differentiable fixed-step ray march.

One 320x256 view of one 64x64x128 chunk (2 cm voxels, the S4R chunk size) cut from a synthetic furnished
room, seen from a pose of the room's camera path, with color (3) and semantic logits (13) channels that
require grad. Both renderers produce depth, color and semantics; the loss for the backward pass is the sum
of all three over valid pixels. The naive reference evaluates 64 trilinear TSDF samples per ray, evenly
over the ray's segment inside the chunk, all in the autograd graph, takes the first + to - sign change and
interpolates linearly (the same hit rule, a coarser search). Prints a markdown table of the best and median
over ``--repeats`` timed runs after a warm-up (the CPU is shared, so the best run is the least disturbed).
When other processes keep the cores busy, multi-threaded runs of many small ops stall at every OpenMP
barrier; ``--threads 2 1`` shows how much.

    .venv/bin/python bench/bench_renderer.py [--repeats 7] [--device cpu] [--threads 2 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from semantic_recon_ros.core.camera import PinholeCamera
from semantic_recon_ros.core.rendering import DenseGrid, RaycastConfig, image_rays, render, sample_grid
from semantic_recon_ros.core.rendering.rays import ray_box_interval
from semantic_recon_ros.core.synthetic import camera_path, generate_room, ground_truth_grid, union_sdf

CHUNK_SHAPE = (64, 64, 128)
VOXEL_SIZE = 0.02
TRUNCATION = 3 * VOXEL_SIZE
NUM_CLASSES = 13
CAMERA = PinholeCamera(fx=260.0, fy=260.0, cx=159.5, cy=127.5, width=320, height=256)
NAIVE_SAMPLES = 64
ROOM_SEED = 3
POSE_INDEX = 3  # of an 8-pose camera path; its optical axis meets furniture 1.7 m ahead


def build_chunk(device: str) -> tuple[DenseGrid, torch.Tensor]:
    """A ground-truth chunk of a synthetic room, floor to ceiling, centred where the optical axis of a
    camera-path pose meets the first surface, and that pose (1, 1, 4, 4)."""
    scene = generate_room(ROOM_SEED)
    pose = camera_path(scene, 8)[POSE_INDEX]
    axis = pose[:3, 3] + np.arange(0.1, 8.0, 0.01)[:, None] * pose[:3, 2]
    centre = axis[np.argmax(union_sdf(axis, scene.box_arrays)[0] < 0)]
    extent = (np.array(CHUNK_SHAPE) - 1) * VOXEL_SIZE
    origin = np.round((centre - extent / 2) / VOXEL_SIZE) * VOXEL_SIZE
    origin[2] = -4 * VOXEL_SIZE  # floor slab to ceiling height
    gt = ground_truth_grid(scene, VOXEL_SIZE, TRUNCATION, origin=origin, shape=CHUNK_SHAPE)
    generator = torch.Generator().manual_seed(0)
    tsdf = torch.from_numpy(gt.tsdf)[None, None].to(device)
    color = torch.rand((1, 3, *CHUNK_SHAPE), generator=generator).to(device)
    logits = torch.randn((1, NUM_CLASSES, *CHUNK_SHAPE), generator=generator).to(device)
    grid = DenseGrid(tsdf.requires_grad_(), torch.from_numpy(origin)[None].float().to(device), VOXEL_SIZE,
                     TRUNCATION, color.requires_grad_(), logits.requires_grad_())
    return grid, torch.from_numpy(pose)[None, None].float().to(device)


def render_naive(grid: DenseGrid, pose: torch.Tensor, samples: int = NAIVE_SAMPLES) -> dict[str, torch.Tensor]:
    """Fixed-step march with every sample in the graph (batch size 1)."""
    rays = image_rays(CAMERA, pose, grid.device, grid.dtype).flatten()
    batch_index = torch.zeros(rays.origins.shape[1], dtype=torch.long, device=grid.device)
    origins = grid.world_to_voxel(rays.origins[0], batch_index)
    directions = rays.directions[0] / grid.voxel_size
    upper = torch.tensor(grid.shape, device=grid.device, dtype=grid.dtype) - 1
    start, end = ray_box_interval(origins, directions, torch.zeros_like(upper), upper)
    start = start.clamp(min=0)
    inside = start < end
    fractions = (torch.arange(samples, device=grid.device, dtype=grid.dtype) + 0.5) / samples
    t = start[:, None] + (end - start).clamp(min=0)[:, None] * fractions  # (R, S)
    points = origins[:, None, :] + t[..., None] * directions[:, None, :]
    values = sample_grid(grid.tsdf, batch_index.repeat_interleave(samples), points.reshape(-1, 3)).view(-1, samples)
    crossing = (values[:, :-1] > 0) & (values[:, 1:] <= 0) & inside[:, None]
    valid = crossing.any(dim=1)
    first = crossing.to(torch.uint8).argmax(dim=1, keepdim=True)
    s0, s1 = values.gather(1, first)[:, 0], values.gather(1, first + 1)[:, 0]
    t0, t1 = t.gather(1, first)[:, 0], t.gather(1, first + 1)[:, 0]
    depth = t0 + (t1 - t0) * s0 / torch.where(valid, s0 - s1, torch.ones_like(s0))
    hit = origins + depth[:, None] * directions
    color = sample_grid(grid.color, batch_index, hit)
    semantic = sample_grid(grid.semantic, batch_index, hit).softmax(dim=-1)
    shape = (1, 1, CAMERA.height, CAMERA.width)
    return {"depth": torch.where(valid, depth, 0).view(shape), "valid": valid.view(shape),
            "color": (color * valid[:, None]).view(*shape, 3), "semantic": (semantic * valid[:, None]).view(*shape, -1)}


def loss_of(out: dict[str, torch.Tensor]) -> torch.Tensor:
    valid = out["valid"]
    return out["depth"][valid].sum() + out["color"][valid].sum() + (out["semantic"][valid] ** 2).sum()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def bench_device(device: str, threads: int, repeats: int) -> tuple[list[str], str]:
    """Table rows of both renderers on ``device``, and a line comparing their depth maps.

    The four cases (2 renderers x forward / forward+backward) run interleaved, one run each per round, so
    that load from other processes hits them alike.
    """
    torch.set_num_threads(threads)
    grid, pose = build_chunk(device)
    renderers = {"raycaster (no-grad search + secant)": lambda: render(grid, CAMERA, pose, RaycastConfig()),
                 f"naive march ({NAIVE_SAMPLES} diff. samples)": lambda: render_naive(grid, pose)}

    def forward(fn):
        with torch.no_grad():
            fn()

    def forward_backward(fn):
        grid.tsdf.grad = grid.color.grad = grid.semantic.grad = None
        loss_of(fn()).backward()

    cases = [(name, mode) for name in renderers for mode in (forward, forward_backward)]
    times: dict[tuple, list[float]] = {case: [] for case in cases}
    for round_index in range(repeats + 1):  # round 0 is the warm-up
        for name, mode in cases:
            sync(device)
            start = time.perf_counter()
            mode(renderers[name])
            sync(device)
            if round_index:
                times[name, mode].append((time.perf_counter() - start) * 1000.0)
    label = f"{device}, {threads} thread{'s' if threads > 1 else ''}" if device == "cpu" else device
    rows = []
    for name, fn in renderers.items():
        with torch.no_grad():
            hit_fraction = fn()["valid"].float().mean()
        fwd, both = times[name, forward], times[name, forward_backward]
        rows.append(f"| {label} | {name} | {min(fwd):.1f} | {statistics.median(fwd):.1f} | "
                    f"{min(both):.1f} | {statistics.median(both):.1f} | {hit_fraction:.3f} |")
    with torch.no_grad():
        ours, naive = render(grid, CAMERA, pose), render_naive(grid, pose)
    common = ours["valid"] & naive["valid"]
    difference = (ours["depth"] - naive["depth"])[common].abs() * 100
    comparison = (f"{label}: where both hit, depth differs by median {difference.median():.3f} cm, 99th "
                  f"percentile {difference.quantile(0.99):.3f} cm; hit masks differ on "
                  f"{(ours['valid'] != naive['valid']).float().mean() * 100:.2f}% of the pixels")
    return rows, comparison


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per case (after one warm-up)")
    parser.add_argument("--device", action="append", help="device(s) to run on (default: cpu, and cuda if present)")
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()],
                        help="CPU thread counts to run with (default: torch's default)")
    args = parser.parse_args()
    devices = args.device or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"one {CAMERA.width}x{CAMERA.height} view of a {'x'.join(map(str, CHUNK_SHAPE))} chunk, "
          f"{args.repeats} runs per case after a warm-up; times in ms\n")
    results = [bench_device(device, threads, args.repeats)
               for device in devices for threads in (args.threads if device == "cpu" else args.threads[:1])]
    print("| device | renderer | forward best | forward median | fwd+bwd best | fwd+bwd median | hit fraction |")
    print("|---|---|---|---|---|---|---|")
    for rows, _ in results:
        print("\n".join(rows))
    print()
    for _, comparison in results:
        print(comparison)


if __name__ == "__main__":
    main()
