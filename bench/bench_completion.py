"""Benchmark: completing a whole fused room with an S4R network on this machine's CPU.

Fuses a synthetic room (bench default: seed 1, 5.4 x 6.7 x 3.2 m) at 4 cm, then completes every chunk of
the map once per configuration (a fresh copy of the fused map each time) and prints a markdown table:
network width, convolution path (oneDNN fast path or PyTorch's default), its precision (float32 or bfloat16,
``completion.precision``), chunk grid alignment, chunk size, batch size, chunks run, voxels fed to the network,
seconds for the whole room, seconds per m^3 of the map's bounding box, the network's share of the time, and peak
memory (the process's resident set during the run, sampled every 10 ms, and its increase over the fused map). Other
jobs on the machine stretch the wall time; the CPU time of the process (all threads) is the time on otherwise idle
cores.
The networks of ``--widths`` have random weights: the network's time does not depend on them, but a random
network predicts surface almost everywhere, so it allocates far more prediction blocks (memory, write time) than a
trained one. ``--checkpoint default`` (or a file) adds rows for a trained model (the installed default: what the
node runs), with its confidence calibration.

    .venv/bin/python bench/bench_completion.py [--widths 8 12] [--checkpoint default] [--paths fast default]
        [--align on off] [--chunk-sizes 64] [--chunk-margins 8] [--batch-sizes 1 2] [--threads 1] [--frames 120]
        [--seed 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import torch

from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.completion import CompletionEngine, CompletionStats, resolve_checkpoint
from semantic_recon_ros.core.completion_confidence import ConfidenceCalibration
from semantic_recon_ros.core.config.completion import CompletionConfig
from semantic_recon_ros.core.datasets import open_sequence
from semantic_recon_ros.core.models import S4RNet, S4RNetConfig, load_checkpoint, set_fast_cpu_convolutions
from semantic_recon_ros.core.synthetic import DEFAULT_CAMERA, write_synthetic_scene
from semantic_recon_ros.core.map import SemanticTSDFVolume, restore_volume, volume_state
from semantic_recon_ros.core.config.volume import VolumeConfig


def fused_room(seed: int, frames: int) -> SemanticTSDFVolume:
    classes = load_class_set()
    with tempfile.TemporaryDirectory() as tmp:
        scene = write_synthetic_scene(Path(tmp) / "room", seed=seed, num_frames=frames,
                                      camera=DEFAULT_CAMERA.scaled(320, 240))
        volume = SemanticTSDFVolume(VolumeConfig(voxel_size=0.04), classes.names, "cpu")
        for frame in open_sequence(scene):
            volume.integrate(frame.depth, frame.camera, frame.T_world_cam, color=frame.color, labels=frame.labels)
    return volume


def resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Largest resident set size of this process while the ``with`` block runs (sampled every 10 ms)."""

    def __enter__(self) -> "PeakMemory":
        self.before = self.peak = resident_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, resident_bytes())

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, resident_bytes())


def complete_once(fused: SemanticTSDFVolume, network: S4RNet, config: CompletionConfig,
                  calibration: ConfidenceCalibration | None) -> tuple[CompletionStats, float, float, PeakMemory]:
    """One whole-room completion of a copy of ``fused``: (stats, wall seconds, CPU seconds, memory)."""
    volume = SemanticTSDFVolume(fused.config, fused.class_names, fused.device)  # (the kernel's ops cannot be copied)
    restore_volume(volume, volume_state(fused))
    engine = CompletionEngine(network, volume, config, use_color=network.config.use_color, calibration=calibration)
    with PeakMemory() as memory:
        start, cpu_start = time.perf_counter(), time.process_time()
        stats = engine.run(time_budget=float("inf"))
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return stats, seconds, cpu_seconds, memory


