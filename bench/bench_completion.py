"""Benchmark: completing a whole fused room with the default S4R network on this machine's device.

Fuses a synthetic room (about 3.5-6 m x 3.5-6 m x 2.5-3 m) at 4 cm, then runs the completion engine
over every chunk of the map with the default network (random weights: speed does not depend on
them), on the oneDNN fast path and on PyTorch's default convolution path, and prints a markdown
table: chunks run and skipped, seconds for the whole room, network share, per-chunk time, and the
mapped volume.

    .venv/bin/python bench/bench_completion.py [--frames 120] [--seed 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.completion import CompletionEngine
from semantic_recon_ros.core.completion_config import CompletionConfig
from semantic_recon_ros.core.datasets import open_sequence
from semantic_recon_ros.core.models import S4RNet, S4RNetConfig, set_fast_cpu_convolutions
from semantic_recon_ros.core.synthetic import DEFAULT_CAMERA, write_synthetic_scene
from semantic_recon_ros.core.tsdf_volume import SemanticTSDFVolume
from semantic_recon_ros.core.volume_config import VolumeConfig


def fused_room(seed: int, frames: int) -> SemanticTSDFVolume:
    classes = load_class_set()
    with tempfile.TemporaryDirectory() as tmp:
        scene = write_synthetic_scene(Path(tmp) / "room", seed=seed, num_frames=frames,
                                      camera=DEFAULT_CAMERA.scaled(320, 240))
        volume = SemanticTSDFVolume(VolumeConfig(voxel_size=0.04), classes.names, "cpu")
        for frame in open_sequence(scene):
            volume.integrate(frame.depth, frame.camera, frame.T_world_cam, color=frame.color, labels=frame.labels)
    return volume


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--width", type=int, default=S4RNetConfig.base_width, help="network base width")
    parser.add_argument("--chunk-size", type=int, default=CompletionConfig.chunk_size)
    parser.add_argument("--paths", nargs="+", default=["fast", "default"], choices=["fast", "default"])
    args = parser.parse_args()
    volume = fused_room(args.seed, args.frames)
    coords = volume.block_coords[volume.index.slots].float() * volume.config.block_length
    extent = (coords.max(dim=0).values - coords.min(dim=0).values + volume.config.block_length).tolist()
    config = CompletionConfig(chunk_size=args.chunk_size)
    network = S4RNet(S4RNetConfig(num_classes=volume.num_classes, base_width=args.width)).eval()
    rows = []
    for path in args.paths:
        set_fast_cpu_convolutions(network, path == "fast")
        engine = CompletionEngine(network, volume, config)
        times, stats = [], None
        for _ in range(args.repeats):
            engine.reset()
            start = time.perf_counter()
            stats = engine.run(time_budget=float("inf"))
            times.append(time.perf_counter() - start)
        rows.append((path, stats, min(times), statistics.median(times)))
    print(f"\nWhole-room completion, CPU ({torch.get_num_threads()} threads), {args.frames} frames fused at 4 cm, "
          f"map extent {extent[0]:.1f} x {extent[1]:.1f} x {extent[2]:.1f} m, {volume.num_blocks} blocks, "
          f"chunks {config.chunk_size}^3 (cores {config.core_size}^3), S4R width {network.config.base_width}, "
          f"{sum(p.numel() for p in network.parameters()) / 1e6:.2f} M parameters\n")
    print("| conv path | chunks run | chunks skipped (too empty) | best s | median s | network share | s per chunk |")
    print("|---|---|---|---|---|---|---|")
    for path, stats, best, median in rows:
        print(f"| {path} | {stats.chunks_run} | {stats.chunks_skipped} | {best:.2f} | {median:.2f} "
              f"| {stats.network_seconds / stats.seconds:.0%} | {best / max(stats.chunks_run, 1):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
