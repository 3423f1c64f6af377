"""Benchmark: how long the map is held while its block pools grow, with and without the growth prepared ahead.

A volume with the node's layers (TSDF, weight, color, class votes and the completion network's prediction layers)
is filled 100 blocks at a time up to ``--max-blocks``; every allocation that grows the pools is timed. "prepared"
calls ``BlockGrid.prepare_growth`` when ``growth_due`` says so, as the mapper does on its background thread (here
inline, untimed: what the node's integration no longer waits for). Each case runs in its own process.

    .venv/bin/python bench/bench_block_growth.py [--max-blocks 8000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

STEP = 100  # blocks per allocation


def run_case(prepared: bool, max_blocks: int) -> list[dict]:
    import torch

    from semantic_recon_ros.core.classes import load_class_set
    from semantic_recon_ros.core.completion import add_prediction_layers
    from semantic_recon_ros.core.config import VolumeConfig
    from semantic_recon_ros.core.map import SemanticTSDFVolume

    torch.set_num_threads(1)
    volume = SemanticTSDFVolume(VolumeConfig(max_blocks=max_blocks), load_class_set().names, "cpu")
    add_prediction_layers(volume)
    grid = volume.grid
    growths = []
    for first in range(0, max_blocks - STEP + 1, STEP):
        if prepared and grid.growth_due():
            grid.prepare_growth()
        capacity = grid.capacity
        keys = torch.arange(first, first + STEP, dtype=torch.int64) * 7 + 12345
        start = time.perf_counter()
        grid.allocate_keys(keys)
        seconds = time.perf_counter() - start
        if grid.capacity != capacity:
            growths.append({"blocks": grid.num_blocks, "capacity": grid.capacity,
                            "mb": round(grid.memory_bytes() / 1e6), "ms": round(seconds * 1000, 1)})
    return growths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-blocks", type=int, default=8000, help="the node's building benchmark uses 8000")
    parser.add_argument("--case", choices=["plain", "prepared"], help=argparse.SUPPRESS)  # one case, in-process
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case == "prepared", args.max_blocks)))
        return
    results = {}
    for case in ("plain", "prepared"):
        output = subprocess.run([sys.executable, __file__, "--case", case, "--max-blocks", str(args.max_blocks)],
                                check=True, capture_output=True, text=True).stdout
        results[case] = json.loads(output.strip().splitlines()[-1])
    print(f"\nblock pool growths up to {args.max_blocks} blocks, {STEP} blocks per allocation, 1 torch thread\n")
    print("| capacity after | pools MB | ms holding the map, plain | prepared ahead |")
    print("|---|---|---|---|")
    for plain, prepared in zip(results["plain"], results["prepared"]):
        print(f"| {plain['capacity']} | {plain['mb']} | {plain['ms']:.0f} | {prepared['ms']:.0f} |")


if __name__ == "__main__":
    main()