def network_of(model: str, fused: SemanticTSDFVolume, fast: bool) -> tuple[S4RNet, ConfidenceCalibration | None]:
    """A random network of base width ``model`` (digits), or the trained model of checkpoint ``model``."""
    if model.isdigit():
        network = S4RNet(S4RNetConfig(num_classes=fused.num_classes, base_width=int(model))).eval()
        set_fast_cpu_convolutions(network, fast)
        return network, None
    network, info = load_checkpoint(resolve_checkpoint(model), "cpu", expected_class_names=fused.class_names,
                                    expected_voxel_size=fused.config.voxel_size, fast_cpu=fast)
    return network, None if info.calibration is None else ConfidenceCalibration.from_dict(info.calibration)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="runs per configuration (the best is shown)")
    parser.add_argument("--widths", type=int, nargs="*", default=[8, 12], help="random networks' base widths")
    parser.add_argument("--checkpoint", default=None,
                        help="also a trained model: 'default' (the installed default model) or a checkpoint file")
    parser.add_argument("--paths", nargs="+", default=["fast"], choices=["fast", "default"])
    parser.add_argument("--align", nargs="+", default=["on"], choices=["on", "off"], help="chunk grid alignment")
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[CompletionConfig.chunk_size])
    parser.add_argument("--chunk-margins", type=int, nargs="+", default=[CompletionConfig.chunk_margin],
                        help="context voxels on each side of a chunk (completion.chunk_margin)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[CompletionConfig.batch_size])
    parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"],
                        help="what the fast path's convolutions compute in (completion.precision)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1, as the node: on a shared 2-core machine two threads stall "
                             "each other)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fused = fused_room(args.seed, args.frames)
    coords = fused.grid.block_coords().float() * fused.config.block_length
    extent = (coords.max(dim=0).values - coords.min(dim=0).values + fused.config.block_length).tolist()
    cubic_metres = extent[0] * extent[1] * extent[2]
    room_voxels = cubic_metres / fused.config.voxel_size ** 3
    print(f"\nWhole-room completion, CPU ({args.threads} threads), {args.frames} frames fused at "
          f"{fused.config.voxel_size * 100:g} cm: map bounding box "
          f"{extent[0]:.1f} x {extent[1]:.1f} x {extent[2]:.1f} m = {cubic_metres:.0f} m^3 "
          f"({room_voxels / 1e6:.2f} M voxels), {fused.num_blocks} blocks, "
          f"fused map RSS {resident_bytes() / 1e6:.0f} MB\n")
    print("| width | params | conv path | precision | grid | chunk | margin | batch | chunks run | voxels fed (M) "
          "| s per room (best / worst) | CPU s per room | s per m^3 | network share | peak RSS MB (increase) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    models = [str(width) for width in args.widths] + ([args.checkpoint] if args.checkpoint else [])
    for model, path, align, chunk_size, margin, batch_size, precision in itertools.product(
            models, args.paths, args.align, args.chunk_sizes, args.chunk_margins, args.batch_sizes, args.precisions):
        if path == "default" and precision != "float32":
            continue  # only the fast path computes in bfloat16
        network, calibration = network_of(model, fused, path == "fast")
        config = replace(CompletionConfig(), chunk_size=chunk_size, chunk_margin=margin,
                         batch_size=batch_size, align_grid=align == "on", precision=precision)
        runs = [complete_once(fused, network, config, calibration) for _ in range(args.repeats)]
        stats, best, _, _ = min(runs, key=lambda run: run[1])
        worst = max(run[1] for run in runs)
        cpu = min(run[2] for run in runs)
        peak = max(run[3].peak for run in runs)
        increase = max(run[3].peak - run[3].before for run in runs)
        parameters = sum(p.numel() for p in network.parameters()) / 1e6
        name = f"{network.config.base_width}" + ("" if model.isdigit() else f" ({model}, trained)")
        grid = "aligned" if align == "on" else "fixed"
        print(f"| {name} | {parameters:.2f} M | {path} | {precision} | {grid} | {chunk_size}^3 | {margin} "
              f"| {batch_size} | {stats.chunks_run} | {stats.chunks_run * chunk_size ** 3 / 1e6:.1f} "
              f"| {best:.2f} / {worst:.2f} | {cpu:.2f} | {best / cubic_metres:.3f} "
              f"| {stats.network_seconds / stats.seconds:.0%} | {peak / 1e6:.0f} (+{increase / 1e6:.0f}) |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
